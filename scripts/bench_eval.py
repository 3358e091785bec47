"""Evaluation in parallel: a Meta-World evaluation in-process against the same evaluation split
over Ray rollout workers, in alternated rounds (scripts/rounds.py).

  python scripts/bench_eval.py                          # MT10, 5 episodes per task, 2 workers, 5 rounds
  python scripts/bench_eval.py --episodes 50 --rounds 5 # the full protocol (50 per task)

Both cells evaluate the same policy (the MTSAC network of configs/metaworld_mt10_mtsac.yaml,
untrained, mean action) on the same episodes with the same seeds: `mtrl.eval.evaluate` with the
in-process runner (one torch thread, as a worker) and with `WorkerPool.run_eval` (the weights
pushed through Ray's object store, then each worker runs its contiguous share of the chunks). Ray
and the workers start once, outside the timing. Prints each round's seconds and the median
speed-up with its min-max; the episode results of the two cells are checked to be identical.
"""

from __future__ import annotations

import argparse
import time

import torch
from rounds import alternate, show_ratio

import mtrl
from mtrl.collect.episodes import run_chunks
from mtrl.collect.pool import WorkerPool
from mtrl.config import load_config
from mtrl.eval.evaluate import EvalResult, evaluate
from mtrl.nn.policy import build_policy
from mtrl.run.trainer import policy_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="metaworld-mt10", help="suite to evaluate on (default metaworld-mt10)")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task in each evaluation (default 5)")
    p.add_argument("--workers", type=int, default=2, help="Ray rollout workers of the parallel cell (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    args = p.parse_args()
    cfg = load_config(
        "configs/metaworld_mt10_mtsac.yaml",
        [
            f"env.suite={args.suite}",
            f"rollout.workers={args.workers}",
            f"rollout.num_envs={args.workers}",
            f"ray.num_cpus={args.workers}",
        ],
    )
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    torch.manual_seed(0)
    policy = build_policy(spec)
    torch.set_num_threads(1)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    results: dict[str, EvalResult] = {}

    def cell(name: str, runner) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        results[name] = evaluate(policy, suite, args.episodes, seed=0, greedy=True, runner=runner)
        return time.perf_counter() - t0

    try:
        times = alternate(
            {
                "in-process": lambda: cell("in-process", run_chunks),
                f"{args.workers} workers": lambda: cell("workers", pool.run_eval),
            },
            args.rounds,
        )
    finally:
        pool.close()
    same = results["in-process"].to_json() == results["workers"].to_json()
    steps = sum(sum(t.lengths or []) for t in results["workers"].tasks)
    print(
        f"{suite.name}: {args.episodes} episodes per task ({steps} env steps per evaluation), "
        f"{args.rounds} alternated rounds; episode results identical: {same}"
    )
    names = list(times)
    print("| round | " + " | ".join(f"{n} s" for n in names) + " | speed-up |")
    print("|---|" + "---|" * (len(names) + 1))
    for r in range(args.rounds):
        print(
            f"| {r + 1} | "
            + " | ".join(f"{times[n][r]:.1f}" for n in names)
            + f" | {times[names[0]][r] / times[names[1]][r]:.2f}x |"
        )
    print(
        f"\nspeed-up of {names[1]} over in-process: median {show_ratio(times[names[0]], times[names[1]])} (min-max over rounds)"
    )


if __name__ == "__main__":
    main()
