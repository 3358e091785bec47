"""Train MTPPO on a MiniGrid suite for several seeds and print a per-task results table.

Each seed is one `mtrl train` run; the table reads each run's eval.json (16 stochastic episodes
per task, MOORE's protocol). With --aggregate-only it only reads existing run directories.

  python scripts/bench_minigrid_mtppo.py --config configs/minigrid_mt3_mtppo.yaml --seeds 0 1 --out runs/bench_mt3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/minigrid_mt3_mtppo.yaml", help="training config")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds to run")
    p.add_argument("--out", type=Path, default=Path("runs/bench_mt3"), help="parent folder of the run dirs")
    p.add_argument("--aggregate-only", action="store_true", help="skip training; read <out>/s<seed>/eval.json")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = p.parse_args()
    wall = {}
    for seed in args.seeds:
        run = args.out / f"s{seed}"
        if not args.aggregate_only:
            t0 = time.time()
            cmd = [sys.executable, "-m", "mtrl", "train", args.config, f"seed={seed}", f"run_dir={run}", *args.overrides]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            wall[seed] = time.time() - t0
    results = {s: json.loads((args.out / f"s{s}" / "eval.json").read_text()) for s in args.seeds}
    tasks = [t["task"] for t in results[args.seeds[0]]["tasks"]]
    returns = np.array([[t["mean_return"] for t in results[s]["tasks"]] for s in args.seeds])  # [seeds, tasks]
    success = np.array([[t["success_rate"] for t in results[s]["tasks"]] for s in args.seeds])
    print("\n| task | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean return | mean success |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    for k, name in enumerate(tasks):
        cells = " | ".join(f"{r:.3f}" for r in returns[:, k])
        print(f"| {name} | {cells} | {returns[:, k].mean():.3f} | {success[:, k].mean():.3f} |")
    per_seed = returns.mean(axis=1)
    cells = " | ".join(f"{r:.3f}" for r in per_seed)
    print(f"| **mean over tasks** | {cells} | {per_seed.mean():.3f} | {success.mean():.3f} |")
    for seed, secs in wall.items():
        print(f"seed {seed}: {secs / 60:.1f} min wall-clock")


if __name__ == "__main__":
    main()
