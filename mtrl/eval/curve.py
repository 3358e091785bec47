"""Evaluation during training (`train.eval_every`): when to evaluate, with which seeds, and the
run's `eval_curve.csv`, one row per evaluation.

MOORE's curves are evaluations after every update (16 sampled episodes per task), not training
returns; this makes them. Each evaluation's env and torch seeds derive from the run seed and the
env step it happens at, and `mtrl.eval.evaluate` forks the torch RNG, so evaluating never changes the
training trajectory. A resumed run first drops the rows written after its checkpoint, then
re-runs those evaluations (same seeds, same weights: the same rows), so the curve has no
duplicates and no gaps.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtrl.env.suite import TaskSuite
from mtrl.errors import MtrlError
from mtrl.eval.evaluate import EvalResult, Runner, evaluate

if TYPE_CHECKING:
    from mtrl.nn.policy import Policy

FILE = "eval_curve.csv"


def curve_columns(tasks: tuple[str, ...], success: bool) -> list[str]:
    """The CSV header: iteration, env_steps, the means over tasks, then per-task columns."""
    cols = ["iteration", "env_steps", "mean_return"] + (["mean_success"] if success else [])
    cols += [f"{t}/return" for t in tasks]
    return cols + ([f"{t}/success" for t in tasks] if success else [])


def eval_seed(seed: int, env_steps: int) -> int:
    """The evaluation seed of the evaluation at `env_steps` (independent of the training streams)."""
    return int(np.random.SeedSequence([seed, 0xC0AE, env_steps]).generate_state(1)[0])


class EvalCurve:
    """Evaluations before training and after every `every` env steps, appended to `run_dir`/eval_curve.csv."""

    def __init__(
        self,
        run_dir: Path,
        suite: TaskSuite,
        every: int,
        episodes: int,
        greedy: bool,
        seed: int,
        max_episode_steps: int | None,
        start_steps: int,
        done: int | None = None,
    ) -> None:
        """`done`: the checkpoint's `self.done` when resuming (it may predate an evaluation that
        was due at the checkpoint's step, e.g. after Ctrl-C)."""
        self.path = run_dir / FILE
        self.suite, self.every, self.episodes, self.greedy = suite, every, episodes, greedy
        self.seed, self.max_episode_steps = seed, max_episode_steps
        self.columns = curve_columns(suite.tasks, suite.reports_success)
        # evaluations happen when env_steps // every passes this; -1: evaluate before training too
        self.done = done if done is not None else (start_steps // every if start_steps else -1)
        self.last: tuple[int, EvalResult] | None = None
        self._steps: set[int] = set()  # env steps with a row in the file
        self._keep_rows_up_to(start_steps)

    def due(self, env_steps: int) -> bool:
        return env_steps // self.every > self.done

    def run(self, policy: Policy, env_steps: int, iteration: int, runner: Runner | None = None) -> EvalResult:
        """Evaluate now, append the row, and remember the result."""
        result = evaluate(
            policy,
            self.suite,
            self.episodes,
            eval_seed(self.seed, env_steps),
            self.greedy,
            self.max_episode_steps,
            runner,
        )
        self.done = env_steps // self.every
        self.last = (env_steps, result)
        if env_steps in self._steps:  # a resumed, finished run re-evaluating its last point: replace the row
            self._keep_rows_up_to(env_steps - 1)
        self._append(self._row(iteration, env_steps, result))
        self._steps.add(env_steps)
        return result

    def _row(self, iteration: int, env_steps: int, result: EvalResult) -> list[str]:
        row = [str(iteration), str(env_steps), f"{result.mean_return:.6g}"]
        if self.suite.reports_success:
            row.append(f"{result.mean_success:.6g}")
        row += [f"{t.mean_return:.6g}" for t in result.tasks]
        return row + ([f"{t.success_rate:.6g}" for t in result.tasks] if self.suite.reports_success else [])

    def _append(self, row: list[str]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def _keep_rows_up_to(self, env_steps: int) -> None:
        """Rewrite the file with the complete rows at or before `env_steps` (all rows are dropped
        for a run that starts from step 0; a torn last line from a kill is dropped too)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        keep = [
            r
            for r in rows[1:]
            if len(r) == len(self.columns) and env_steps > 0 and r[1].isdigit() and int(r[1]) <= env_steps
        ]
        self._steps = {int(r[1]) for r in keep}
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([self.columns] + keep)
        os.replace(tmp, self.path)


def read_references(items: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """`--reference LABEL=CSV` arguments -> label -> curve table (`read_curve`)."""
    references = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not Path(path).is_file():
            raise MtrlError(f"--reference {item!r}: expected LABEL=CSV with an existing CSV file")
        references[label] = read_curve(Path(path))
    return references


def read_curve(path: Path) -> dict[str, np.ndarray]:
    """An eval_curve.csv (or any CSV with an env_steps column) as column -> float array."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "env_steps" not in rows[0]:
        raise MtrlError(f"{path}: expected a CSV whose header has an env_steps column")
    body = [r for r in rows[1:] if len(r) == len(rows[0])]
    try:
        return {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(rows[0])}
    except ValueError as exc:
        raise MtrlError(f"{path}: not a table of numbers ({exc})") from None
