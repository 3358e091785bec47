"""PolicySpec, and the task-conditioned networks that every policy is made of: a registered
architecture (`mtrl.registry.register_arch`; the built-ins are in `mtrl.nn.archs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

import torch
from torch import nn

from mtrl.errors import MtrlError
from mtrl.registry import ARCHS, call_plugin


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to rebuild a policy anywhere (learner, Ray worker, evaluation)."""

    obs_shape: tuple[int, ...]
    num_tasks: int
    action_dim: int  # number of discrete actions, or the continuous action size
    discrete: bool
    arch: str = "multihead"
    hidden: int = 128
    layers: int = 2
    num_experts: int = 4  # moore / moe: policy.<arch>.num_experts (a field since the first checkpoints)
    head: str = "multi"  # moore / moe: policy.<arch>.head
    kind: str = "actor_critic"  # "sac": squashed-Gaussian actor + twin Q critics (mtrl.nn.sac.SACPolicy)
    init: str = "orthogonal"  # trunk and head layers: "orthogonal" (CleanRL's gains) or "default" (PyTorch's)
    options: tuple[tuple[str, Any], ...] = ()  # another architecture's own options (policy.<arch>.*), sorted by name
    task_metadata: tuple[tuple[float, ...], ...] | None = (
        None  # the suite's [K, d] task context (TaskSuite.task_metadata)
    )
    activation: str = "tanh"  # mlp / multihead trunks: "tanh" (CleanRL's PPO) or "relu" (Meta-World+'s SAC)
    critic_ensemble: bool = False  # kind "sac": the twin critics stacked and vmapped (mtrl.nn.sac.CriticEnsemble)

    def __post_init__(self) -> None:  # from a checkpoint's JSON the options come back as lists
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in self.options)))
        if self.task_metadata is not None:
            object.__setattr__(self, "task_metadata", tuple(tuple(float(x) for x in row) for row in self.task_metadata))

    def option(self, name: str, default: Any = None) -> Any:
        """The architecture's option `name` (policy.<arch>.<name>)."""
        return dict(self.options).get(name, default)


class LossGuard(Protocol):
    """A network with a per-task loss guard (PaCo, `mtrl.nn.paco`): which tasks to mask out of a
    step, and the reset of those tasks' parameters (how many it reset)."""

    def extreme_tasks(self, task_losses: torch.Tensor) -> torch.Tensor: ...
    def reset_tasks(self, extreme: torch.Tensor) -> int: ...


def is_loss_guard(module: nn.Module) -> TypeGuard[LossGuard]:
    """Whether `module` is a network whose architecture declared a per-task loss guard
    (`register_arch(..., loss_guard=True)`; its methods were checked when it was built)."""
    return bool(getattr(module, "_mtrl_loss_guard", False))


def aux_terms(net: nn.Module) -> dict[str, tuple[float, torch.Tensor]]:
    """The auxiliary loss terms per sample that `net`'s modules recorded in their last training
    pass (`pop_aux()`: a sparse gate's load balancing, `mtrl.nn.routing`), named term:module, to
    add to a loss's terms (`mtrl.algos.losses.LossTerms`); each is taken once. The modules that
    record are found once per network (every loss calls this, every minibatch)."""
    found = net.__dict__.get("_mtrl_aux")
    if found is None:
        found = [(name, m) for name, m in net.named_modules() if callable(getattr(m, "pop_aux", None))]
        object.__setattr__(net, "_mtrl_aux", found)  # not a submodule: the state dict stays as it is
    out: dict[str, tuple[float, torch.Tensor]] = {}
    for name, m in found:
        terms = m.pop_aux()
        good = isinstance(terms, dict) and all(
            isinstance(t, tuple)
            and len(t) == 2
            and isinstance(t[0], (int, float))
            and isinstance(t[1], torch.Tensor)
            and t[1].dim() == 1
            for t in terms.values()
        )
        if not good:
            raise MtrlError(
                f"module '{name}' ({type(m).__name__}): pop_aux() returned {str(terms)[:80]}; expected a dict of "
                "name -> (coefficient, per-sample tensor [B])"
            )
        out.update({f"{key}:{name}": term for key, term in terms.items()})
    return out


def task_network(spec: PolicySpec, out_dim: int, out_gain: float) -> nn.Module:
    """The registered architecture `spec.arch` as a network (obs, task_id) -> [B, out_dim],
    checked at the boundary: it must be a torch module whose output on a two-row batch has that
    shape and is finite, or the run stops here with one line naming the architecture."""
    arch = ARCHS.get(spec.arch)
    net = call_plugin("architecture", spec.arch, "its builder", arch.build, spec, out_dim, out_gain)
    if not isinstance(net, nn.Module):
        raise MtrlError(
            f"architecture '{spec.arch}': its builder returned {type(net).__name__}, expected a torch.nn.Module"
        )
    obs, task = torch.zeros(2, *spec.obs_shape), torch.arange(2) % spec.num_tasks
    training = net.training
    with torch.no_grad():  # in eval mode, so that e.g. batch-norm statistics stay untouched
        out = call_plugin("architecture", spec.arch, "forward(obs, task_id)", net.eval(), obs, task)
    net.train(training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, out_dim) or not bool(torch.isfinite(out).all()):
        shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise MtrlError(
            f"architecture '{spec.arch}': forward(obs [2, {', '.join(map(str, spec.obs_shape))}], task_id [2]) "
            f"returned {shown}; expected a finite tensor of shape (2, {out_dim})"
        )
    features = (
        net if arch.features is None else call_plugin("architecture", spec.arch, "features()", arch.features, net)
    )
    if not isinstance(features, nn.Module) or all(m is not features for m in net.modules()):
        raise MtrlError(
            f"architecture '{spec.arch}': features(net) returned {type(features).__name__}, expected one "
            "of the network's own modules (the one whose output all tasks share)"
        )
    object.__setattr__(net, "_mtrl_features", features)  # not a registered submodule: the state dict stays as it is
    if arch.loss_guard:
        missing = [m for m in ("extreme_tasks", "reset_tasks") if not callable(getattr(net, m, None))]
        if missing:
            raise MtrlError(
                f"architecture '{spec.arch}' is registered with loss_guard=True, but its network lacks "
                f"{', '.join(missing)} (mtrl.nn.network.LossGuard)"
            )
        object.__setattr__(net, "_mtrl_loss_guard", True)
    return net
