"""Aggregate scores over runs and tasks, with stratified-bootstrap confidence intervals.

Agarwal et al., "Deep RL at the Edge of the Statistical Precipice" (NeurIPS 2021), section 4:
report the mean, the median and the interquartile mean (IQM: the mean of the middle 50% of all
run x task scores, a 25% trimmed mean) over every (run, task) score, each with a 95% percentile
interval from the stratified bootstrap, which resamples runs with replacement independently
within each task. The rliable package implements this, but its dependency `arch` fails to import
beside pandas 3 (rliable 1.2.0 + arch 7.2.0 + pandas 3.1), so the few lines are here, vectorised
over the bootstrap replicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import trim_mean

METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # each maps scores [..., n] to one value per leading index
    "mean": lambda x: x.mean(axis=-1),
    "median": lambda x: np.median(x, axis=-1),
    "iqm": lambda x: trim_mean(x, 0.25, axis=-1),
}


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% bootstrap interval."""

    point: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.point:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def aggregate(scores: np.ndarray, reps: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, Estimate]:
    """Mean, median and IQM of `scores` [runs, tasks] with stratified-bootstrap CIs.

    With one run every replicate equals the data, so the interval collapses to the point."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty [runs, tasks] array, got shape {scores.shape}")
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    # replicate r, run slot i, task j takes run idx[r, i, j] of task j: runs resampled per task (stratum)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    boot = scores[idx, np.arange(tasks)].reshape(reps, runs * tasks)
    flat = scores.reshape(-1)
    out = {}
    for name, fn in METRICS.items():
        lo, hi = np.quantile(fn(boot), [alpha / 2, 1 - alpha / 2])
        out[name] = Estimate(float(fn(flat)), float(lo), float(hi))
    return out


def mean_ci(
    values: np.ndarray, reps: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of `values` [runs, points] and its 95% bootstrap band (runs resampled
    with replacement); for learning curves with one band per step."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(values), size=(reps, len(values)))
    boot = values[idx].mean(axis=1)  # [reps, points]
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return values.mean(axis=0), lo, hi
