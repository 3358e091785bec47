"""Throughput, side by side in one run: raw env steps/s per backend, mtrl collection and end-to-end
PPO steps/s (with and without rollout.pipeline), printed as one table with ratios.

  (a) raw env: random actions through the slot-ordered vector env, one process
  (b) collect: Ray workers with the MOORE policy, weights pushed every iteration, no learning
  (c) train:   collect + PPO update (MOORE actor and critic), as `mtrl train` runs it

  python scripts/bench_throughput.py --suites minigrid-mt3 --backends gymnasium envpool --iters 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import mtrl
from mtrl.algos.ppo import PPOLearner, make_batch
from mtrl.config import load_config
from mtrl.suite import make_vector_env, slot_tasks
from mtrl.trainer import policy_spec
from mtrl.nn.policy import build_policy
from mtrl.vector import fast_tasks
from mtrl.workers import WorkerPool

CONFIGS = {"minigrid-mt3": "configs/minigrid_mt3_moore.yaml"}  # metaworld-mt10 joins with its PPO/SAC config


def raw_env(suite: mtrl.TaskSuite, backend: str, slots: int, steps: int) -> float:
    """Random-action env steps/s of `slots` envs stepped together."""
    envs = make_vector_env(suite, slot_tasks(suite.num_tasks, slots), list(range(slots)), "next_step", None, backend)
    envs.reset(seed=list(range(slots)))
    space = suite.action_space
    rng = np.random.default_rng(0)
    sample = (lambda: rng.integers(0, space.n, slots)) if hasattr(space, "n") else (lambda: rng.uniform(-1, 1, (slots, *space.shape)))
    t0 = time.perf_counter()
    for _ in range(steps):
        envs.step(sample())
    rate = slots * steps / (time.perf_counter() - t0)
    envs.close()
    return rate


def pool_rate(config: str, overrides: list[str], iters: int, learn: bool) -> float:
    """Env steps/s of `iters` iterations (after one warm-up) of collection, plus PPO updates if `learn`."""
    cfg = load_config(config, overrides)
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    policy = build_policy(spec)
    learner = PPOLearner(policy, cfg.ppo)
    gen = torch.Generator().manual_seed(0)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    try:
        pool.collect(policy)  # warm-up: actor start, env builds
        steps, in_flight = 0, None
        t0 = time.perf_counter()
        for _ in range(iters):
            frag = pool.wait(in_flight if in_flight is not None else pool.submit(policy))
            in_flight = pool.submit(policy) if cfg.rollout.pipeline else None
            if learn:
                learner.update(make_batch(frag, cfg.ppo, suite.num_tasks, torch.device("cpu")), gen)
            steps += frag.num_steps
        return steps / (time.perf_counter() - t0)
    finally:
        pool.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", nargs="+", default=["minigrid-mt3"], choices=sorted(CONFIGS))
    p.add_argument("--backends", nargs="+", default=["gymnasium", "envpool"], choices=["gymnasium", "envpool"])
    p.add_argument("--workers", type=int, default=2, help="Ray rollout workers for (b) and (c)")
    p.add_argument("--iters", type=int, default=6, help="timed iterations for (b) and (c)")
    p.add_argument("--raw-steps", type=int, default=500, help="vector steps for (a)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.workers} workers\n")
    print("| suite | backend | (a) raw env steps/s | (b) collect steps/s | (b)/(a) | (c) train steps/s | (c) pipelined | pipelined/plain |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.suites:
        suite = mtrl.get_suite(name)
        slots = 12 if name.startswith("minigrid") else 10
        for backend in args.backends:
            if backend == "envpool" and not any(fast_tasks(suite)):
                print(f"| {name} | envpool | no envpool port wired for this suite | | | | | |")
                continue
            base = [f"env.backend={backend}", f"rollout.workers={args.workers}", f"rollout.num_envs={slots}"]
            a = raw_env(suite, backend, slots, args.raw_steps)
            b = pool_rate(CONFIGS[name], base, args.iters, learn=False)
            c = pool_rate(CONFIGS[name], base, args.iters, learn=True)
            cp = pool_rate(CONFIGS[name], [*base, "rollout.pipeline=true"], args.iters, learn=True)
            print(f"| {name} | {backend} | {a:.0f} | {b:.0f} | {b / a:.2f}x | {c:.0f} | {cp:.0f} | {cp / c:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
