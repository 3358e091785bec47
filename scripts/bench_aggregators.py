"""Cost of each gradient aggregator (learner.aggregator) against `none`, side by side in one run.

  python scripts/bench_aggregators.py                      # both shapes, every aggregator, 1 thread
  python scripts/bench_aggregators.py --aggregators none pcgrad upgrad --reps 5
  python scripts/bench_aggregators.py --device cuda

Two shapes:
- PPO, MiniGrid MT3 (K = 3): MOORE with 2 conv experts, `configs/moore_paper/minigrid_mt3_moe.yaml`'s
  settings with policy.arch=moore, one epoch of the paper protocol's update (6000 transitions in
  minibatches of 768: the separate critic's full-batch step, then 8 policy minibatches).
- SAC, Meta-World MT10 (K = 10): MOORE with 4 experts of 400-400-400 (configs/metaworld_mt10_moore_sac.yaml),
  one update (critics, actor, temperatures, Polyak) on 128 transitions per task.
Random batches of the right shapes and dtypes; the median of --reps timings after a warm-up.
Prints ms per update and the ratio to `none`; with `--jacobian both` (the default) every
aggregator runs twice: with the task Jacobian from one grouped backward pass (`grouped`, what
training uses for MOORE / MoE) and from torchjd's `mtl_backward` (`torchjd`, the fallback for
architectures with parameters upstream of their shared module); `--jacobian all` adds `vmap`, the
grouped pass with the shared modules' own `forward_per_task` (MOORE's conv experts) set aside, so
every module runs under `torch.func.vmap`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from mtrl.algos.multitask import TaskGradients
from mtrl.algos.ppo import PPOAlgorithm, PPOBatch, critic_loss, critic_task_losses, ppo_loss, ppo_task_losses
from mtrl.algos.sac import SACAlgorithm
from mtrl.config import load_config
from mtrl.env.suite import get_suite
from mtrl.nn.policy import build_policy
from mtrl.registry import AGGREGATORS
from mtrl.run.trainer import policy_spec


def timed(fn: Callable[[], None], reps: int, device: torch.device) -> float:
    fn()  # warm-up (and the aggregators' first solves)
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def choose_jacobian(task_grads: list[TaskGradients | None], jacobian: str) -> None:
    """Make the learners' TaskGradients compute the task Jacobian the way `jacobian` names."""
    for grads in task_grads:
        if grads is None:
            continue
        grads.grouped = grads.grouped and jacobian != "torchjd"
        for module in grads.modules if jacobian == "vmap" else []:
            if hasattr(module, "forward_per_task"):
                module.forward_per_task = None  # TaskGroupedPass then runs the module under vmap


def ppo_update(aggregator: str, device: torch.device, jacobian: str) -> Callable[[], None]:
    cfg = load_config(
        "configs/moore_paper/minigrid_mt3_moe.yaml",
        ["policy.arch=moore", f"learner.aggregator={aggregator}", "ppo.epochs=1"],
    )
    suite = get_suite(cfg.env.suite)
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, suite)).to(device)
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
        algo.critic_learner.update(
            batch, lambda mb: critic_loss(policy, mb), gen, 1, (n, True), lambda mb: critic_task_losses(policy, mb, k)
        )
        algo.learner.update(
            batch,
            lambda mb: ppo_loss(policy, mb, algo.cfg),
            gen,
            None,
            None,
            lambda mb: ppo_task_losses(policy, mb, algo.cfg, k),
        )

    return run


def sac_update(aggregator: str, device: torch.device, jacobian: str) -> Callable[[], None]:
    cfg = load_config(
        "configs/metaworld_mt10_moore_sac.yaml",
        [f"learner.aggregator={aggregator}", "rollout.workers=0", "rollout.pipeline=false", "sac.replay_size=10"],
    )  # the learner only
    suite = get_suite(cfg.env.suite)
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, suite)).to(device)
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
    return lambda: learner.update(batch) and None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aggregators", nargs="+", default=None, help="default: none and every registered one")
    p.add_argument("--shapes", nargs="+", default=["ppo-mt3", "sac-mt10"], choices=["ppo-mt3", "sac-mt10"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--jacobian",
        default="both",
        choices=["both", "all", "grouped", "vmap", "torchjd"],
        help="how the task Jacobian is computed (see above)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.aggregators or ["none", *AGGREGATORS.names()]
    paths = {"both": ["grouped", "torchjd"], "all": ["grouped", "vmap", "torchjd"]}.get(args.jacobian, [args.jacobian])
    rows = [("none", "-") if name == "none" else (name, path) for name in names for path in paths]
    rows = list(dict.fromkeys(rows))  # `none` once
    makers = {"ppo-mt3": ppo_update, "sac-mt10": sac_update}
    results = {
        shape: {row: timed(makers[shape](row[0], device, row[1]), args.reps, device) for row in rows}
        for shape in args.shapes
    }
    print(f"device {args.device}, {args.threads} thread(s), median of {args.reps}")
    head = "| aggregator | jacobian | " + " | ".join(f"{s} ms | x none" for s in args.shapes) + " |"
    print(head + "\n|" + " --- |" * (2 + 2 * len(args.shapes)))
    for row in rows:
        cells = []
        for shape in args.shapes:
            ms, base = results[shape][row], results[shape].get(("none", "-"))
            cells += [f"{ms:.0f}", f"{ms / base:.2f}" if base else "-"]
        print(f"| {row[0]} | {row[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
