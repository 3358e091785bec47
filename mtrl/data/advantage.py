"""Advantage estimation and per-task normalisation, vectorised over env slots and tasks."""

from __future__ import annotations

import numpy as np
import torch

from mtrl.data.reduce import segment_mean, segment_sum


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    last_value: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    bootstrap: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(gamma, lambda) over time-major [T, N] arrays (Schulman et al. 2016, eq. 16).

    The next-state value is V(s_{t+1}) inside an episode, V(final obs) (`bootstrap`) after a
    truncation, and 0 after a termination; the lambda-recursion stops at every episode end.
    Returns (advantages, returns) with returns = advantages + values.
    """
    T = rewards.shape[0]
    next_values = np.concatenate([values[1:], last_value[None]], axis=0)
    next_values = np.where(truncated, bootstrap, next_values) * (1.0 - terminated)
    deltas = rewards + gamma * next_values - values
    not_done = 1.0 - (terminated | truncated)
    adv = np.zeros_like(deltas, dtype=np.float32)
    running = np.zeros(rewards.shape[1], dtype=np.float32)
    for t in range(T - 1, -1, -1):  # a reverse scan over time; vectorised over all env slots
        running = deltas[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv, adv + values


def task_normalize(adv: torch.Tensor, task_id: torch.Tensor, num_tasks: int, eps: float = 1e-8) -> torch.Tensor:
    """Per-task advantage normalisation (MOORE MTPPO; docs/algorithms/ppo.md).

    A[c] = (A[c] - mean A[c]) / (std A[c] + eps) with the population std, for every task c in
    the batch, computed with scatter-adds rather than a loop over tasks. Pass only valid steps.
    """
    mean, _ = segment_mean(adv, task_id, num_tasks)
    centred = adv - mean[task_id]
    std = segment_mean(centred**2, task_id, num_tasks)[0].sqrt()
    return centred / (std[task_id] + eps)


def batch_normalize(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whole-batch advantage normalisation (the single-task PPO default)."""
    return (adv - adv.mean()) / (adv.std(unbiased=False) + eps)


def group_relative(returns: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's group-relative advantage per episode (Shao et al. 2024; docs/algorithms/grpo.md).

    A_i = (R_i - mean_g R) / (std_g R + eps) over the episodes of i's group, with the unbiased
    std as verl's `compute_grpo_outcome_advantage`; a group of size 1 gets 0, and so does a group
    whose outcomes are all equal. Vectorised with scatter-adds; group ids need not be contiguous.
    """
    returns = returns.to(torch.float64)  # exact sums of squares for the zero-variance test
    _, inv = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inv.max()) + 1 if len(inv) else 0
    mean, counts = segment_mean(returns, inv, n_groups)  # every group has >= 1 episode
    centred = returns - mean[inv]
    sq, _ = segment_sum(centred**2, inv, n_groups)
    std = (sq / (counts - 1).clamp(min=1)).sqrt()
    adv = centred / (std[inv] + eps)
    return torch.where(counts[inv] > 1, adv, torch.zeros_like(adv)).float()


def zero_variance_groups(returns: np.ndarray, group_ids: np.ndarray) -> np.ndarray:
    """The ids of the groups whose outcomes are all equal (they give no GRPO gradient)."""
    ids, inv = np.unique(group_ids, return_inverse=True)
    lo = np.full(len(ids), np.inf)
    hi = np.full(len(ids), -np.inf)
    np.minimum.at(lo, inv, returns)
    np.maximum.at(hi, inv, returns)
    return ids[hi - lo <= 1e-9 * np.maximum(1.0, np.abs(hi))]
