"""The per-task gradient diagnostics (`train.log_grad_every`, grad/ in TensorBoard): on the shared
parameters, each task's gradient norm, the pairwise cosines, the fraction of task pairs in
conflict (negative cosine), and the aggregator's task weights where it gives them."""

from __future__ import annotations

import torch


def gradient_stats(jac: torch.Tensor, tasks: tuple[str, ...], weights: torch.Tensor | None) -> dict[str, float]:
    """The statistics of the task Jacobian `jac` [K, n] (one row per task)."""
    k = len(tasks)
    jac = jac.detach().double()
    norms = jac.norm(dim=1)
    cos = (jac @ jac.T) / (norms[:, None] * norms[None, :]).clamp(min=1e-30)
    i, j = torch.triu_indices(k, k, 1)
    out = {f"grad/norm/{t}": float(n) for t, n in zip(tasks, norms)}
    out.update({f"grad/cosine/{tasks[a]}/{tasks[b]}": float(cos[a, b]) for a, b in zip(i.tolist(), j.tolist())})
    out["grad/conflicting_fraction"] = float((cos[i, j] < 0).double().mean()) if len(i) else 0.0
    if weights is not None:
        out.update({f"grad/weight/{t}": float(w) for t, w in zip(tasks, weights.detach().flatten())})
    return out
