"""Learning curves from run directories' TensorBoard events (`mtrl plot RUN [RUN ...] --out curves.png`).

Each run's curve is smoothed, put on a shared step grid per method and averaged over the method's
runs, with a 95% bootstrap band over runs (`mtrl.eval.stats.mean_ci`). The curve is either the
training one (`--source train`: the mean over tasks of the per-task episode success or return
logged every iteration, or one task's with `--per-task`) or the evaluation one (`--source eval`:
the `train.eval_every` evaluations, as MOORE plots them). Reference curves from CSV files (an
official run's, say) are drawn on the same axes. Methods are labelled as in `mtrl.eval.report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl.errors import MtrlError
from mtrl.eval.stats import mean_ci

GRID_POINTS = 200


@dataclass
class RunCurves:
    """One run's scalar series: tag -> (env steps, values)."""

    method: str
    path: Path
    series: dict[str, tuple[np.ndarray, np.ndarray]]

    def get(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        if tag not in self.series:
            known = ", ".join(sorted(t for t in self.series if t.startswith(("charts/", "task/", "eval/")))[:8])
            if tag.startswith("eval/"):
                raise MtrlError(
                    f"run {self.path} has no '{tag}' in its TensorBoard events; --source eval needs runs "
                    f"trained with train.eval_every (it has e.g. {known})"
                )
            raise MtrlError(f"run {self.path} has no '{tag}' in its TensorBoard events (it has e.g. {known})")
        return self.series[tag]


def read_run(path: Path, method: str) -> RunCurves:
    """Every scalar of `path`/tb; a clear MtrlError when there are no readable events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = path / "tb"
    if not path.is_dir():
        raise MtrlError(f"no such run directory: {path}")
    if not tb.is_dir() or not any(p.name.startswith("events.out.tfevents") for p in tb.iterdir()):
        raise MtrlError(f"run {path} has no TensorBoard event files (expected {tb}/events.out.tfevents.*)")
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0}).Reload()
    tags = acc.Tags()["scalars"]
    if not tags:
        raise MtrlError(f"the TensorBoard event files in {tb} hold no readable scalars (corrupt or empty)")
    series = {}
    for tag in tags:
        events = acc.Scalars(tag)
        steps = np.array([e.step for e in events], np.float64)
        order = np.argsort(steps, kind="stable")  # a resumed run appends; keep the newest value per step
        steps, values = steps[order], np.array([e.value for e in events], np.float64)[order]
        last = np.r_[steps[1:] != steps[:-1], True]
        series[tag] = (steps[last], values[last])
    return RunCurves(method, path, series)


def metric_tag(runs: list[RunCurves], metric: str, task: str | None = None, source: str = "train") -> str:
    """The tag plotted for `metric` ('auto': success where every run logs it, else return)."""
    if source == "eval":
        where = f"eval/{task}/" if task else "eval/mean_"
    else:
        where = f"task/{task}/" if task else "charts/mean_"
    if metric == "auto":
        metric = "success" if all(f"{where}success" in r.series for r in runs) else "return"
    return f"{where}{metric}"


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` points (shorter at the start)."""
    if window <= 1:
        return values
    c = np.cumsum(np.r_[0.0, values])
    n = np.minimum(np.arange(1, len(values) + 1), window)
    return (c[1:] - c[np.arange(1, len(values) + 1) - n]) / n


MethodCurve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]  # grid, mean, lo, hi, number of runs


def method_curves(runs: list[RunCurves], tag: str, window: int) -> dict[str, MethodCurve]:
    """method -> (grid, mean, lo, hi, number of runs): each run interpolated onto a grid up to the
    shortest run's last step, so every point averages all the method's runs."""
    out: dict[str, MethodCurve] = {}
    for method in dict.fromkeys(r.method for r in runs):
        curves = [r.get(tag) for r in runs if r.method == method]
        end = min(s[-1] for s, _ in curves)
        start = max(s[0] for s, _ in curves)
        grid = np.linspace(start, end, GRID_POINTS) if end > start else np.array([end])
        values = np.stack([np.interp(grid, s, smooth(v, window)) for s, v in curves])
        out[method] = (grid, *mean_ci(values), len(curves))
    return out


def reference_curve(table: dict[str, np.ndarray], tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The (env steps, values) of a reference CSV for a plotted tag: column '<task>/<metric>' or
    '<task>' for a task's curve, 'mean_<metric>' or 'mean' for the mean over tasks; None if absent."""
    parts = tag.split("/")
    metric = parts[-1].removeprefix("mean_")
    names = [f"mean_{metric}", "mean"] if len(parts) == 2 else [f"{parts[1]}/{metric}", parts[1]]
    col = next((n for n in names if n in table), None)
    return None if col is None else (table["env_steps"], table[col])


def plot(
    runs: list[RunCurves],
    out: Path,
    metric: str = "auto",
    per_task: bool = False,
    window: int = 5,
    title: str | None = None,
    source: str = "train",
    references: dict[str, dict[str, np.ndarray]] | None = None,
) -> Path:
    """Write the learning-curve figure (PNG, PDF or SVG by `out`'s suffix); `references` maps a
    label to a CSV table (`mtrl.eval.curve.read_curve`) drawn as a dashed line where it has the column."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    tasks = _common_tasks(runs, source) if per_task else [None]
    cols = math.ceil(math.sqrt(len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    from matplotlib.ticker import EngFormatter

    size = (4.2 * cols, 3.2 * rows) if per_task else (6.4, 4.2)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        tag = metric_tag(runs, metric, task, source)
        for method, (grid, mean, lo, hi, n) in method_curves(runs, tag, window).items():
            line = ax.plot(grid, mean, label=f"{method} ({n} run{'s' * (n > 1)})")[0]
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        for i, (label, table) in enumerate((references or {}).items()):
            ref = reference_curve(table, tag)
            if ref is not None:
                style = ("--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)))[i % 4]  # dashed, dotted, dash-dot, dash-dot-dot
                ax.plot(
                    ref[0],
                    smooth(ref[1], window),
                    linestyle=style,
                    color=("black", "dimgray")[i // 4 % 2],
                    linewidth=1.2,
                    label=label,
                )
        ax.set_title(task or "mean over tasks", fontsize=10)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M
        ax.set_ylabel(("eval " if source == "eval" else "") + tag.rsplit("/", 1)[-1].replace("mean_", ""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _common_tasks(runs: list[RunCurves], source: str = "train") -> list[str]:
    prefix = "eval/" if source == "eval" else "task/"
    per_run = [
        [t.split("/")[1] for t in r.series if t.startswith(prefix) and t.endswith("/return") and t.count("/") == 2]
        for r in runs
    ]
    common = [t for t in per_run[0] if all(t in p for p in per_run)]
    if not common:
        raise MtrlError("--per-task: the runs share no task with a logged return")
    return common
