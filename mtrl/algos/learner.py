"""Epochs of shuffled minibatches with one optimiser: the update loop PPO's policy, PPO's separate
critic and GRPO share. With a gradient aggregator (`TaskGradients`) each step is taken on the
minibatch's per-task losses instead of its single loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mtrl.algos.base import NonFiniteGuard, TensorBatch
from mtrl.algos.multitask import TaskGradients
from mtrl.config import SurrogateConfig

LossFn = Callable[[Any], tuple[torch.Tensor, dict[str, float]]]
# per-task losses of a minibatch: (losses [K], tasks present [K], statistics)
TaskLossFn = Callable[[Any], tuple[torch.Tensor, torch.Tensor, dict[str, float]]]


def minibatch_plan(n: int, cfg: SurrogateConfig) -> tuple[int, bool]:
    """(minibatch size, whether the last partial minibatch is kept) for a batch of n transitions."""
    if cfg.minibatch_size:
        return min(cfg.minibatch_size, n), True
    return max(1, n // cfg.minibatches), False


class MinibatchOptimizer:
    """Owns one Adam optimiser over `params`; `update` runs epochs x shuffled minibatches of a loss
    on one batch (PPO's policy loss, the separate critic's, or GRPO's)."""

    def __init__(
        self,
        params: list[nn.Parameter],
        cfg: SurrogateConfig,
        guard: NonFiniteGuard | None = None,
        lr: float | None = None,
        grads: TaskGradients | None = None,
    ) -> None:
        self.params, self.cfg, self.grads = params, cfg, grads
        self.lr = cfg.lr if lr is None else lr
        self.guard = guard or NonFiniteGuard()
        self.optimizer = torch.optim.Adam(params, lr=self.lr, eps=cfg.adam_eps)

    def set_lr_fraction(self, frac: float) -> None:
        """Scale the learning rate to frac * its configured value (linear annealing)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * frac

    def update(
        self,
        batch: TensorBatch,
        loss_fn: LossFn,
        generator: torch.Generator,
        epochs: int | None = None,
        plan: tuple[int, bool] | None = None,
        task_loss_fn: TaskLossFn | None = None,
    ) -> dict[str, float]:
        """Optimise `loss_fn(minibatch)` for `epochs` (default ppo.epochs) passes of minibatches
        `plan` = (size, keep the last partial one) (default `minibatch_plan`); returns the mean of
        each statistic over the steps taken. With an aggregator, `task_loss_fn(minibatch)` (the
        per-task losses) is optimised instead; without one it only feeds the gradient diagnostics."""
        n = len(batch)
        if n == 0:  # e.g. every GRPO group had equal outcomes: nothing to learn from
            return {}
        size, keep_last = plan or minibatch_plan(n, self.cfg)
        totals: dict[str, float] = {}
        count = 0
        for _ in range(self.cfg.epochs if epochs is None else epochs):
            # one full-batch step needs no shuffle (and leaves the generator's stream alone)
            perm = torch.randperm(n, generator=generator).to(batch.task_id.device) if size < n else None
            for start in range(0, n if keep_last else n - size + 1, size):
                mb = batch if perm is None else batch.index(perm[start : start + size])
                norm, stats = self._step(mb, loss_fn, task_loss_fn)
                if norm is None:  # skipped: its statistics are not finite either
                    continue
                stats["grad_norm"] = norm
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}

    def _step(self, mb: Any, loss_fn: LossFn, task_loss_fn: TaskLossFn | None) -> tuple[float | None, dict[str, float]]:
        grads = self.grads if task_loss_fn is not None else None
        if grads is not None and grads.active:
            (losses, present, stats), features = grads.evaluate(lambda: task_loss_fn(mb), mb.task_id)  # type: ignore[misc]
            return grads.step(self.optimizer, losses, present, features, self.params, self.cfg.max_grad_norm), stats
        if grads is not None and grads.diagnose:  # aggregator none: measure this minibatch's task gradients first
            (losses, present, _), features = grads.evaluate(lambda: task_loss_fn(mb), mb.task_id)  # type: ignore[misc]
            grads.measure(losses, present, features, self.params)
        loss, stats = loss_fn(mb)
        return self.guard.step(self.optimizer, loss, self.params, self.cfg.max_grad_norm), stats


PPOLearner = MinibatchOptimizer  # its earlier name, for algorithm plug-ins written against it
