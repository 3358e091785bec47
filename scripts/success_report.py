"""Compare runs by their training success: the learning check of a success-rate suite (Meta-World).

For each method (runs given as NAME=GLOB), per run:
- the training success at each of `--at` env steps: the mean of the last `--window` logged values
  of TensorBoard's `charts/mean_success` (the mean over tasks of the episodes that ended in an
  iteration; the policy samples its actions) up to that step, so one lucky episode does not count;
- the env steps at which that trailing mean first reaches `--threshold`;
- the final evaluation success (eval.json, the suite's protocol: Meta-World's 50 episodes per task,
  one per goal variant, mean action);
- the minutes of training the sweep counted for it (OUT/sweep.json, over its retries), where there is one.
Then per method: the median env steps to the threshold (a run that never got there counts as last)
and the mean and range of the final evaluation success. Prints markdown.

  python scripts/success_report.py 'softmod=runs/sac_reach_family/softmod/s*' \\
      'care=runs/sac_reach_family/care/s*' --at 10000 20000 30000 40000 50000 60000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mtrl.errors import MtrlError
from mtrl.eval.plot import read_run
from mtrl.eval.report import expand_targets

TAG = "charts/mean_success"


def trailing(steps: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """At each logged step, the mean of the last `window` values up to it (fewer at the start)."""
    sums = np.cumsum(np.r_[0.0, values])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def minutes(run: Path) -> float | None:
    """The training minutes the sweep recorded for `run` (OUT/<method>/s<seed>), if it ran in one."""
    try:
        state = json.loads((run.parent.parent / "sweep.json").read_text(encoding="utf-8"))
        return state["runs"][f"{run.parent.name}/{run.name}"]["minutes"]
    except (OSError, ValueError, KeyError, TypeError):  # no sweep, or one that did not record this run
        return None


def run_row(run: Path, marks: list[int], window: int, threshold: float) -> dict:
    """One run's training success at the marks, env steps to the threshold, final success, minutes."""
    steps, values = read_run(run, "").get(TAG)
    mean = trailing(steps, values, window)
    final, finished = None, (run / "eval.json").is_file()
    if finished:
        try:
            final = json.loads((run / "eval.json").read_text(encoding="utf-8"))["mean_success"]
        except (ValueError, KeyError, TypeError) as exc:
            raise MtrlError(f"{run / 'eval.json'} is not a run's final evaluation ({exc!r})") from None
    # a mark the run has not got to yet (still training) has no value; a finished run's last one stands
    at = [
        float(mean[steps <= m][-1]) if (steps <= m).any() and (finished or steps[-1] >= m) else float("nan")
        for m in marks
    ]
    hit = np.flatnonzero((mean >= threshold) & (np.arange(len(mean)) + 1 >= window))
    return {
        "at": at,
        "reached": float(steps[hit[0]]) if len(hit) else float("nan"),
        "final": final,
        "minutes": minutes(run),
        "last_step": float(steps[-1]),
    }


def cell(x: float | None, fmt: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, fmt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=GLOB", help="run directories (TensorBoard tb/), per method")
    p.add_argument(
        "--at",
        type=int,
        nargs="+",
        default=[10_000, 20_000, 30_000, 40_000, 50_000, 60_000],
        help="env steps at which to show the training success (default 10k ... 60k)",
    )
    p.add_argument("--window", type=int, default=10, help="logged iterations in the trailing mean (default 10)")
    p.add_argument("--threshold", type=float, default=0.8, help="training success to reach (default 0.8)")
    args = p.parse_args()
    if args.window < 1 or not 0.0 <= args.threshold <= 1.0:
        sys.exit("success_report: --window must be >= 1 and --threshold within [0, 1]")
    try:
        rows: dict[str, list[tuple[str, dict]]] = {}
        for name, path in expand_targets(args.runs):
            run = Path(path)
            rows.setdefault(name or run.parent.name, []).append(
                (run.name, run_row(run, args.at, args.window, args.threshold))
            )
    except MtrlError as exc:
        sys.exit(f"success_report: {exc}")
    marks = [f"{m // 1000}k" if m % 1000 == 0 else str(m) for m in args.at]
    print(
        f"Training success (mean of the last {args.window} logged iterations) at each env step, env steps until it "
        f"first reaches {args.threshold}, final evaluation success (eval.json):\n"
    )
    print("| method | run | " + " | ".join(marks) + f" | steps to {args.threshold} | final eval success | minutes |")
    print("|---|---|" + "---|" * (len(marks) + 3))
    for name, runs in rows.items():
        for run, r in runs:
            cells = [cell(x, ".2f") for x in r["at"]]
            reached = cell(r["reached"], ".0f") if np.isfinite(r["reached"]) else f"not by {r['last_step']:.0f}"
            print(
                f"| {name} | {run} | " + " | ".join(cells) + f" | {reached} | {cell(r['final'], '.2f')} | "
                f"{cell(r['minutes'], '.1f')} |"
            )
    print(f"\n| method | runs | median steps to {args.threshold} | final eval success: mean (min - max) |")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        reached = np.array([r["reached"] for _, r in runs])
        median = np.median(np.where(np.isfinite(reached), reached, np.inf))  # a run that never reached counts as last
        finals = np.array([r["final"] for _, r in runs if r["final"] is not None], np.float64)
        final = f"{finals.mean():.2f} ({finals.min():.2f} - {finals.max():.2f})" if finals.size else "-"
        print(f"| {name} | {len(runs)} | {cell(median, '.0f') if np.isfinite(median) else 'not reached'} | {final} |")


if __name__ == "__main__":
    main()
