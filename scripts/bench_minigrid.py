"""Train policy architectures x seeds on a MiniGrid suite with MTPPO and print the results tables.

Every run is one `mtrl train <config> policy.arch=<arch> seed=<s>`; the tables read each run's
eval.json (final evaluation, 16 stochastic episodes per task, MOORE's protocol). Runs that already
have an eval.json are skipped and runs with checkpoints are resumed, so an interrupted benchmark
continues where it stopped. Reported per architecture: the IQM (25% trimmed mean, as rliable) over
seeds of the final mean return over tasks, its mean and range, and the per-task returns.

  python scripts/bench_minigrid.py --archs moore moe multihead mlp --seeds 0 1 2 --parallel 2
  python scripts/bench_minigrid.py --aggregate-only --archs moore moe multihead mlp --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean


def run_one(config: str, arch: str, seed: int, out: Path, overrides: list[str]) -> str:
    run = out / arch / f"s{seed}"
    if (run / "eval.json").exists():
        return f"{arch} s{seed}: done before, skipped"
    resume = [f"resume={run}"] if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()) else []
    cmd = [sys.executable, "-m", "mtrl", "train", config, f"policy.arch={arch}", f"seed={seed}",
           f"run_dir={run}", *resume, *overrides]  # fmt: skip
    run.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / f"{arch}_s{seed}.log", "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    return f"{arch} s{seed}: exit {rc} after {(time.time() - t0) / 60:.1f} min (log {out}/{arch}_s{seed}.log)"


def report(archs: list[str], seeds: list[int], out: Path) -> None:
    rows, tasks = {}, None
    for arch in archs:
        found = [s for s in seeds if (out / arch / f"s{s}" / "eval.json").exists()]
        if not found:
            print(f"{arch}: no finished runs under {out / arch}")
            continue
        evals = [json.loads((out / arch / f"s{s}" / "eval.json").read_text()) for s in found]
        tasks = [t["task"] for t in evals[0]["tasks"]]
        rows[arch] = (found, np.array([[t["mean_return"] for t in e["tasks"]] for e in evals]))  # [seeds, tasks]
    if not rows or tasks is None:
        return
    print("\n| arch | seeds | IQM of mean return over tasks | mean | min - max | " + " | ".join(tasks) + " |")
    print("|---|---|---|---|---|" + "---|" * len(tasks))
    for arch, (found, ret) in rows.items():
        per_run = ret.mean(axis=1)
        cells = " | ".join(f"{m:.3f}" for m in ret.mean(axis=0))
        print(f"| {arch} | {len(found)} | {trim_mean(per_run, 0.25):.3f} | {per_run.mean():.3f} | "
              f"{per_run.min():.3f} - {per_run.max():.3f} | {cells} |")  # fmt: skip
    print("\nPer run (mean return over tasks):")
    for arch, (found, ret) in rows.items():
        print(f"  {arch}: " + ", ".join(f"s{s}={r:.3f}" for s, r in zip(found, ret.mean(axis=1))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/minigrid_mt3_mtppo.yaml", help="training config shared by all runs")
    p.add_argument("--archs", nargs="+", default=["moore", "moe", "multihead", "mlp"], help="policy.arch values")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    p.add_argument("--out", type=Path, default=Path("runs/bench_minigrid"), help="parent folder: <out>/<arch>/s<seed>")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (each should get its own core)")
    p.add_argument("--aggregate-only", action="store_true", help="skip training; only read finished runs")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every run, e.g. rollout.workers=0")
    args = p.parse_args()
    if not args.aggregate_only:
        jobs = [(a, s) for s in args.seeds for a in args.archs]  # seed-major: complete seeds finish first
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            for line in pool.map(lambda j: run_one(args.config, j[0], j[1], args.out, args.overrides), jobs):
                print(line, flush=True)
    report(args.archs, args.seeds, args.out)


if __name__ == "__main__":
    main()
