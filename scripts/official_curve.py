"""The evaluation curve of an official MOORE MiniGrid run, from its stdout log, as a reference CSV.

The official code (github AhmedMagdyHendawy/MOORE, run through scripts/official_moore_mt3.py)
logs one line per task after every epoch:
`Epoch N | EnvName: <task> ... AverageReturn: <mean of its 16 evaluation episodes> ...`. This
writes them as the CSV that `mtrl plot --reference` and `scripts/curve_report.py --reference`
read: columns update, env_steps (update x steps per task x tasks), one per task, mean. Epoch 0 is
the evaluation before training. Epochs without a line for every task (an unfinished run) are left
out, with a note.

  python scripts/official_curve.py runs/official/moore_run2.stdout.log docs/examples/moore_mt3/official_moore_run2.csv
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

LINE = re.compile(r"\[INFO\] Epoch (\d+) \| EnvName: (\S+) .*?AverageReturn: (\S+)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", type=Path, help="the official run's stdout log")
    p.add_argument("out", type=Path, help="the CSV to write")
    p.add_argument("--steps-per-task", type=int, default=2000, help="env steps per task per epoch (default 2000)")
    args = p.parse_args()
    if not args.log.is_file():
        sys.exit(f"official_curve: no log at {args.log}")
    epochs: dict[int, dict[str, float]] = {}
    tasks: list[str] = []
    for m in LINE.finditer(args.log.read_text(errors="replace")):
        epoch, task, ret = int(m.group(1)), m.group(2), float(m.group(3))
        epochs.setdefault(epoch, {})[task] = ret
        if task not in tasks:
            tasks.append(task)
    if not epochs:
        sys.exit(f"official_curve: {args.log} has no 'Epoch N | EnvName: ... AverageReturn: ...' lines")
    complete = [e for e in sorted(epochs) if len(epochs[e]) == len(tasks)]
    if len(complete) < len(epochs):
        print(
            f"official_curve: left out epoch(s) {sorted(set(epochs) - set(complete))}: not every task logged",
            file=sys.stderr,
        )
    rows = ["update,env_steps," + ",".join(tasks) + ",mean"]
    for e in complete:
        vals = [epochs[e][t] for t in tasks]
        rows.append(
            f"{e},{e * args.steps_per_task * len(tasks)},"
            + ",".join(f"{v:.4f}" for v in vals)
            + f",{sum(vals) / len(vals):.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(rows) + "\n")
    print(f"official_curve: wrote {len(complete)} epochs x {len(tasks)} tasks to {args.out}")


if __name__ == "__main__":
    main()
