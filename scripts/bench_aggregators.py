"""Cost of each gradient aggregator (learner.aggregator) against `none`, in alternated rounds
(scripts/rounds.py).

  python scripts/bench_aggregators.py                      # both shapes, every aggregator, 1 thread
  python scripts/bench_aggregators.py --aggregators none pcgrad upgrad --reps 3
  python scripts/bench_aggregators.py --device cuda
  python scripts/bench_aggregators.py --shapes sac-mt10 --rounds 9

Two shapes:
- PPO, MiniGrid MT3 (K = 3): MOORE with 2 conv experts, `configs/moore_paper/minigrid_mt3_moe.yaml`'s
  settings with policy.arch=moore, one epoch of the paper protocol's update (6000 transitions in
  minibatches of 768: the separate critic's full-batch step, then 8 policy minibatches).
- SAC, Meta-World MT10 (K = 10): MOORE with 4 experts of 400-400-400 (configs/metaworld_mt10_moore_sac.yaml),
  one update (critics, actor, temperatures, Polyak) on 128 transitions per task.
Random batches of the right shapes and dtypes. Every cell (aggregator x Jacobian route) of a shape
gets its own learner and one warm-up update; then each round times every cell of that shape once
(--reps updates, mean), and the figures are medians over the alternated rounds: ms per update, and
the median over rounds of the per-round ratio to `none` with its min-max. With `--jacobian both`
(the default) every aggregator runs twice: with the task Jacobian from one grouped backward pass
(`grouped`, what training uses for MOORE / MoE) and from torchjd's `mtl_backward` (`torchjd`, the
fallback for architectures with parameters upstream of their shared module); `--jacobian all` adds
`vmap`, the grouped pass with the shared modules' own `forward_per_task` (MOORE's conv experts) set
aside, so every module runs under `torch.func.vmap`. When `grouped` and another route are both
timed, the other route's rows also show the per-round ratio to the same aggregator's `grouped` row.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from rounds import alternate, show_ratio

from mtrl.algos.multitask import TaskGradients
from mtrl.algos.ppo import PPOAlgorithm, PPOBatch, critic_terms, ppo_terms
from mtrl.algos.sac import SACAlgorithm
from mtrl.config import load_config
from mtrl.env.suite import get_suite
from mtrl.nn.policy import ActorCritic, SACPolicy, build_policy
from mtrl.registry import AGGREGATORS
from mtrl.run.trainer import policy_spec

Row = tuple[str, str]  # (aggregator, Jacobian route); `none` has no route: ("none", "-")
NONE: Row = ("none", "-")


def timed(fn: Callable[[], None], reps: int, device: torch.device) -> float:
    """Seconds per call of `fn` (mean of `reps` calls)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def choose_jacobian(task_grads: list[TaskGradients | None], jacobian: str) -> None:
    """Make the learners' TaskGradients compute the task Jacobian the way `jacobian` names."""
    for grads in task_grads:
        if grads is None:
            continue
        grads.grouped = grads.grouped and jacobian != "torchjd"
        for module in grads.modules if jacobian == "vmap" else []:
            if hasattr(module, "forward_per_task"):
                module.forward_per_task = None  # type: ignore[assignment]  # TaskGroupedPass then runs it under vmap


def ppo_update(aggregator: str, device: torch.device, jacobian: str, compiled: bool = False) -> Callable[[], None]:
    """One epoch of the paper protocol's MOORE update on MT3 shapes (`compiled`: the actor's and
    the critic's networks under torch.compile, for scripts/bench_compile.py)."""
    cfg = load_config(
        "configs/moore_paper/minigrid_mt3_moe.yaml",
        ["policy.arch=moore", f"learner.aggregator={aggregator}", "ppo.epochs=1"],
    )
    suite = get_suite(cfg.env.suite)
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, suite)).to(device)
    assert isinstance(policy, ActorCritic)
    if compiled:
        policy.actor.compile()
        policy.critic.compile()
    algo = PPOAlgorithm(policy, cfg, suite, device)
    choose_jacobian(list(algo._task_grads()), jacobian)
    n, k = 6000, suite.num_tasks
    g = torch.Generator().manual_seed(0)
    batch = PPOBatch(
        torch.randint(0, 11, (n, 7, 7, 3), generator=g, dtype=torch.uint8),
        torch.arange(n) % k,
        torch.randint(0, 7, (n,), generator=g),
        torch.full((n,), -math.log(7)),
        torch.randn(n, generator=g),
        torch.randn(n, generator=g),
        torch.zeros(n),
    )
    batch = PPOBatch(*(t.to(device) for t in vars(batch).values()))
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        assert algo.critic_learner is not None
        algo.critic_learner.update(batch, lambda mb: critic_terms(policy, mb), gen, epochs=1, plan=(n, True))
        algo.learner.update(batch, lambda mb: ppo_terms(policy, mb, algo.cfg), gen)

    return run


def sac_update(aggregator: str, device: torch.device, jacobian: str) -> Callable[[], None]:
    cfg = load_config(
        "configs/metaworld_mt10_moore_sac.yaml",
        [f"learner.aggregator={aggregator}", "rollout.workers=0", "rollout.pipeline=false", "sac.replay_size=10"],
    )  # the learner only
    suite = get_suite(cfg.env.suite)
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, suite)).to(device)
    assert isinstance(policy, SACPolicy)
    learner = SACAlgorithm(policy, cfg, suite, device).learner
    choose_jacobian([learner.actor_grads, learner.critic_grads], jacobian)
    k, per = suite.num_tasks, 128
    b = k * per
    batch = {
        "task_id": torch.arange(k).repeat_interleave(per),
        "obs": torch.randn(b, 39),
        "actions": torch.rand(b, 4) * 2 - 1,
        "rewards": torch.randn(b),
        "next_obs": torch.randn(b, 39),
        "terminated": torch.zeros(b, dtype=torch.bool),
    }
    batch = {key: v.to(device) for key, v in batch.items()}

    def run() -> None:
        learner.update(batch)

    return run


SHAPES: dict[str, Callable[[str, torch.device, str], Callable[[], None]]] = {
    "ppo-mt3": ppo_update,
    "sac-mt10": sac_update,
}


def bench_shape(shape: str, rows: list[Row], reps: int, rounds: int, device: torch.device) -> dict[Row, list[float]]:
    """Seconds per update of every row at `shape`, one list over rounds each (the learners dropped after)."""
    updates = {row: SHAPES[shape](row[0], device, row[1]) for row in rows}
    for update in updates.values():
        update()  # warm-up (and the aggregators' first solves)
    return alternate({row: partial(timed, fn, reps, device) for row, fn in updates.items()}, rounds, desc=shape)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--aggregators",
        nargs="+",
        default=None,
        choices=["none", *AGGREGATORS.names()],
        metavar="NAME",
        help="aggregators to time, `none` included for the ratios (default: none and every registered one)",
    )
    p.add_argument(
        "--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="update shapes (default: both)"
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the learners run (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    p.add_argument("--reps", type=int, default=1, help="updates timed per cell per round (default 1)")
    p.add_argument(
        "--jacobian",
        default="both",
        choices=["both", "all", "grouped", "vmap", "torchjd"],
        help="how the task Jacobian is computed (default both: grouped and torchjd; see above)",
    )
    args = p.parse_args()
    if args.rounds < 1 or args.reps < 1 or args.threads < 1:
        p.error("--rounds, --reps and --threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.aggregators or ["none", *AGGREGATORS.names()]
    paths = {"both": ["grouped", "torchjd"], "all": ["grouped", "vmap", "torchjd"]}.get(args.jacobian, [args.jacobian])
    rows = list(dict.fromkeys(NONE if name == "none" else (name, path) for name in names for path in paths))
    vs_grouped = "grouped" in paths and len(paths) > 1
    times = {shape: bench_shape(shape, rows, args.reps, args.rounds, device) for shape in args.shapes}
    print(
        f"device {args.device}, {args.threads} thread(s), {args.rounds} alternated rounds x {args.reps} update(s); "
        "ms: median over rounds; ratios: median over rounds (min-max)\n"
    )
    cols = ["ms", "x none", *(["x grouped"] if vs_grouped else [])]
    print("| aggregator | jacobian | " + " | ".join(f"{s} {c}" for s in args.shapes for c in cols) + " |")
    print("|" + " --- |" * (2 + len(cols) * len(args.shapes)))
    for row in rows:
        out = []
        for shape in args.shapes:
            secs, grouped = times[shape][row], times[shape].get((row[0], "grouped"))
            out += [
                f"{statistics.median(secs) * 1e3:.0f}",
                show_ratio(secs, times[shape][NONE]) if NONE in rows else "-",
            ]
            if vs_grouped:
                out.append(show_ratio(secs, grouped) if grouped and row[1] not in ("-", "grouped") else "-")
        print(f"| {row[0]} | {row[1]} | " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
