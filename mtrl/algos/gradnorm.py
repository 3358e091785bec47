"""GradNorm (Chen et al., ICML 2018, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks"): learned task loss weights w (summing to K) that make
the tasks' gradient norms on the last shared layer W train at rates set by the asymmetry alpha.

Per step, with g_i = ||grad_W L_i||, G_i = w_i g_i, the loss ratio L~_i = L_i / L_i(0) and the
relative inverse training rate r_i = L~_i / mean_j L~_j (eq. 1), the weights descend
L_grad = sum_i |G_i - mean_j(G_j) r_i^alpha| with the target held constant (eq. 2), whose gradient
is sign(G_i - target_i) g_i; then they are renormalised to sum to K.

RL losses are signed (PPO's surrogate of normalised advantages hovers around 0) and need not
decrease, so the loss ratios use |L_i|; with alpha = 0 the target is the mean gradient norm, a
balancing that needs no loss ratio at all.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.errors import ConfigError


class GradNorm:
    """GradNorm (Chen et al., ICML 2018): learned weights that balance the tasks' gradient norms on
    the last shared layer. `learner.weighting: gradnorm` with options `alpha` (the asymmetry; the
    paper: 0.12 to 3) and `lr` (of the weights' Adam, as the paper)."""

    grad_norms = True  # update() takes ||grad_W L_i||

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> None:
        if alpha < 0 or lr <= 0:
            raise ConfigError(f"learner.weighting_options: gradnorm needs alpha >= 0 and lr > 0, got {alpha}, {lr}")
        self.k, self.alpha = num_tasks, alpha
        self.w = torch.ones(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.w], lr=lr)
        self.initial: torch.Tensor | None = None  # L_i(0), the first step's losses

    def weights(self) -> torch.Tensor:
        return self.w.detach().clone()

    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None:
        """One step on w from this step's losses [K] and gradient norms g [K] on W (none: no step,
        e.g. a minibatch in which a task has no sample)."""
        if grad_norms is None:
            return
        losses, g = losses.detach().float().cpu().abs(), grad_norms.detach().float().cpu()
        if self.initial is None:
            self.initial = losses.clamp(min=1e-12)
        ratio = losses / self.initial
        r = ratio / ratio.mean().clamp(min=1e-12)
        big_g = self.w.detach() * g
        target = big_g.mean() * r**self.alpha
        step = torch.sign(big_g - target) * g
        if not bool(torch.isfinite(step).all()):
            return
        self.w.grad = step
        self.optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(self.k / self.w.sum())

    def next_iteration(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {
            "w": self.w.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "initial": self.initial if self.initial is not None else torch.zeros(0),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.initial = state["initial"] if len(state["initial"]) else None
