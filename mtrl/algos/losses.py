"""Every loss in one form: per-sample terms (TorchRL's `reduction="none"`), reduced in one place.

A loss function returns `LossTerms`: named per-sample terms [B], each with its coefficient in the
loss, and the task of every sample. `reduce_terms` is the one reducer:

- over the samples (`num_tasks=None`): L = sum_j c_j mean_b(x_jb), what a plain step takes;
- per task (`num_tasks=K`): L_k = sum_j c_j mean_{b in task k}(x_jb) (`segment_mean`), what a
  gradient aggregator or a task weighting takes.

Each term is reduced before the terms are combined, so both reductions describe one objective:
the sample mean is sum_k (n_k / N) L_k. With task weights w (GRPO's, uniform or MT-GRPO's z) the
loss is the weighted mean of the task means, L = sum_k w_k L_k / sum_{k present} w_k, and the
per-task losses are each task's share w_k L_k / sum_{k present} w_k, which sum to L.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtrl.data.reduce import segment_mean


@dataclass
class LossTerms:
    """A minibatch's loss before reduction. `terms`: name -> (coefficient, per-sample values [B]),
    combined in order; `stats`: extra statistics to log; `extras`: per-sample tensors the caller
    needs afterwards (SAC's log pi); `task_weights` [K]: GRPO's weights over the task means."""

    terms: dict[str, tuple[float, torch.Tensor]]
    task_id: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    task_weights: torch.Tensor | None = None


@dataclass
class Reduced:
    """The reduced loss ([] over the samples, [K] per task), which tasks have samples ([K]; None
    over the samples) and each term's value over the samples, for the logs."""

    loss: torch.Tensor
    present: torch.Tensor | None
    values: dict[str, float]

    def logged(self, lt: LossTerms) -> dict[str, float]:
        """The statistics to log: the loss function's own, then each term's value."""
        return {**lt.stats, **self.values}


def _combine(coefs: list[float], reduced: list[torch.Tensor]) -> torch.Tensor:
    """sum_j c_j r_j, in the terms' order (a coefficient of 1 multiplies nothing)."""
    loss: torch.Tensor | None = None
    for c, r in zip(coefs, reduced):
        x = r if c == 1.0 else c * r
        loss = x if loss is None else loss + x
    assert loss is not None, "a loss needs at least one term"
    return loss


def reduce_terms(lt: LossTerms, num_tasks: int | None = None) -> Reduced:
    """The loss over the samples (`num_tasks` None) or per task ([K]); see the module's docstring."""
    coefs = [c for c, _ in lt.terms.values()]
    xs = [x for _, x in lt.terms.values()]
    if lt.task_weights is None and num_tasks is None:
        means = [x.mean() for x in xs]
        return Reduced(_combine(coefs, means), None, {n: m.item() for n, m in zip(lt.terms, means)})
    k = num_tasks if num_tasks is not None else len(lt.task_weights)  # type: ignore[arg-type]
    per_task = [segment_mean(x, lt.task_id, k) for x in xs]
    present = per_task[0][1] > 0
    task_means = [m for m, _ in per_task]
    if lt.task_weights is None:  # per task, unweighted; the values logged are the sample means
        with torch.no_grad():
            values = {n: x.mean().item() for n, x in zip(lt.terms, xs)}
        return Reduced(_combine(coefs, task_means), present, values)
    w = lt.task_weights * present  # a task absent from the minibatch weighs nothing
    total = w.sum().clamp(min=1e-12)
    if num_tasks is None:  # the weighted mean over the tasks present
        means = [(w * m).sum() / total for m in task_means]
        return Reduced(_combine(coefs, means), None, {n: m.item() for n, m in zip(lt.terms, means)})
    shares = [(w / total) * m for m in task_means]  # each task's share of the weighted mean
    return Reduced(_combine(coefs, shares), present, {n: s.sum().item() for n, s in zip(lt.terms, shares)})
