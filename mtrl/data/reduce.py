"""Per-task (and per-group) reductions, vectorised: no Python loop over tasks."""

from __future__ import annotations

import numpy as np
import torch


def per_task_means(task_id: np.ndarray, values: np.ndarray, num_tasks: int) -> np.ndarray:
    """Mean of `values` per task (NaN for a task with no entries), without a loop over tasks."""
    values = np.asarray(values, np.float64)
    counts = np.bincount(task_id, minlength=num_tasks)
    sums = np.bincount(task_id, weights=values, minlength=num_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def rank_within(labels: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries share its label (0, 1, 2, ... per label)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(labels) else np.zeros(0, int)
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - run_start
    return rank
