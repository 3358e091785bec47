"""Task weightings (`learner.weighting`): a weight per task loss, set or learned, applied to the
per-task losses L_1..L_K before the gradient step (and before a gradient aggregator, if any).

A weighting is made by a factory `factory(num_tasks, **learner.weighting_options)` registered with
`register_weighting` or the entry-point group `mtrl.weightings` (the built-ins take the same
route) and has:

- `grad_norms`: whether `update` needs each task's gradient norm on the last shared layer (GradNorm);
- `weights()`: the current weights, K finite non-negative numbers (checked where mtrl receives them);
- `update(losses, grad_norms)`: this step's per-task losses [K] (detached; grad_norms [K] or None);
- `next_iteration()`: called once per training iteration (DWA averages its losses over one);
- `state_dict()` / `load_state_dict(state)`: tensors and numbers, saved in checkpoints;
- optionally `step_weights(losses)`: the factors on this step's losses when they are not
  `weights()` themselves (FAMO and IGB weigh log-losses: `log_loss_weights`); checked alike.

RL losses are signed (PPO's surrogate of normalised advantages hovers around 0; SAC's actor loss
is often negative). Every built-in reads the magnitude |L_i| wherever its paper assumes a
positive loss, and says so in its docstring; the weights then multiply the signed losses.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch

from mtrl.errors import ConfigError, MtrlError
from mtrl.registry import WEIGHTINGS, build_with_options, call_plugin


class TaskWeighting(Protocol):
    grad_norms: bool

    def weights(self) -> torch.Tensor: ...
    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None: ...
    def next_iteration(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Uncertainty:
    """Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018): weights exp(-s_i), with s_i a
    learned log variance. Their eq. 7 with s_i = log sigma_i^2 is the loss sum_i exp(-s_i) L_i + s_i;
    s_i follows Adam at `lr` along d/ds_i = 1 - exp(-s_i) |L_i|, whose fixed point is
    exp(-s_i) = 1 / |L_i|.

    The paper learns s with the network's own optimiser; its gradient is the same, here with its own
    Adam. For a negative loss the paper's objective has no minimum (s_i -> -inf); the magnitude
    |L_i| keeps the fixed point at 1 / |L_i|, so a loss near 0 gets a large weight: cap it with
    `max_weight`. A task without samples in a minibatch keeps its s for that step."""

    grad_norms = False

    def __init__(self, num_tasks: int, lr: float = 0.025, max_weight: float = 100.0) -> None:
        if lr <= 0 or max_weight <= 0:
            raise ConfigError(
                f"learner.weighting_options: uncertainty needs lr > 0 and max_weight > 0, got {lr}, {max_weight}"
            )
        self.s = torch.zeros(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.s], lr=lr)
        self.min_s = -math.log(max_weight)

    def weights(self) -> torch.Tensor:
        return torch.exp(-self.s.detach())

    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None:
        step = 1.0 - torch.exp(-self.s.detach()) * losses.detach().float().cpu().abs()
        seen = torch.isfinite(step)  # a task without samples in this minibatch keeps its s
        if not bool(seen.any()):
            return
        kept = self.s.detach().clone()
        self.s.grad = torch.where(seen, step, 0.0)
        self.optimizer.step()
        with torch.no_grad():
            self.s.copy_(torch.where(seen, self.s.clamp(min=self.min_s), kept))

    def next_iteration(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.s.copy_(state["s"])
        self.optimizer.load_state_dict(state["optimizer"])


class DynamicWeightAverage:
    """Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019): more weight to the tasks whose
    loss fell least over the last iteration. Their eq. 7, with temperature T (`temperature`):
    w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T), with r_k(t-1) = L_k(t-1) / L_k(t-2),
    where L_k(t) is task k's loss averaged over training iteration t (the paper's epoch); w = 1 for
    the first two. A task whose loss fell least gets the most weight. RL losses are signed: the
    ratio uses |L_k|."""

    grad_norms = False

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        if temperature <= 0:
            raise ConfigError(f"learner.weighting_options: dwa needs temperature > 0, got {temperature}")
        self.k, self.temperature = num_tasks, temperature
        self.history = torch.zeros(0, num_tasks)  # the last two iterations' mean |L|, oldest first
        self.total, self.count = torch.zeros(num_tasks), torch.zeros(num_tasks)
        self.w = torch.ones(num_tasks)

    def weights(self) -> torch.Tensor:
        return self.w.clone()

    def update(self, losses: torch.Tensor, grad_norms: torch.Tensor | None) -> None:
        magnitude = losses.detach().float().cpu().abs()
        seen = torch.isfinite(magnitude)
        self.total += torch.where(seen, magnitude, 0.0)
        self.count += seen.float()

    def next_iteration(self) -> None:
        if not bool((self.count > 0).all()):  # an iteration without steps for some task: nothing to average
            return
        self.history = torch.cat([self.history, (self.total / self.count)[None]])[-2:]
        self.total, self.count = torch.zeros(self.k), torch.zeros(self.k)
        if len(self.history) == 2:
            r = self.history[1] / self.history[0].clamp(min=1e-12)
            self.w = self.k * torch.softmax(r / self.temperature, dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "total": self.total, "count": self.count, "w": self.w}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.total, self.count, self.w = (state[k] for k in ("history", "total", "count", "w"))


def make_weighting(name: str, options: dict[str, Any], num_tasks: int) -> TaskWeighting:
    """The registered weighting `name` built with `options`, or one error line naming the problem."""
    weighting = build_with_options(
        "weighting", name, "learner.weighting_options", WEIGHTINGS.get(name), num_tasks, options
    )
    missing = [
        m
        for m in ("weights", "update", "next_iteration", "state_dict", "load_state_dict")
        if not callable(getattr(weighting, m, None))
    ]
    if missing or not isinstance(getattr(weighting, "grad_norms", None), bool):
        raise MtrlError(
            f"weighting '{name}': its factory returned {type(weighting).__name__}, which lacks "
            f"{', '.join(missing) or 'a bool grad_norms'} (expected the mtrl.algos.weighting.TaskWeighting members)"
        )
    return weighting


def checked_weights(
    weighting: TaskWeighting, name: str, num_tasks: int, losses: torch.Tensor | None = None
) -> torch.Tensor:
    """The weighting's current weights (or, given this step's `losses`, its `step_weights`), checked
    at the boundary: K finite non-negative numbers."""
    method = "weights()" if losses is None else "step_weights()"
    fn = weighting.weights if losses is None else (lambda: weighting.step_weights(losses))  # type: ignore[attr-defined]
    w = call_plugin("weighting", name, method, fn)
    try:
        w = torch.as_tensor(w, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        w = torch.full((0,), float("nan"))
    if w.shape != (num_tasks,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise MtrlError(
            f"weighting '{name}': {method} returned {w.tolist() if w.numel() <= 8 else w.shape}; "
            f"expected {num_tasks} finite non-negative numbers, one per task"
        )
    return w


def register_builtins() -> None:
    """Entry point: the built-in task weightings."""
    from mtrl.algos.gradnorm import GradNorm
    from mtrl.algos.log_weighting import FAMO, ImprovableGap
    from mtrl.registry import register_weighting

    register_weighting("gradnorm", GradNorm)
    register_weighting("uncertainty", Uncertainty)
    register_weighting("dwa", DynamicWeightAverage)
    register_weighting("famo", FAMO)
    register_weighting("igb", ImprovableGap)
