"""Compare methods' evaluation curves (train.eval_every, eval_curve.csv) with reference curves.

For each method (runs given as NAME=GLOB), over its seeds:
- the mean evaluation return over tasks at every `--every`-th update, with its 95% bootstrap band,
  and whether each reference curve lies inside that band there;
- the final score of each run: its mean evaluation return over the last `--last` updates (MOORE's
  curves end in a plateau, so one 16-episode evaluation is noisy), with the mean over runs, its
  standard error, and each reference's final score;
- the IQM over runs x tasks of those per-task final scores, with 95% stratified-bootstrap CIs
  (`mtrl.eval.stats.aggregate`), and per task;
- with `--reach VALUE`, how fast each run learns each task: the first update at which its
  evaluation return reaches VALUE;
- with `--timing`, where a run's time goes: the mean seconds per update of collection (rollouts
  with the actor), values + GAE, the optimiser steps and one evaluation (TensorBoard `perf/`);
- with `--gradients`, what the gradient diagnostics (train.log_grad_every, TensorBoard `grad/`)
  say: the fraction of conflicting task pairs, the mean and lowest pairwise cosine of the task
  gradients on the shared parameters, over all logged updates and the last `--last`, each task's
  share of the summed gradient norms, and the aggregator's mean task weights where it has them.
Prints markdown. The update index is the CSV's `iteration` column (a reference CSV's `update`).

  python scripts/curve_report.py 'moore=runs/moore_mt3/moore/s*' 'moe=runs/moore_mt3/moe/s*' \\
      --reference official=docs/examples/moore_mt3/official_moore_run1.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mtrl.errors import MtrlError
from mtrl.eval.curve import read_curve, read_references
from mtrl.eval.report import expand_targets
from mtrl.eval.stats import aggregate, mean_ci


def load_runs(targets: list[str]) -> dict[str, list[dict[str, np.ndarray]]]:
    """method -> the eval_curve.csv of each of its runs that has one."""
    methods: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, path in expand_targets(targets):
        csv = Path(path) / "eval_curve.csv"
        if csv.is_file():
            methods.setdefault(name or Path(path).parent.name, []).append(read_curve(csv))
    return methods


def tasks_of(curve: dict[str, np.ndarray]) -> list[str]:
    return [k.removesuffix("/return") for k in curve if k.endswith("/return")]


def column(curve: dict[str, np.ndarray], task: str | None) -> np.ndarray:
    """A run's (task's, or mean over tasks') return per update; a reference CSV names columns
    `<task>` and `mean`, an eval_curve.csv `<task>/return` and `mean_return`."""
    if task is None:
        return curve["mean_return"] if "mean_return" in curve else curve["mean"]
    return curve[f"{task}/return"] if f"{task}/return" in curve else curve[task]


def has(curve: dict[str, np.ndarray], task: str) -> bool:
    """Whether the curve has a column for the task (a reference may give only the mean)."""
    return f"{task}/return" in curve or task in curve


def updates(curve: dict[str, np.ndarray]) -> np.ndarray:
    return curve["iteration"] if "iteration" in curve else curve["update"]


def final_score(curve: dict[str, np.ndarray], final: slice, task: str | None = None) -> float:
    """Mean evaluation return (of one task, or over tasks) over the updates in `final`."""
    u = updates(curve)
    return float(column(curve, task)[(u >= final.start) & (u < final.stop)].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=GLOB", help="run directories with an eval_curve.csv, per method")
    p.add_argument(
        "--reference", action="append", default=[], metavar="LABEL=CSV", help="reference curves (repeatable)"
    )
    p.add_argument("--every", type=int, default=10, help="check the bands at every this many updates (default 10)")
    p.add_argument(
        "--last", type=int, default=10, help="final score: mean over the last this many updates (default 10)"
    )
    p.add_argument(
        "--timing", action="store_true", help="also the seconds per update in each phase (TensorBoard perf/)"
    )
    p.add_argument(
        "--gradients", action="store_true", help="also the gradient-conflict diagnostics (TensorBoard grad/)"
    )
    p.add_argument(
        "--reach",
        type=float,
        default=None,
        metavar="VALUE",
        help="also the first update at which each run's evaluation return on each task reaches VALUE",
    )
    args = p.parse_args()
    try:
        methods = load_runs(args.runs)
        if not methods:
            raise MtrlError(f"no eval_curve.csv in any run directory of {' '.join(args.runs)}")
        refs = read_references(args.reference)
    except MtrlError as exc:
        sys.exit(f"curve_report: {exc}")
    lengths = [int(updates(c)[-1]) for runs in methods.values() for c in runs]
    n_updates = min(lengths)
    if n_updates != max(lengths):  # e.g. a run still in progress: every table stops at the shortest run
        print(
            f"curve_report: the runs have {n_updates} to {max(lengths)} updates; the tables use the first {n_updates} "
            "(leave unfinished runs out of the globs for final scores)",
            file=sys.stderr,
        )
    bands(methods, refs, list(range(args.every, n_updates + 1, args.every)), args.every)
    final = slice(n_updates - args.last + 1, n_updates + 1)
    tasks = tasks_of(next(iter(methods.values()))[0])
    finals(methods, refs, final, tasks)
    if args.reach is not None:
        reach(methods, refs, tasks, args.reach)
    try:  # TensorBoard events: a run without readable ones stops with one line
        if args.timing:
            timing(args.runs)
        if args.gradients:
            gradients(args.runs, args.last)
    except MtrlError as exc:
        sys.exit(f"curve_report: {exc}")


def bands(
    methods: dict[str, list[dict[str, np.ndarray]]],
    refs: dict[str, dict[str, np.ndarray]],
    checks: list[int],
    every: int,
) -> None:
    """The mean over tasks at every checked update, each method's band, and whether each reference
    lies inside the first method's band."""
    print(
        f"Mean evaluation return over tasks at every {every}th update: mean over seeds [95% bootstrap band];"
        f" a reference is checked against the first method ({next(iter(methods))})'s band\n"
    )
    at = {
        name: mean_ci(np.stack([column(c, None)[np.searchsorted(updates(c), checks)] for c in runs]))
        for name, runs in methods.items()
    }
    ref_vals = {label: column(ref, None)[np.searchsorted(updates(ref), checks)] for label, ref in refs.items()}
    _, lo, hi = next(iter(at.values()))
    head = [f"{n} ({len(methods[n])} seeds)" for n in methods] + [h for label in refs for h in (label, "inside?")]
    print("| update | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for i, u in enumerate(checks):
        cells = [f"{m[i]:.3f} [{a[i]:.3f}, {b[i]:.3f}]" for m, a, b in at.values()]
        for vals in ref_vals.values():
            cells += [f"{vals[i]:.3f}", "yes" if lo[i] <= vals[i] <= hi[i] else "**no**"]
        print(f"| {u} | " + " | ".join(cells) + " |")


def finals(
    methods: dict[str, list[dict[str, np.ndarray]]],
    refs: dict[str, dict[str, np.ndarray]],
    final: slice,
    tasks: list[str],
) -> None:
    """Each run's final score, the mean and standard error per method; the IQM over runs x tasks."""
    print(f"\nFinal score = mean evaluation return over updates {final.start}-{final.stop - 1}, per run:\n")
    print("| curve | runs | mean | standard error | per run |")
    print("|---|---|---|---|---|")
    for name, runs in methods.items():
        scores = np.array([final_score(c, final) for c in runs])
        se = scores.std(ddof=1) / np.sqrt(len(scores)) if len(scores) > 1 else float("nan")
        print(
            f"| {name} | {len(runs)} | {scores.mean():.3f} | {se:.3f} | " + ", ".join(f"{s:.3f}" for s in scores) + " |"
        )
    for label, ref in refs.items():
        print(f"| {label} | 1 | {final_score(ref, final):.3f} | | |")
    print(
        "\nIQM over runs x tasks of the per-task final scores [95% stratified-bootstrap CI], and the per-task means:\n"
    )
    print("| curve | IQM | mean | " + " | ".join(t.removeprefix("MiniGrid-") for t in tasks) + " |")
    print("|---|---|---|" + "---|" * len(tasks))
    for name, runs in methods.items():
        scores = np.array([[final_score(c, final, t) for t in tasks] for c in runs])
        agg = aggregate(scores)
        print(f"| {name} | {agg['iqm']} | {agg['mean']} | " + " | ".join(f"{v:.3f}" for v in scores.mean(0)) + " |")
    for label, ref in refs.items():
        cells = [f"{final_score(ref, final, t):.3f}" if has(ref, t) else "-" for t in tasks]
        print(f"| {label} | | {final_score(ref, final):.3f} | " + " | ".join(cells) + " |")


def reach(
    methods: dict[str, list[dict[str, np.ndarray]]],
    refs: dict[str, dict[str, np.ndarray]],
    tasks: list[str],
    value: float,
) -> None:
    """How fast each run learns each task: the first update whose evaluation return is >= value."""

    def first(curve: dict[str, np.ndarray], task: str) -> str:
        if not has(curve, task):
            return "-"
        hit = np.flatnonzero(column(curve, task) >= value)
        return str(int(updates(curve)[hit[0]])) if len(hit) else "never"

    print(f"\nFirst update at which the evaluation return reaches {value}, per run:\n")
    print("| curve | " + " | ".join(t.removeprefix("MiniGrid-") for t in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name, runs in [*methods.items(), *((label, [ref]) for label, ref in refs.items())]:
        print(f"| {name} | " + " | ".join(", ".join(first(c, t) for c in runs) for t in tasks) + " |")


def timing(targets: list[str]) -> None:
    """Mean seconds per update of each phase, over the runs of each method that logged them."""
    from mtrl.eval.plot import read_run

    phases = ("perf/collect_s", "perf/advantages_s", "perf/update_s", "perf/eval_s")
    rows: dict[str, list[list[float]]] = {}
    for name, path in expand_targets(targets):
        series = read_run(Path(path), name or "").series
        if all(p in series for p in phases):
            rows.setdefault(name or Path(path).parent.name, []).append([float(series[p][1].mean()) for p in phases])
    print("\nSeconds per update (mean over updates, then over runs; evaluation: one of 16 episodes x K tasks):\n")
    print("| method | runs | collection | values + GAE | optimiser steps | evaluation | all |")
    print("|---|---|---|---|---|---|---|")
    for name, values in rows.items():
        v = np.mean(values, axis=0)
        print(f"| {name} | {len(values)} | " + " | ".join(f"{x:.2f}" for x in v) + f" | {v.sum():.2f} |")


def gradients(targets: list[str], last: int) -> None:
    """The gradient diagnostics of each method's runs that logged them: means over updates, then runs."""
    from mtrl.eval.plot import read_run

    rows: dict[str, list[dict[str, float]]] = {}
    tasks: dict[str, list[str]] = {}
    for name, path in expand_targets(targets):
        if not (Path(path) / "tb").is_dir():
            continue
        series = read_run(Path(path), name or "").series
        if "grad/conflicting_fraction" not in series:
            continue
        method = name or Path(path).parent.name
        cos = np.stack([v for k, (_, v) in sorted(series.items()) if k.startswith("grad/cosine/")])  # [pairs, updates]
        names = sorted(k.removeprefix("grad/norm/") for k in series if k.startswith("grad/norm/"))
        norms = np.stack([series[f"grad/norm/{t}"][1] for t in names])  # [K, updates]
        frac = series["grad/conflicting_fraction"][1]
        row = {
            "updates": float(frac.size),
            "conflicting": float(frac.mean()),
            "conflicting_last": float(frac[-last:].mean()),
            "cosine": float(cos.mean()),
            "cosine_last": float(cos[:, -last:].mean()),
            "lowest": float(cos.min(0).mean()),
        }
        row.update({f"share/{t}": float(x) for t, x in zip(names, (norms / norms.sum(0)).mean(1))})
        row.update(
            {f"weight/{t}": float(series[f"grad/weight/{t}"][1].mean()) for t in names if f"grad/weight/{t}" in series}
        )
        rows.setdefault(method, []).append(row)
        tasks[method] = names
    print(
        "\nGradient diagnostics on the shared parameters (means over the logged updates, then over runs; "
        f"'last': the last {last} logged updates; share: a task's fraction of the summed task-gradient norms):\n"
    )
    print(
        "| method | runs | conflicting pairs | last | mean cosine | last | lowest pair cosine | norm share per task | aggregator weight per task |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for method, runs in rows.items():
        mean = {k: float(np.mean([r[k] for r in runs if k in r])) for k in runs[0]}
        share = ", ".join(f"{t} {mean[f'share/{t}']:.2f}" for t in tasks[method])
        weight = ", ".join(f"{t} {mean[f'weight/{t}']:.2f}" for t in tasks[method] if f"weight/{t}" in mean) or "-"
        print(
            f"| {method} | {len(runs)} | {mean['conflicting']:.2f} | {mean['conflicting_last']:.2f} | {mean['cosine']:+.3f} | "
            f"{mean['cosine_last']:+.3f} | {mean['lowest']:+.3f} | {share} | {weight} |"
        )


if __name__ == "__main__":
    main()
