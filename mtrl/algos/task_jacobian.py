"""The Jacobian [K, n] of the per-task losses on the shared parameters in one backward pass.

Each per-task loss L_k is a mean over task k's samples only, so dL_k/dtheta is exactly the
gradient that flows through task k's rows of the shared module. Run that module on the minibatch
regrouped as [K, m, ...] (task k's rows in slice k, zero-padded to the largest task's m rows) with
a per-task view theta_k of the same parameters (`torch.func.vmap` over `functional_call`: a matmul
or conv with a batched weight is one batched or grouped op), and the gradient of sum_k L_k with
respect to theta_k is row k of the Jacobian. That is one backward pass of about the ordinary
cost, where differentiating the K losses separately (torchjd's `mtl_backward`, a vmapped backward
with K rows) costs about K of them (docs/benchmarks.md, "Gradient aggregators: cost per update").

It applies when every shared parameter is inside the architecture's `features` module, i.e. the
module's inputs do not depend on parameters (MOORE / MoE experts, PaCo's first layer, softmod on
flat observations) and its forward can run under vmap; otherwise `Ungroupable` is raised during
the forward and the caller uses torchjd's `mtl_backward` from then on. A module whose ops batch
poorly under vmap may define `forward_per_task(params, *inputs)` instead: its own forward of the K
parameter sets (params[name] [K, *shape], names as in `named_parameters()`) on inputs [K, m, ...],
returning [K, m, ...] (MOORE's conv experts: `mtrl.nn.moore.ConvExperts`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import torch
from torch import nn
from torch.func import functional_call, vmap

from mtrl.errors import MtrlError
from mtrl.nn.layers import TaskGroups

if TYPE_CHECKING:

    class JacParameter(nn.Parameter):
        """A parameter that holds its per-task gradients in `.jac` [K, *shape]: the field torchjd
        sets, which torch's types do not declare (so does `TaskGroupedPass.jacobian`)."""

        jac: torch.Tensor


def has_jac(p: nn.Parameter) -> TypeGuard[JacParameter]:
    """Whether `p` holds a Jacobian in `.jac`."""
    return getattr(p, "jac", None) is not None


class Ungroupable(Exception):
    """A shared module was called on inputs that depend on parameters, or on another batch."""


class _ClassForward(nn.Module):
    """Calls the wrapped module's class `forward`, past the instance attribute set by `installed`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> Any:
        return type(self.module).forward(self.module, *args)


class TaskGroupedPass:
    """The shared modules' forwards on a minibatch with task ids `task_id`, regrouped by task."""

    def __init__(self, modules: list[nn.Module], task_id: torch.Tensor, num_tasks: int) -> None:
        self.modules, self.n = modules, task_id.shape[0]
        self.groups = TaskGroups(task_id, num_tasks)
        self.plain = {m: _ClassForward(m) for m in modules}
        self.views: dict[nn.Module, dict[str, torch.Tensor]] = {}  # module -> {name: its per-task view [K, *shape]}

    def _forward(self, module: nn.Module, *args: Any) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.plain[module](*args)
        if any(not isinstance(a, torch.Tensor) or a.requires_grad or a.shape[:1] != (self.n,) for a in args):
            raise Ungroupable(type(module).__name__)
        views = self.views.get(module)
        if views is None:  # one view per parameter, shared by every call of the module in this step; a view
            # (not a copy) so that an ordinary backward of these losses still reaches the parameter
            views = {
                name: p.unsqueeze(0).expand(self.groups.k, *p.shape)
                for name, p in module.named_parameters()
                if p.requires_grad
            }
            self.views[module] = views
        grouped = [self.groups.group(a) for a in args]
        # the module's own batched forward where it defines one (e.g. conv experts; None counts as none)
        own = getattr(module, "forward_per_task", None)
        try:
            if own is None:
                wrapped = self.plain[module]
                out = vmap(lambda v, *a: functional_call(wrapped, {f"module.{n}": t for n, t in v.items()}, a))(
                    views, *grouped
                )
            else:
                out = own(views, *grouped)
        except (
            RuntimeError
        ) as exc:  # e.g. data-dependent control flow under vmap; a real error recurs on the plain path
            raise Ungroupable(type(module).__name__) from exc
        if own is None and not isinstance(out, torch.Tensor):
            raise Ungroupable(type(module).__name__)
        if own is not None and (not isinstance(out, torch.Tensor) or out.shape[:2] != (self.groups.k, self.groups.m)):
            shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise MtrlError(
                f"{type(module).__name__}.forward_per_task returned {shown}; expected a tensor "
                f"[{self.groups.k} tasks, {self.groups.m} rows per task, ...]"
            )
        return self.groups.ungroup(out)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Inside the block the shared modules run grouped (an instance `forward`, removed after)."""
        for m in self.modules:
            m.forward = functools.partial(self._forward, m)
        try:
            yield
        finally:
            for m in self.modules:
                del m.forward

    def jacobian(self, losses: torch.Tensor, params: list[nn.Parameter]) -> list[JacParameter]:
        """Differentiates the per-task losses [K] in one pass: the shared parameters among `params`
        get .jac [K, *shape] (the gradients of sum_k L_k at their per-task views: row k is dL_k),
        the task-specific ones .grad of the mean over tasks (each reached by its own task's loss
        only; the scale of `aggregator: none` and of the aggregated direction). Returns the shared
        parameters that got one. (An ordinary backward of the losses instead gives every parameter
        its ordinary gradient, the sum of the rows.)"""
        where = {id(p): views[n] for m, views in self.views.items() for n, p in m.named_parameters() if n in views}
        shared = [p for p in params if id(p) in where]
        rest = [p for p in params if id(p) not in where and p.requires_grad]
        inputs: list[torch.Tensor] = [*(where[id(p)] for p in shared), *rest]
        grads = torch.autograd.grad(losses.sum(), inputs, allow_unused=True)
        for p, g in zip(rest, grads[len(shared) :]):
            p.grad = None if g is None else g / len(losses)
        out = []
        for p, g in zip(shared, grads[: len(shared)]):
            if g is not None:
                holder = cast("JacParameter", p)  # it holds one from here on
                holder.jac = g
                out.append(holder)
        return out
