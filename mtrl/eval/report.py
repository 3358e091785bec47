"""Compare evaluated runs: per-run tables, per-method aggregates with bootstrap CIs, and the
same as markdown, CSV and JSON (`mtrl eval RUN [RUN ...]`).

A method is a label shared by runs (its seeds): `NAME=PATH` on the command line, else the run's
`algo-arch` from its config. The score of a (run, task) is the task's success rate on suites that
report success, else its mean return, normalised to [0, 1] by the suite's `return_range` when it
has one (`metric="auto"`); `metric="success"` or `"return"` picks one.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl.errors import MtrlError
from mtrl.eval.evaluate import EvalResult
from mtrl.eval.stats import METRICS, Estimate, aggregate


@dataclass
class RunEval:
    """One evaluated run: its method label, where it came from and its per-task results."""

    method: str
    path: str
    env_steps: int
    result: EvalResult


def split_target(target: str) -> tuple[str | None, str]:
    """'NAME=PATH' -> (NAME, PATH); a bare PATH -> (None, PATH)."""
    name, sep, path = target.partition("=")
    if sep and name and "/" not in name and not Path(target).exists():
        return name, path
    return None, target


def expand_targets(targets: list[str]) -> list[tuple[str | None, str]]:
    """[NAME=]PATH arguments with shell-style globs in PATH expanded (in natural order: s2 before
    s10), so that `moore=runs/mt3/moore/s*` works where the shell leaves NAME=... unexpanded."""
    out: list[tuple[str | None, str]] = []
    for target in targets:
        name, path = split_target(target)
        if not glob.has_magic(path):
            out.append((name, path))
            continue
        matches = sorted(glob.glob(path), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])
        if not matches:
            raise MtrlError(f"{target}: the pattern {path!r} matches nothing")
        out += [(name, m) for m in matches]
    return out


def method_label(cfg: dict, source: str | None = None) -> str:
    """The default method label of a run: its algorithm and policy architecture, after the
    framework that trained it when that is not mtrl (a checkpoint's "source", e.g. "rllib")."""
    return f"{source + '-' if source else ''}{cfg['algo']}-{cfg['policy']['arch']}"


def run_label(run_dir: Path) -> str:
    """The default method label of a run directory, from its config.yaml (else its name)."""
    import yaml

    try:
        return method_label(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        return run_dir.name


def score_kind(runs: list[RunEval], metric: str) -> str:
    """'success' or 'return' for `metric` 'auto' | 'success' | 'return'."""
    has_success = all(t.success_rate is not None for r in runs for t in r.result.tasks)
    if metric == "success" and not has_success:
        raise MtrlError(
            f"--metric success: suite '{runs[0].result.suite}' does not report success; use --metric return"
        )
    return metric if metric != "auto" else ("success" if has_success else "return")


def score_matrix(runs: list[RunEval], kind: str, return_range: tuple[float, float] | None) -> np.ndarray:
    """Scores [runs, tasks] of one method."""
    if kind == "success":
        return np.array([[t.success_rate for t in r.result.tasks] for r in runs], dtype=np.float64)
    ret = np.array([[t.mean_return for t in r.result.tasks] for r in runs], dtype=np.float64)
    if return_range is None:
        return ret
    lo, hi = return_range
    return (ret - lo) / (hi - lo)


@dataclass
class MethodSummary:
    method: str
    runs: int
    estimates: dict[str, Estimate]
    per_task: dict[str, float]  # each task's score, averaged over the method's runs


@dataclass
class Report:
    suite: str
    metric: str  # what the scores are, in words, e.g. "success rate"
    runs: list[RunEval]
    methods: list[MethodSummary]

    def markdown(self) -> str:
        """The comparison table (aggregates with 95% CIs) and the per-task table, in markdown."""
        stats = list(METRICS)
        head = ["method", "runs", *[f"{s} [95% CI]" for s in stats]]
        lines = [
            f"Suite `{self.suite}`, score = {self.metric}; aggregates over runs x tasks, 95% stratified-bootstrap CIs.",
            "",
            _md_row(head),
            _md_row(["---"] * len(head)),
        ]
        for m in self.methods:
            lines.append(_md_row([m.method, str(m.runs), *[str(m.estimates[s]) for s in stats]]))
        tasks = list(self.methods[0].per_task)
        lines += ["", _md_row(["task", *[m.method for m in self.methods]]), _md_row(["---"] * (len(self.methods) + 1))]
        for t in tasks:
            lines.append(_md_row([t, *[f"{m.per_task[t]:.3f}" for m in self.methods]]))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {
            "suite": self.suite,
            "metric": self.metric,
            "methods": [
                {
                    "method": m.method,
                    "runs": m.runs,
                    "per_task": m.per_task,
                    **{s: vars(e) for s, e in m.estimates.items()},
                }
                for m in self.methods
            ],
            "runs": [
                {"method": r.method, "path": r.path, "env_steps": r.env_steps, **r.result.to_json()} for r in self.runs
            ],
        }

    def write(self, out: Path) -> list[Path]:
        """report.md, report.json, summary.csv (one row per method) and runs.csv (one row per
        run and task) under `out`."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(self.markdown(), encoding="utf-8")
        self.write_json(out / "report.json")
        with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["method", "runs", "metric", *[f"{s}{x}" for s in METRICS for x in ("", "_lo", "_hi")]])
            for m in self.methods:
                w.writerow(
                    [
                        m.method,
                        m.runs,
                        self.metric,
                        *[f"{v:.6g}" for s in METRICS for v in vars(m.estimates[s]).values()],
                    ]
                )
        with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["method", "run", "env_steps", "task", "episodes", "mean_return", "success_rate", "mean_length"])
            for r in self.runs:
                for t in r.result.tasks:
                    rate = "" if t.success_rate is None else f"{t.success_rate:.6g}"
                    w.writerow(
                        [
                            r.method,
                            r.path,
                            r.env_steps,
                            t.task,
                            t.episodes,
                            f"{t.mean_return:.6g}",
                            rate,
                            f"{t.mean_length:.6g}",
                        ]
                    )
        return [out / n for n in ("report.md", "report.json", "summary.csv", "runs.csv")]

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")


def build_report(
    runs: list[RunEval], metric: str, return_range: tuple[float, float] | None, reps: int, seed: int
) -> Report:
    """Group the runs by method (in first-seen order) and aggregate each method's scores."""
    suites = sorted({r.result.suite for r in runs})
    if len(suites) > 1:
        raise MtrlError(f"the runs were evaluated on different suites ({', '.join(suites)}); compare runs of one suite")
    kind = score_kind(runs, metric)
    normalised = kind == "return" and return_range is not None
    words = {"success": "success rate", "return": "normalised return" if normalised else "mean return"}[kind]
    methods = []
    for name in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == name]
        scores = score_matrix(mine, kind, return_range)
        per_task = dict(zip([t.task for t in mine[0].result.tasks], scores.mean(axis=0).round(6).tolist()))
        methods.append(MethodSummary(name, len(mine), aggregate(scores, reps, seed), per_task))
    return Report(suites[0], words, runs, methods)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
