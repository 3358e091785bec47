"""Kill a real training run with SIGKILL at random moments, resume it each time, and report
what survived: whether the newest checkpoint loaded, whether the kill landed inside a
checkpoint write (a temp file was left behind), and how many env steps each kill cost.

  python scripts/reliability_kills.py --kills 20 --seed 0
  python scripts/reliability_kills.py --kills 10 -- policy.hidden=1024   # bigger, slower checkpoint writes

Every start is `mtrl train configs/toy_mtppo.yaml rollout.workers=0 train.checkpoint_every=1 ...`
(the first with run_dir=, the rest with resume=); the last one adds --final-steps and ends. Steps
lost by a kill = env steps its progress bar last showed - env steps of the checkpoint resumed from.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mtrl.run.checkpoint import list_checkpoints, load_latest

ROOT = Path(__file__).resolve().parents[1]


def steps_at_kill(output: str) -> int:
    """The env steps the progress bar last showed (e.g. '6.32k/1.00M' -> 6320)."""
    found = re.findall(r"([0-9.]+)([kM]?)/[0-9.]+[kM]?", output)
    if not found:
        return 0
    value, unit = found[-1]
    return int(float(value) * {"": 1, "k": 1e3, "M": 1e6}[unit])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs before the final, uninterrupted start")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill times")
    p.add_argument("--min-s", type=float, default=2.0, help="earliest kill, seconds after a start")
    p.add_argument("--max-s", type=float, default=8.0, help="latest kill, seconds after a start")
    p.add_argument("--total-steps", type=int, default=2_000_000, help="train.total_steps while killing")
    p.add_argument("--final-steps", type=int, default=20_000, help="env steps the last, uninterrupted start adds")
    p.add_argument("overrides", nargs="*", help="extra config overrides (after --)")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    run = Path(tempfile.mkdtemp(prefix="mtrl_kills_")) / "run"
    base = [
        sys.executable,
        "-m",
        "mtrl",
        "train",
        str(ROOT / "configs/toy_mtppo.yaml"),
        "rollout.workers=0",
        "train.checkpoint_every=1",
        f"train.total_steps={args.total_steps}",
        "train.eval_episodes=0",
        "learner.threads=1",
        *args.overrides,
    ]
    rows, newest = [], 0
    for k in range(args.kills + 1):
        cmd = base + ([f"resume={run}"] if run.is_dir() else [f"run_dir={run}"])  # a start killed too early made none
        if k == args.kills:  # the last start finishes a little after where the kills left it
            cmd.append(f"train.total_steps={newest + args.final_steps}")
        t0 = time.time()
        tmp_before = set((run / "checkpoints").glob(".tmp_*")) if (run / "checkpoints").is_dir() else set()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if k == args.kills:
            out = proc.communicate()[0]
            ok = proc.returncode == 0
            rows.append(
                ("final", f"{time.time() - t0:.1f}", "-", "exit 0" if ok else f"exit {proc.returncode}", "-", "-")
            )
            if not ok:
                print(out)
            break
        wait = float(rng.uniform(args.min_s, args.max_s))
        time.sleep(wait)
        proc.kill()
        out = proc.communicate()[0]
        # a temp file this start left behind: the kill came while it was writing a checkpoint
        in_write = (
            bool(set((run / "checkpoints").glob(".tmp_*")) - tmp_before) if (run / "checkpoints").is_dir() else False
        )
        reached = steps_at_kill(out)
        try:
            steps = int(load_latest(run)[1]["env_steps"]) if list_checkpoints(run) else 0
            loads = "yes" if list_checkpoints(run) else "no checkpoint yet"
        except Exception as exc:  # noqa: BLE001 - a failure here is what this script looks for
            steps, loads = -1, f"NO: {exc}"
        back = "BACKWARDS" if steps < newest else "ok"
        newest = max(newest, steps)
        rows.append(
            (
                str(k + 1),
                f"{wait:.1f}",
                "yes" if in_write else "no",
                loads,
                f"{steps} ({back})",
                str(max(0, reached - steps)),
            )
        )
    head = ("kill", "after s", "during a write", "newest checkpoint loads", "resumed from step", "steps lost")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    final = int(load_latest(run)[1]["env_steps"])
    print(f"\nrun {run}: finished at {final} env steps")


if __name__ == "__main__":
    main()
