"""Curricula: task samplers that set, each iteration, the probability with which every env slot
picks its next task at reset (docs/algorithms/curricula.md).

A curriculum is any object with `probs()`, `update(stats)`, `scores()`, `state_dict()` and
`load_state_dict()` (the `Curriculum` protocol), made by a factory `(tasks, cfg) -> Curriculum`
registered with `register_curriculum` or through the entry-point group `mtrl.curricula`, the same
route as suites. Every built-in mixes in `curriculum.eps` of the uniform distribution, so each task
keeps probability >= eps / K, and ignores tasks without data in an iteration (NaN statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np

from mtrl.config import CurriculumConfig
from mtrl.curriculum.stats import TaskStats, task_stats
from mtrl.errors import MtrlError
from mtrl.registry import CURRICULA, CurriculumEntry, call_plugin

__all__ = [
    "Curriculum",
    "TaskStats",
    "checked_probs",
    "checked_scores",
    "curriculum_from_settings",
    "curriculum_settings",
    "make_curriculum",
    "register_builtins",
    "register_curriculum",
    "task_stats",
]


class Curriculum(Protocol):
    """What mtrl calls on a curriculum, and what each call must return (checked where received)."""

    def probs(self) -> np.ndarray:
        """[K] finite, non-negative task probabilities that sum to 1, for this iteration's resets."""

    def update(self, stats: TaskStats) -> None:
        """Take one iteration's per-task statistics (NaN where a task had no data)."""

    def scores(self) -> dict[str, np.ndarray]:
        """Diagnostics for TensorBoard (curriculum/<name>/<task>): each value an array of K numbers."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers and strings only (checkpoints load with weights_only=True)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def register_curriculum(
    name: str,
    factory: Callable[[tuple[str, ...], CurriculumConfig], Curriculum],
    options: type | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Register a curriculum: `factory(task_names, curriculum_config)` returns a `Curriculum`.
    `options`, a dataclass, is its own config section curriculum.<name>; the factory finds the
    parsed instance as `curriculum_config.own()` (and the shared `curriculum_config.eps`)."""
    if not callable(factory):
        raise MtrlError(f"register_curriculum('{name}', ...) needs a callable factory, got {type(factory).__name__}")
    if options is not None and not dataclasses.is_dataclass(options):
        raise MtrlError(
            f"register_curriculum('{name}', ..., options={options!r}): options must be a dataclass (its fields "
            f"become the config keys curriculum.{name}.*)"
        )
    CURRICULA.register(name, CurriculumEntry(factory, options), overwrite=overwrite)


def register_builtins() -> None:
    """Entry point: the built-in curricula."""
    from mtrl.curriculum import builtin as b
    from mtrl.curriculum.mpts import ModelPredictive, MPTSOptions

    for name, cls, options in (
        ("uniform", b.Uniform, None),
        ("learning_progress", b.LearningProgress, b.LearningProgressOptions),
        ("plr", b.PrioritizedLevelReplay, b.PLROptions),
        ("exp3", b.Exp3, b.Exp3Options),
        ("worst_task", b.WorstTask, b.WorstTaskOptions),
        ("threshold", b.Threshold, b.ThresholdOptions),
        ("mpts", ModelPredictive, MPTSOptions),
    ):
        register_curriculum(name, cls, options)


def curriculum_settings(cfg: CurriculumConfig) -> dict[str, Any]:
    """The active curriculum's settings as plain data (for processes that rebuild it, such as
    RLlib's driver callbacks): `curriculum_from_settings` reverses it."""
    own = cfg.own()
    return {"name": cfg.name, "eps": cfg.eps, "options": dataclasses.asdict(own) if own is not None else None}


def curriculum_from_settings(settings: dict[str, Any]) -> CurriculumConfig:
    """The CurriculumConfig that `curriculum_settings` wrote."""
    name, raw = settings["name"], settings["options"]
    options = {name: CURRICULA.get(name).options(**raw)} if raw is not None else {}  # type: ignore[misc]
    return CurriculumConfig(name=name, eps=settings["eps"], options=options)


def make_curriculum(tasks: tuple[str, ...], cfg: CurriculumConfig) -> Curriculum:
    """Build the registered curriculum `cfg.name` for these tasks; a factory that raises, or returns
    something without the `Curriculum` methods, is one MtrlError naming it."""
    assert cfg.name is not None
    cur = call_plugin("curriculum", cfg.name, "its factory", CURRICULA.get(cfg.name).factory, tasks, cfg)
    missing = [
        m for m in ("probs", "update", "scores", "state_dict", "load_state_dict") if not callable(getattr(cur, m, None))
    ]
    if missing:
        raise MtrlError(
            f"curriculum '{cfg.name}': its factory returned {type(cur).__name__}, which lacks "
            f"{', '.join(missing)} (expected the mtrl.curriculum.Curriculum methods)"
        )
    return cast(Curriculum, cur)  # it has every method, checked above


def checked_probs(cur: Curriculum, name: str, num_tasks: int) -> np.ndarray:
    """The curriculum's task probabilities, checked at the boundary: [K] finite, >= 0, sum 1."""
    p = call_plugin("curriculum", name, "probs()", cur.probs)
    try:
        arr = np.asarray(p, np.float64)
    except (TypeError, ValueError):
        arr = np.full(0, np.nan)
    if arr.shape != (num_tasks,) or not np.isfinite(arr).all() or (arr < 0).any() or abs(arr.sum() - 1) > 1e-6:
        shown = np.array2string(arr, precision=4, threshold=8) if arr.size else repr(p)[:80]
        raise MtrlError(
            f"curriculum '{name}': probs() returned {shown} (shape {arr.shape}); expected {num_tasks} "
            "finite non-negative probabilities that sum to 1"
        )
    return arr


def checked_scores(cur: Curriculum, name: str, num_tasks: int) -> dict[str, np.ndarray]:
    """The curriculum's diagnostic scores, checked at the boundary: a dict of name -> K numbers."""
    scores = call_plugin("curriculum", name, "scores()", cur.scores)
    if not isinstance(scores, dict):
        raise MtrlError(
            f"curriculum '{name}': scores() returned {type(scores).__name__}; expected a dict of "
            f"name -> an array of {num_tasks} numbers, one per task"
        )
    out = {}
    for key, values in scores.items():
        try:
            arr = np.asarray(values, np.float64)
        except (TypeError, ValueError):
            arr = np.full(0, np.nan)
        if not isinstance(key, str) or arr.shape != (num_tasks,):
            raise MtrlError(
                f"curriculum '{name}': scores() returned {key!r}: {repr(values)[:60]}; expected each "
                f"score to be an array of {num_tasks} numbers, one per task"
            )
        out[key] = arr
    return out
