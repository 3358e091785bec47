"""Epochs of shuffled minibatches with one optimiser: the update loop PPO's policy, PPO's separate
critic and GRPO share. The loss comes in its one form, per-sample terms (`LossTerms`); each step
reduces it over the samples, or per task when a gradient aggregator or a task weighting
(`TaskGradients`) takes the step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mtrl.algos.base import NonFiniteGuard, TensorBatch
from mtrl.algos.losses import LossTerms, reduce_terms
from mtrl.algos.multitask import TaskGradients
from mtrl.config import SurrogateConfig
from mtrl.errors import ConfigError

# a minibatch's loss in its one form; (mean loss, statistics) is the earlier contract, still taken
# for a plain step
LossFn = Callable[[Any], "LossTerms | tuple[torch.Tensor, dict[str, float]]"]


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
    ) -> dict[str, float]:
        """Optimise `loss_fn(minibatch)` (its `LossTerms`) for `epochs` (default the section's
        epochs) passes of minibatches `plan` = (size, keep the last partial one) (default
        `minibatch_plan`); returns the mean of each statistic over the steps taken."""
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
                norm, stats = self._step(mb, loss_fn)
                if norm is None:  # skipped: its statistics are not finite either
                    continue
                stats["grad_norm"] = norm
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}

    def _step(self, mb: Any, loss_fn: LossFn) -> tuple[float | None, dict[str, float]]:
        """One step: on the per-task losses when `TaskGradients` is active, else on the mean (after
        measuring the task gradients when diagnostics are due)."""
        grads = self.grads
        if grads is not None and (grads.active or grads.diagnose):
            out, features = grads.evaluate(lambda: loss_fn(mb), mb.task_id)
            if not isinstance(out, LossTerms) and grads.active:
                raise ConfigError(
                    f"learner.aggregator={grads.name} / learner.weighting={grads.weighting_name} need the loss per "
                    "sample (mtrl.algos.losses.LossTerms); this algorithm's loss function returns its mean"
                )
            if isinstance(out, LossTerms):
                per_task = reduce_terms(out, len(grads.tasks))
                assert per_task.present is not None
                if grads.active:
                    norm = grads.step(
                        self.optimizer, per_task.loss, per_task.present, features, self.params, self.cfg.max_grad_norm
                    )
                    return norm, per_task.logged(out)
                grads.measure(per_task.loss, per_task.present, features, self.params)
        out = loss_fn(mb)
        if not isinstance(out, LossTerms):
            loss, stats = out
            return self.guard.step(self.optimizer, loss, self.params, self.cfg.max_grad_norm), stats
        mean = reduce_terms(out)
        return self.guard.step(self.optimizer, mean.loss, self.params, self.cfg.max_grad_norm), mean.logged(out)


PPOLearner = MinibatchOptimizer  # its earlier name, for algorithm plug-ins written against it
