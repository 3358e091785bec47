"""Per-task (and per-group) reductions, vectorised: no Python loop over tasks. `segment_mean` is
the one scatter-mean behind every per-task mean in mtrl (losses, normalisation, statistics)."""

from __future__ import annotations

import numpy as np
import torch


def segment_sum(x: torch.Tensor, index: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the rows of x with index i, for i < n [n], the number of such rows [n]), by one
    scatter-add in x's dtype; differentiable in x."""
    return torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, index, x), torch.bincount(index, minlength=n)


def segment_mean(x: torch.Tensor, index: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of the rows of x with index i [n], 0 where there are none; the number of rows [n])."""
    sums, counts = segment_sum(x, index, n)
    return sums / counts.clamp(min=1), counts


def per_task_means(task_id: np.ndarray, values: np.ndarray, num_tasks: int) -> np.ndarray:
    """Mean of `values` per task in float64 (NaN for a task with no entries), for numpy statistics."""
    # copies: arrays from Ray's object store are read-only, which torch warns about
    x, index = torch.from_numpy(np.array(values, np.float64)), torch.from_numpy(np.array(task_id, np.int64))
    mean, counts = segment_mean(x, index, num_tasks)
    return torch.where(counts > 0, mean, torch.nan).numpy()


def rank_within(labels: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries share its label (0, 1, 2, ... per label)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(labels) else np.zeros(0, int)
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - run_start
    return rank
