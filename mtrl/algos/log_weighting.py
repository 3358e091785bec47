"""Task weightings on the log-losses: FAMO and IGB (`learner.weighting: famo | igb`). Each descends
sum_i w_i log L_i, whose gradient on the signed per-task losses is given by `log_loss_weights`;
the contract they follow is `mtrl.algos.weighting.TaskWeighting`."""

from __future__ import annotations

from typing import Any

import torch

from mtrl.errors import ConfigError


def log_loss_weights(w: torch.Tensor, losses: torch.Tensor, eps: float) -> torch.Tensor:
    """The factors on the losses L_i whose gradient is that of sum_i w_i log(|L_i| + eps): w_i / D_i,
    D_i = |L_i| + eps, rescaled (FAMO's normaliser c, Liu et al. 2023) so they sum to the
    weights of the tasks present (NaN losses are absent). Applied to the signed loss, so a negative
    loss is still descended, weighed by its magnitude, where log L_i has no meaning."""
    d = losses.detach().float().cpu().abs() + eps
    present = torch.isfinite(d)
    raw = torch.where(present, w / d, 0.0)
    total = raw.sum()
    return raw * ((w * present).sum() / total) if bool(total > 0) else raw


class FAMO:
    """FAMO (Liu, Liu, Stone and Liu, NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization"):
    weights K softmax(xi) on the log-losses, learned so that every task's loss falls at about the
    same relative rate. Each step descends sum_i z_i log(D_i) / c, z = softmax(xi),
    D_i = |L_i| + eps and c = sum_i z_i / D_i (`log_loss_weights`). Then xi takes an Adam step (weight decay `weight_decay`, the
    paper's gamma) along the softmax's vector-Jacobian product with delta_i = log D_i(prev) -
    log D_i(now): z (delta - z . delta) (their Algorithm 1); the task that improved most loses weight.

    The paper measures delta on the same minibatch before and after the step, one more forward
    pass per step; here, as MTBench's FAMO for multi-task PPO, between consecutive steps' losses.
    Defaults: the paper's lr 0.025, gamma 1e-3, eps 1e-8. MTBench's PPO setting is
    {lr: 0.001, weight_decay: 0.001, eps: 0.01, norm_grad: true} (the xi gradient normalised).
    RL losses are signed: D uses |L_i|. A task without samples in a minibatch moves no logit."""

    grad_norms = False

    def __init__(
        self, num_tasks: int, lr: float = 0.025, weight_decay: float = 1e-3, eps: float = 1e-8, norm_grad: bool = False
    ) -> None:
        if lr <= 0 or weight_decay < 0 or eps <= 0:
            raise ConfigError(
                f"learner.weighting_options: famo needs lr > 0, weight_decay >= 0 and eps > 0, got {lr}, "
                f"{weight_decay}, {eps}"
            )
        self.k, self.eps, self.norm_grad = num_tasks, eps, norm_grad
        self.xi = torch.zeros(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.xi], lr=lr, weight_decay=weight_decay)
        self.prev = torch.full((num_tasks,), float("nan"))  # each task's last log D

    def weights(self) -> torch.Tensor:
        return self.k * torch.softmax(self.xi.detach(), 0)

    def step_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return log_loss_weights(self.weights(), losses, self.eps)

    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None:
        log_d = torch.log(losses.detach().float().cpu().abs() + self.eps)
        delta = self.prev - log_d
        seen = torch.isfinite(delta)
        self.prev = torch.where(torch.isfinite(log_d), log_d, self.prev)
        if not bool(seen.any()):
            return
        delta = torch.where(seen, delta, 0.0)
        z = torch.softmax(self.xi.detach(), 0)
        grad = z * (delta - (z * delta).sum())
        if self.norm_grad:
            grad = grad / grad.norm().clamp(min=1e-12)
        self.xi.grad = grad
        self.optimizer.step()

    def next_iteration(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"xi": self.xi.detach().clone(), "prev": self.prev.clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.xi.copy_(state["xi"])
        self.prev = state["prev"].clone()
        self.optimizer.load_state_dict(state["optimizer"])


class ImprovableGap:
    """Improvable Gap Balancing, its heuristic form IGBv1 (Dai, Fei and Lin, UAI 2023): more weight
    to the tasks with the largest share of their base loss left. Weights w = K softmax(L / L_base)
    on the log-losses, sum_i w_i log L_i. L_base is each task's mean
    |loss| over the training iteration `base_iteration` (the authors' code: the mean over epoch
    1, the second); w = 1 until it is known. L is the current step's |loss|, as in their code.

    The log-losses' gradient sum_i w_i / L_i grad L_i is rescaled to sum to K like FAMO's
    (`log_loss_weights`, with `eps`): the same direction, on the mean's scale, where the paper's
    1 / L_i would make the step's length depend on the losses' units. RL losses are signed: |L|."""

    grad_norms = False

    def __init__(self, num_tasks: int, base_iteration: int = 1, eps: float = 1e-8) -> None:
        if base_iteration < 0 or eps <= 0:
            raise ConfigError(
                f"learner.weighting_options: igb needs base_iteration >= 0 and eps > 0, got {base_iteration}, {eps}"
            )
        self.k, self.base_iteration, self.eps = num_tasks, base_iteration, eps
        self.iteration = -1  # next_iteration() is called before each iteration's first step
        self.total, self.count = torch.zeros(num_tasks), torch.zeros(num_tasks)
        self.base: torch.Tensor | None = None
        self.current = torch.ones(num_tasks)  # the weights for the next step

    def weights(self) -> torch.Tensor:
        return self.current.clone()

    def step_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """K softmax(|L| / L_base) from this step's losses (kept when a task is absent), as factors
        on the log-losses."""
        magnitude = losses.detach().float().cpu().abs()
        if self.base is not None and bool(torch.isfinite(magnitude).all()):
            self.current = self.k * torch.softmax(magnitude / self.base.clamp(min=self.eps), 0)
        return log_loss_weights(self.current, losses, self.eps)

    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None:
        if self.iteration == self.base_iteration:  # the base losses: this iteration's mean |L|
            magnitude = losses.detach().float().cpu().abs()
            seen = torch.isfinite(magnitude)
            self.total += torch.where(seen, magnitude, 0.0)
            self.count += seen.float()

    def next_iteration(self) -> None:
        if self.iteration == self.base_iteration and bool((self.count > 0).all()):
            self.base = self.total / self.count
        self.iteration += 1

    def state_dict(self) -> dict[str, Any]:
        base = self.base if self.base is not None else torch.full((self.k,), float("nan"))
        return {"iteration": self.iteration, "total": self.total, "count": self.count, "base": base, "w": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration, self.total, self.count = state["iteration"], state["total"], state["count"]
        self.base = None if bool(torch.isnan(state["base"]).any()) else state["base"]
        self.current = state["w"]
