"""What a curriculum sees each iteration: per-task statistics from the learner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl.data.batch import Episodes
from mtrl.data.reduce import per_task_means


@dataclass
class TaskStats:
    """Per-task statistics of one iteration, from the learner; NaN where a task has no data."""

    iteration: int
    returns: np.ndarray  # [K] mean undiscounted return of the episodes that finished
    success: np.ndarray  # [K] their success rate (NaN where the suite reports none)
    abs_advantage: np.ndarray  # [K] mean |advantage| of the task's steps, before normalisation
    episodes: np.ndarray  # [K] episodes that finished
    task_weights: np.ndarray | None = None  # MT-GRPO's z, when algo=mt_grpo


def task_stats(
    iteration: int,
    episodes: Episodes,
    abs_advantage: np.ndarray,
    num_tasks: int,
    reports_success: bool,
    task_weights: np.ndarray | None = None,
) -> TaskStats:
    """The per-task statistics of one iteration's finished episodes."""
    success = (
        per_task_means(episodes.task_id, episodes.success, num_tasks) if reports_success else np.full(num_tasks, np.nan)
    )
    return TaskStats(
        iteration,
        per_task_means(episodes.task_id, episodes.ret, num_tasks),
        success,
        abs_advantage,
        np.bincount(episodes.task_id, minlength=num_tasks),
        task_weights,
    )
