"""One multi-task SAC update (critics, actor, temperatures, Polyak) per policy architecture, and how
close it runs to this machine's matrix-multiply limit, in alternated rounds (scripts/rounds.py).

  python scripts/bench_sac_update.py                          # MT10 shapes (batch 10 x 128), 1 and 2 threads
  python scripts/bench_sac_update.py --tasks 1 --threads 1    # MT1 shapes (batch 128)
  python scripts/bench_sac_update.py --archs mlp --profile    # also: where one mlp update's time goes
  python scripts/bench_sac_update.py --device cuda            # on a GPU (no ratio: that is for the CPU)
  python scripts/bench_sac_update.py --critics modules ensemble   # both layouts of the twin critics

Shapes: Meta-World (39-dim observations, 4-dim actions); the networks of the Meta-World+ protocol
configs (`configs/metaworld_plus/mt10_<arch>.yaml`): mlp (MTSAC) and multihead 400-400-400 ReLU,
MOORE 4 experts of 400-400-400 (MoE: the same without Gram-Schmidt), Soft Modularization, CARE
and PaCo; `mlp-tanh` is the MTSAC network with Tanh (`configs/metaworld_mt10_mtsac.yaml`). With
`--critics ensemble` the twin critics run as one vmapped ensemble (`policy.critic_ensemble`; PaCo's
loss guard has no ensemble form and is left out).

Columns: ms per update (median over rounds); the update's matrix FLOPs, counted from the shapes of
every matmul, batched matmul and linear layer it runs, forward and backward (torch's
FlopCounterMode: elementwise work is not counted); those FLOPs over the time (GFLOP/s); and that
over this CPU's own rate for a [batch, 400] x [400, 400] matmul measured in the same round at the
same thread count (the limit the update could reach if it did nothing but its matmuls at full
speed). With `--critics modules ensemble`, each ensemble row is also set against the same
architecture with two critic modules. Ratios are medians over rounds with their min-max.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from rounds import alternate, ratio, show_ratio
from torch.utils.flop_counter import FlopCounterMode

from mtrl.algos.sac_learner import learner_from_config
from mtrl.config import load_config
from mtrl.env.suite import get_suite
from mtrl.nn.policy import build_policy
from mtrl.run.trainer import policy_spec

ARCHS = ["mlp", "multihead", "moore", "moe", "softmod", "care", "paco", "mlp-tanh"]
CONFIG = {
    "mlp": "mt10_mtsac",
    "multihead": "mt10_mtmhsac",
    "moore": "mt10_moore",
    "moe": "mt10_moore",
    "softmod": "mt10_softmod",
    "care": "mt10_care",
    "paco": "mt10_paco",
}


def make_update(
    arch: str, tasks: int, batch_per_task: int, device: torch.device, ensemble: bool = False
) -> Callable[[], None]:
    """One SAC update of `arch` at these shapes, as a call (the learner and a fixed batch built once)."""
    suite = "metaworld-mt10" if tasks == 10 else "metaworld-mt1-reach-v3"
    layout = f"policy.critic_ensemble={str(ensemble).lower()}"
    if arch == "mlp-tanh":
        cfg = load_config("configs/metaworld_mt10_mtsac.yaml", [f"env.suite={suite}", layout])
    else:
        cfg = load_config(
            f"configs/metaworld_plus/{CONFIG[arch]}.yaml",
            [f"env.suite={suite}", "env.expected_suite=null", f"policy.arch={arch}", layout],
        )
    s = cfg.sac
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, get_suite(suite))).to(device)
    learner = learner_from_config(policy, s, tasks, 4)
    b = tasks * batch_per_task
    batch = {
        "task_id": torch.arange(tasks).repeat_interleave(batch_per_task),
        "obs": torch.randn(b, 39),
        "actions": torch.rand(b, 4) * 2 - 1,
        "rewards": torch.randn(b),
        "next_obs": torch.randn(b, 39),
        "terminated": torch.zeros(b, dtype=torch.bool),
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    for _ in range(3):  # warm-up: allocator, Adam's state
        learner.update(batch)
    return lambda: learner.update(batch)


def update_flops(update: Callable[[], None]) -> int:
    """The matrix FLOPs of one update (matmuls, batched matmuls, linear layers; forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        update()
    return counter.get_total_flops()


def timed(fn: Callable[[], object], reps: int, threads: int, device: torch.device) -> float:
    """Seconds per call of `fn` at `threads` torch threads (mean of `reps` calls)."""
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def matmul_cell(rows: int, device: torch.device) -> tuple[Callable[[], object], int]:
    """A [rows, 400] x [400, 400] float32 matmul (the updates' dominant shape) and its FLOPs."""
    a, w = torch.randn(rows, 400, device=device), torch.randn(400, 400, device=device)
    return (lambda: torch.mm(a, w)), 2 * rows * 400 * 400


def profile(update: Callable[[], None], top: int = 12) -> None:
    """Where one update's CPU time goes: the ops with the most self time over 5 updates."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            update()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=ARCHS, choices=ARCHS, help="architectures to time (default: all)")
    p.add_argument("--tasks", type=int, default=10, choices=[1, 10], help="MT10 (batch 10 x 128) or MT1 reach shapes")
    p.add_argument("--batch-per-task", type=int, default=128, help="samples per task per update (default 128)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the learner runs (default cpu)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts (default 1 2)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    p.add_argument("--reps", type=int, default=5, help="updates timed per cell per round (default 5)")
    p.add_argument(
        "--critics",
        nargs="+",
        default=["modules"],
        choices=["modules", "ensemble"],
        help="the twin critics as two modules and/or one vmapped ensemble (default: modules)",
    )
    p.add_argument("--profile", action="store_true", help="also print the top ops of one update per arch (1 thread)")
    args = p.parse_args()
    if args.rounds < 1 or args.reps < 1 or min(args.threads) < 1:
        p.error("--rounds, --reps and --threads must be >= 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    rows = args.tasks * args.batch_per_task
    updates = {
        arch if layout == "modules" else f"{arch}, ensemble": make_update(
            arch, args.tasks, args.batch_per_task, device, layout == "ensemble"
        )
        for layout in args.critics
        for arch in args.archs
        if not (layout == "ensemble" and arch == "paco")
    }
    flops = {arch: update_flops(fn) for arch, fn in updates.items()}
    mm, mm_flops = matmul_cell(rows, device)
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    cells = {}
    for t in threads:
        cells[("matmul", t)] = lambda t=t: timed(mm, 50, t, device)
        for arch, fn in updates.items():
            cells[(arch, t)] = lambda fn=fn, t=t: timed(fn, args.reps, t, device)
    times = alternate(cells, args.rounds)
    print(
        f"SAC update, {args.tasks} task(s) x {args.batch_per_task} = batch {rows}, {args.device}, "
        f"{args.rounds} alternated rounds x {args.reps} updates\n"
    )
    for t in threads:
        limit = [mm_flops / s / 1e9 for s in times[("matmul", t)]]
        print(
            f"{t} thread(s): [{rows}, 400] x [400, 400] matmul {statistics.median(limit):.1f} GFLOP/s "
            f"(min-max {min(limit):.1f}-{max(limit):.1f})\n"
        )
        print("| arch | ms per update | / mlp | / two critic modules | GFLOP per update | GFLOP/s | / matmul limit |")
        print("|---|---|---|---|---|---|---|")
        for arch in updates:
            secs = times[(arch, t)]
            rate = [flops[arch] / s / 1e9 for s in secs]
            vs_mlp = show_ratio(secs, times[("mlp", t)]) if ("mlp", t) in times else "-"
            plain = arch.removesuffix(", ensemble")
            vs_modules = show_ratio(secs, times[(plain, t)]) if plain != arch and (plain, t) in times else "-"
            mid, lo, hi = ratio(rate, limit)
            print(
                f"| {arch} | {statistics.median(secs) * 1e3:.1f} | {vs_mlp} | {vs_modules} | {flops[arch] / 1e9:.2f} | "
                f"{statistics.median(rate):.1f} | {mid:.2f} ({lo:.2f}-{hi:.2f}) |"
            )
        print()
    if args.profile:
        torch.set_num_threads(1)
        for arch, fn in updates.items():
            print(f"{arch}, 1 thread: the ops with the most self CPU time over 5 updates")
            profile(fn)


if __name__ == "__main__":
    main()
