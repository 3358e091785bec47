"""Per-task gradients on the shared parameters (`learner.aggregator`, `train.log_grad_every`).

An algorithm's per-task losses L_1..L_K (each the mean over that task's samples) give the Jacobian
[K, n] of the losses with respect to the parameters upstream of the architecture's shared
representation (its registered `features` module; `mtrl.nn.archs`), and the ordinary gradient
for the task-specific parameters after it (heads, MOORE's task-weight rows, per-task log-std).
Where all shared parameters are inside that module (MOORE / MoE experts, ...) the Jacobian comes
from one backward pass with the module run grouped by task (`mtrl.algos.task_jacobian`);
otherwise from torchjd's `mtl_backward` (Quinton and Rey 2024), about K backward passes. The
aggregator turns the Jacobian into one direction. A step where a task has no samples, or where
the aggregator declares a failure (`mtrl.errors.AggregatorFailed`, a solver's error) or gives a
non-finite direction, falls back to the mean of the task gradients: counted
(faults/aggregator_fallbacks), the first one said on the console, and a run whose aggregator fails
in more than `learner.max_fallback_share` of its last `learner.fallback_window` steps stops. Any
other exception from an aggregator stops the run with one line naming it. `NonFiniteGuard` still
guards the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from mtrl.algos.aggregators import make_aggregator, solver_errors
from mtrl.algos.base import NonFiniteGuard
from mtrl.algos.fallbacks import Fallbacks
from mtrl.algos.gradient_stats import gradient_stats
from mtrl.algos.task_jacobian import TaskGroupedPass, Ungroupable, has_jac
from mtrl.algos.weighting import checked_weights, make_weighting
from mtrl.errors import AggregatorFailed
from mtrl.registry import call_plugin

if TYPE_CHECKING:
    from mtrl.algos.task_jacobian import JacParameter

T = TypeVar("T")


def feature_modules(policy: nn.Module) -> list[nn.Module]:
    """The shared-representation module of every task network in `policy` (`mtrl.nn.network.task_network`)."""
    found = (getattr(m, "_mtrl_features", None) for m in policy.modules())
    return [f for f in found if f is not None]


class TaskGradients:
    """The per-task gradient step of one optimiser, and the gradient diagnostics."""

    def __init__(
        self,
        network: nn.Module,
        learner_cfg: Any,
        tasks: tuple[str, ...],
        guard: NonFiniteGuard,
        log_every: int | None = None,
    ) -> None:
        """`network`: the part of the policy this optimiser trains (whose shared representations count)."""
        self.name, self.tasks, self.guard, self.log_every = learner_cfg.aggregator, tasks, guard, log_every
        self._iterations = 0
        self.aggregator = (
            None if self.name == "none" else make_aggregator(self.name, learner_cfg.aggregator_options, len(tasks))
        )
        self.modules = feature_modules(network)
        self.weighting_name = learner_cfg.weighting
        self.weighting = (
            None
            if self.weighting_name == "none"
            else make_weighting(self.weighting_name, learner_cfg.weighting_options, len(tasks))
        )
        # GradNorm's W: the last weight of the first shared representation (e.g. the actor trunk's last layer)
        self.last_shared = [p for p in self.modules[0].parameters() if p.dim() >= 2][-1] if self.modules else None
        # the Jacobian from one backward pass of the shared modules run grouped by task (`TaskGroupedPass`)
        # while the architecture allows it; a weighting that needs gradient norms differentiates the
        # unweighted losses itself
        self.grouped = self.weighting is None or not self.weighting.grad_norms
        self._pass: TaskGroupedPass | None = None
        self.fallback = Fallbacks(self.name, learner_cfg.max_fallback_share, learner_cfg.fallback_window)
        self.weighting_fallback = Fallbacks(
            self.weighting_name,
            learner_cfg.max_fallback_share,
            learner_cfg.fallback_window,
            "weighting",
            "uniform weights",
        )
        self.max_task_weight = learner_cfg.max_task_weight
        self.diagnose = False  # measure the next step's task gradients (train.log_grad_every)
        self.diagnostics: dict[str, float] = {}

    @property
    def active(self) -> bool:
        """Whether steps take the per-task losses (an aggregator or a task weighting)."""
        return self.aggregator is not None or self.weighting is not None

    def next_iteration(self) -> None:
        """Count an iteration; the first step of every `log_every`-th one is measured."""
        self._iterations += 1
        if self.weighting is not None:
            call_plugin("weighting", self.weighting_name, "next_iteration()", self.weighting.next_iteration)
        self.diagnose = bool(self.log_every) and self._iterations % self.log_every == 0  # type: ignore[operator]

    def report(self) -> dict[str, float]:
        """The last measurement's scalars (grad/...), once, and the task weighting's weights."""
        out, self.diagnostics = self.diagnostics, {}
        self.diagnose = False
        if self.weighting is not None:
            w = checked_weights(self.weighting, self.weighting_name, len(self.tasks))
            out.update({f"weighting/{t}": float(x) for t, x in zip(self.tasks, w)})
        return out

    @property
    def fallbacks(self) -> int:
        """Steps that fell back to the mean since the last `take_fallbacks`."""
        return self.fallback.since_take

    def take_fallbacks(self) -> int:
        """Steps that fell back to the mean since the last call."""
        return self.fallback.take()

    def take_faults(self) -> dict[str, int]:
        """The fault counts since the last call: the aggregator's and the weighting's fallbacks,
        for those configured."""
        out = {"aggregator_fallbacks": self.fallback.take()} if self.aggregator is not None else {}
        if self.weighting is not None:
            out["weighting_fallbacks"] = self.weighting_fallback.take()
        return out

    def state_dict(self) -> dict[str, Any]:
        """The task weighting's state ({} without one): the rest is stateless or lives in the
        aggregator's own step."""
        if self.weighting is None:
            return {}
        return call_plugin("weighting", self.weighting_name, "state_dict()", self.weighting.state_dict)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.weighting is not None and state:
            call_plugin("weighting", self.weighting_name, "load_state_dict()", self.weighting.load_state_dict, state)

    def evaluate(self, task_losses: Callable[[], T], task_id: torch.Tensor) -> tuple[T, list[torch.Tensor]]:
        """`task_losses()` (the per-task losses of a minibatch with task ids `task_id`) computed for
        the next `step`, and the shared representations it went through (none when grouped)."""
        if self.grouped:
            self._pass = TaskGroupedPass(self.modules, task_id, len(self.tasks))
            try:
                with self._pass.installed():
                    return task_losses(), []
            except Ungroupable:  # a shared module depends on parameters upstream: torchjd's path from now on
                self.grouped, self._pass = False, None
        with self._capture() as features:
            return task_losses(), features

    @contextlib.contextmanager
    def _capture(self) -> Iterator[list[torch.Tensor]]:
        """Collect the shared representations computed inside the block (forward hooks), those
        that gradients flow through (not, e.g., SAC's target values computed without them)."""
        out: list[torch.Tensor] = []

        def keep(_m: nn.Module, _i: Any, o: torch.Tensor) -> None:
            if o.requires_grad:
                out.append(o)

        handles = [m.register_forward_hook(keep) for m in self.modules]
        try:
            yield out
        finally:
            for h in handles:
                h.remove()

    def _jacobian(
        self,
        grouped: TaskGroupedPass | None,
        losses: torch.Tensor,
        features: list[torch.Tensor],
        params: list[nn.Parameter],
        specific: bool = True,
    ) -> list[JacParameter]:
        """.jac [K, *shape] on the shared parameters and .grad on the task-specific ones (unless not
        `specific`); returns the shared ones. From the grouped pass when the losses were computed
        grouped, else torchjd's mtl_backward followed by one backward pass of the mean over tasks
        of L_k: each task's head slice, task-weight row or log-std is reached by its own task's
        loss only, so that is every task's own gradient, on the scale of the mean (as the
        aggregated shared direction, and as `aggregator: none` gives them) where torchjd gives
        the unscaled dL_k; one pass instead of K."""
        if grouped is not None:
            return grouped.jacobian(losses, params)
        from torchjd.autojac import mtl_backward

        mtl_backward(list(losses), features=features, tasks_params=[[] for _ in range(len(losses))], retain_graph=True)
        shared = [p for p in params if has_jac(p)]
        rest = [p for p in params if not has_jac(p) and p.requires_grad] if specific else []
        if rest:
            torch.autograd.backward(losses.mean(), inputs=rest)
        return shared

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        losses: torch.Tensor,
        present: torch.Tensor,
        features: list[torch.Tensor],
        params: list[nn.Parameter],
        max_grad_norm: float | None,
    ) -> float | None:
        """One optimiser step on the per-task losses [K] (`present`: tasks with samples); returns
        the gradient norm, or None when the step was skipped (non-finite)."""
        optimizer.zero_grad(set_to_none=True)
        grouped, self._pass = self._pass, None
        if not bool(torch.isfinite(losses[present]).all()):
            self.guard.skip()
            return None
        if self.weighting is not None:  # weight the task losses with this step's weights, then move them
            losses = self._weighted(losses, present)
        if self.aggregator is None:  # a weighting alone: the weighted mean over tasks, one backward pass
            if self.diagnose:
                self.measure(losses, present, features, params)
            losses[present].sum().div(len(self.tasks)).backward()
        elif not bool(present.all()):  # a task without samples has no gradient to aggregate
            self.fallback.fall_back("a task without samples in the minibatch")
            losses[present].mean().backward()  # grouped or not: the parameters' ordinary gradients
        else:
            shared = self._jacobian(grouped, losses, features, params)
            task_weights, failure = self._aggregate(shared)
            if failure is None and not all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in shared):
                failure = "a non-finite direction"
            if failure is not None:
                self.fallback.fall_back(failure)
                for p in shared:
                    p.grad = p.jac.mean(0)
            self.fallback.record(failure)
            self._measure(shared, None if failure else task_weights)
        return self.guard.finish(optimizer, params, max_grad_norm)

    def _weighted(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The task losses times the weighting's current weights (or, for a weighting with
        `step_weights`, its factors for this step's losses); then its update on this step's losses
        (and, for GradNorm, gradient norms on the last shared layer, when every task is present).
        Weights out of range give uniform ones for the step (`Fallbacks`)."""
        assert self.weighting is not None
        norms = None
        if self.weighting.grad_norms and bool(present.all()) and self.last_shared is not None:
            from torchjd.autojac import jac

            (j,) = jac(list(losses), [self.last_shared], retain_graph=True)
            norms = j.flatten(1).norm(dim=1)
        seen = torch.where(present, losses.detach(), torch.full_like(losses.detach(), float("nan")))
        per_step = hasattr(self.weighting, "step_weights")  # factors that depend on this step's losses (FAMO, IGB)
        weights = checked_weights(self.weighting, self.weighting_name, len(self.tasks), seen if per_step else None)
        call_plugin("weighting", self.weighting_name, "update()", self.weighting.update, seen, norms)
        mean = float(weights.mean())
        failure = None
        if mean > self.max_task_weight:
            failure = f"weights averaging {mean:.3g}, above learner.max_task_weight={self.max_task_weight}"
        elif mean == 0.0:
            failure = "all weights 0"
        if failure is not None:
            self.weighting_fallback.fall_back(failure)
            weights = torch.ones_like(weights)
        self.weighting_fallback.record(failure)
        return losses * weights.to(losses.device)

    def _aggregate(self, shared: list[JacParameter]) -> tuple[Any, str | None]:
        """The aggregator's direction into the shared parameters' .grad; returns (its task weights
        or None, None), or (None, why) on a declared failure (`AggregatorFailed`, or a convex
        solver's own error). Anything else it raises stops the run with one line naming it
        (`call_plugin`)."""
        from torchjd.autojac import jac_to_grad

        aggregator: Any = self.aggregator  # a torchjd Aggregator, or a plug-in's callable of the same contract

        def aggregate() -> Any:
            try:
                return jac_to_grad(shared, aggregator, retain_jac=True)
            except solver_errors() as exc:  # CAGrad's convex program did not solve: a declared failure
                raise AggregatorFailed(f"its solver failed ({type(exc).__name__}: {exc})") from exc

        try:
            return call_plugin("aggregator", self.name, "aggregate", aggregate), None
        except AggregatorFailed as exc:
            return None, str(exc) or type(exc).__name__

    def measure(
        self, losses: torch.Tensor, present: torch.Tensor, features: list[torch.Tensor], params: list[nn.Parameter]
    ) -> None:
        """Diagnostics only (aggregator none): the task gradients of these losses, then no trace left."""
        grouped, self._pass = self._pass, None
        if bool(present.all()) and bool(torch.isfinite(losses).all()):
            self._measure(self._jacobian(grouped, losses, features, params, specific=False), None)
        for p in params:
            p.grad = None

    def _measure(self, shared: list[JacParameter], weights: torch.Tensor | None) -> None:
        """Per-task gradient norms, pairwise cosines and the conflicting fraction on the shared
        parameters (and the aggregator's task weights), when `diagnose` is set; drops the .jac."""
        if self.diagnose and shared:
            k = len(self.tasks)
            jac = torch.cat([p.jac.reshape(k, -1) for p in shared], 1)
            self.diagnostics, self.diagnose = gradient_stats(jac, self.tasks, weights), False
        for p in shared:
            del p.jac


def take_faults(grads: list[TaskGradients]) -> dict[str, int]:
    """The fault counts of several optimisers' TaskGradients since the last call, summed."""
    out: dict[str, int] = {}
    for g in grads:
        for key, n in g.take_faults().items():
            out[key] = out.get(key, 0) + n
    return out


def with_task_state(state: Any, grads: list[TaskGradients]) -> Any:
    """An algorithm's state with its TaskGradients' (task weighting) state added, when there is any;
    unchanged otherwise, so that checkpoints without a weighting keep their layout."""
    extra = [g.state_dict() for g in grads]
    return {"algorithm": state, "task_gradients": extra} if any(extra) else state


def without_task_state(state: Any, grads: list[TaskGradients]) -> Any:
    """The inverse of `with_task_state`: loads the TaskGradients' part, returns the algorithm's."""
    if isinstance(state, dict) and set(state) == {"algorithm", "task_gradients"}:
        for g, s in zip(grads, state["task_gradients"]):
            g.load_state_dict(s)
        return state["algorithm"]
    return state
