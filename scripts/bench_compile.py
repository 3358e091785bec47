"""torch.compile of the learner's networks on the CPU: one epoch of the MOORE paper protocol's PPO
update on MiniGrid MT3 (6000 transitions: the separate critic's full-batch step, then 8 policy
minibatches of 768; `scripts/bench_aggregators.py`'s `ppo-mt3` cell, aggregator none), with the
actor's and critic's networks eager and under `torch.compile` (TorchInductor), in alternated
rounds (scripts/rounds.py).

  python scripts/bench_compile.py                 # 1 thread, 5 rounds
  python scripts/bench_compile.py --threads 2 --rounds 7

Prints the compile time (the first updates, compiled forward and backward; not in the rounds),
then ms per update (median over rounds) and the median per-round ratio compiled / eager with its
min-max. The compiled update computes the same losses up to float rounding.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_aggregators import ppo_update, timed
from rounds import alternate, show_ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    p.add_argument("--reps", type=int, default=1, help="updates timed per cell per round (default 1)")
    args = p.parse_args()
    if min(args.threads, args.rounds, args.reps) < 1:
        p.error("--threads, --rounds and --reps must be >= 1")
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    eager = ppo_update("none", cpu, "grouped")
    compiled = ppo_update("none", cpu, "grouped", compiled=True)
    t0 = time.perf_counter()
    for _ in range(2):  # the compile (forward, backward, the minibatch shapes), then one warm call
        compiled()
    warm = time.perf_counter() - t0
    eager()
    times = alternate(
        {"eager": lambda: timed(eager, args.reps, cpu), "compiled": lambda: timed(compiled, args.reps, cpu)},
        args.rounds,
    )
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} alternated rounds x {args.reps} update(s)"
    )
    print(f"compile and first two compiled updates: {warm:.0f} s\n")
    print("| networks | ms per update | / eager |")
    print("|---|---|---|")
    for name, secs in times.items():
        print(f"| {name} | {statistics.median(secs) * 1e3:.0f} | {show_ratio(secs, times['eager'])} |")


if __name__ == "__main__":
    main()
