"""Time one multi-task SAC update (critics, actor, temperatures, Polyak) per policy architecture,
side by side in one run, on the CPU (one thread by default) or the GPU.

  python scripts/bench_sac_update.py                         # MT10 shapes, batch 128 per task, 1 thread
  python scripts/bench_sac_update.py --device cuda --tasks 10 --batch-per-task 128

Shapes: Meta-World (39-dim observations, 4-dim actions), the networks of
`configs/metaworld_mt10_moore_sac.yaml` with `policy.arch` swapped: mlp (MTSAC) and multihead
400-400-400, MOORE and MoE 4 experts of 400-400-400 each; Soft Modularization and CARE as their
own MT10 configs (`configs/metaworld_mt10_{softmod,care,paco}_sac.yaml`).
Prints ms per update and the ratio to the MTSAC network (`mlp`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mtrl.algos.sac_learner import SACLearner
from mtrl.config import load_config
from mtrl.nn.policy import build_policy
from mtrl.env.suite import get_suite
from mtrl.run.trainer import policy_spec


def time_update(arch: str, tasks: int, batch_per_task: int, device: torch.device, reps: int) -> float:
    suite = "metaworld-mt10" if tasks == 10 else "metaworld-mt1-reach-v3"
    own = Path(f"configs/metaworld_mt10_{arch}_sac.yaml")
    if own.is_file():  # softmod, care, paco: their own MT10 configs (the sizes of Soft-Module / Meta-World+)
        cfg = load_config(own, [f"env.suite={suite}"])
    else:  # mlp and multihead as MTSAC's 400-400-400 (configs/metaworld_mt10_mtsac.yaml); MOORE/MoE experts 400-400-400
        cfg = load_config("configs/metaworld_mt10_moore_sac.yaml", [f"env.suite={suite}", f"policy.arch={arch}",
                                                                    "policy.hidden=400", "policy.layers=3"])  # fmt: skip
    policy = build_policy(policy_spec(cfg, get_suite(suite))).to(device)
    learner = SACLearner(policy.actor, policy.critic, tasks, 4)
    b = tasks * batch_per_task
    batch = {"task_id": torch.arange(tasks).repeat_interleave(batch_per_task), "obs": torch.randn(b, 39),
             "actions": torch.rand(b, 4) * 2 - 1, "rewards": torch.randn(b), "next_obs": torch.randn(b, 39),
             "terminated": torch.zeros(b, dtype=torch.bool)}  # fmt: skip
    batch = {k: v.to(device) for k, v in batch.items()}
    for _ in range(3):
        learner.update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        learner.update(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["mlp", "multihead", "moore", "moe", "softmod", "care", "paco"])
    p.add_argument("--tasks", type=int, default=10, choices=[1, 10], help="MT1 (reach) or MT10 shapes")
    p.add_argument("--batch-per-task", type=int, default=128)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    times = {a: time_update(a, args.tasks, args.batch_per_task, device, args.reps) for a in args.archs}
    base = times.get("mlp")
    print(f"SAC update, {args.tasks} task(s) x {args.batch_per_task}, {args.device}, {args.threads} thread(s)\n")
    print("| arch | ms per update | / mlp |\n|---|---|---|")
    for arch, ms in times.items():
        print(f"| {arch} | {ms:.1f} | {ms / base:.2f}x |" if base else f"| {arch} | {ms:.1f} | - |")


if __name__ == "__main__":
    main()
