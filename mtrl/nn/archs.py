"""The built-in architectures, registered through the `mtrl.archs` entry-point group like any
other (docs/algorithms/moore.md; docs/tutorials/add-an-architecture.md).

Each builder takes (spec, out_dim, out_gain) and returns a module mapping (obs [B, *obs_shape],
task_id [B]) to [B, out_dim]. Parameter names (`encoder`, `trunk`, `mixture`, `head`) are part
of the checkpoint format and stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from mtrl.nn.care import CARENet, CareOptions
from mtrl.nn.layers import OutputHead, TaskHeads, gains, init_linear, make_encoder, mlp, with_task_onehot
from mtrl.nn.moore import make_mixture
from mtrl.nn.network import PolicySpec
from mtrl.nn.paco import PacoNet, PacoOptions
from mtrl.nn.routing import DSelectKOptions, SparseMoEOptions, dselect_k, routed_experts, sparse_moe
from mtrl.nn.softmod import SoftModOptions, SoftModularNet

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}  # policy.activation


class MLPNet(nn.Module):
    """Encoder, then a trunk on cat(features, task one-hot), then one output layer."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        out_g, hid_g = gains(spec, out_gain)
        self.num_tasks = spec.num_tasks
        self.encoder = make_encoder(spec.obs_shape)
        self.trunk = mlp(
            [self.encoder.out_dim + spec.num_tasks] + [spec.hidden] * spec.layers, ACTIVATIONS[spec.activation], hid_g
        )
        self.head = init_linear(nn.Linear(spec.hidden, out_dim), out_g)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(with_task_onehot(self.encoder(obs), task_id, self.num_tasks)))


class MultiHeadNet(nn.Module):
    """Encoder, then a shared trunk, then one output head per task. With `layers=0` no
    shared trunk: MOORE's MTPPO network (`networks_ppo.MiniGridPPOMHNetwork`), tanh on the conv
    features, then per-task heads Linear(D, hidden) -> Tanh -> Linear(hidden, out)."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        out_g, hid_g = gains(spec, out_gain)
        self.encoder = make_encoder(spec.obs_shape)
        self.no_trunk = spec.layers == 0
        self.squash = self.no_trunk and len(spec.obs_shape) == 3  # MOORE's MTPPO network: tanh after the last conv
        if self.no_trunk:
            self.head: nn.Module = OutputHead(
                spec.num_tasks, self.encoder.out_dim, spec.hidden, out_dim, out_g, True, hid_g
            )
            return
        self.trunk = mlp([self.encoder.out_dim] + [spec.hidden] * spec.layers, ACTIVATIONS[spec.activation], hid_g)
        self.head = TaskHeads(spec.num_tasks, spec.hidden, out_dim, out_g)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        x = self.encoder(obs)
        if self.no_trunk:
            return self.head(torch.tanh(x) if self.squash else x, task_id)
        return self.head(self.trunk(x), task_id)


@dataclass
class MixtureOptions:
    """policy.moore / policy.moe: the mixture's own hyperparameters."""

    num_experts: int = field(
        default=4, metadata={"help": "experts k (MOORE: 2/3/4 for MiniGrid MT3/5/7, 4/6 for MT10/50)", "lo": 1}
    )
    head: Literal["multi", "single"] = field(
        default="multi", metadata={"help": "output head: one per task, or one on cat(feature, task one-hot)"}
    )


class MixtureNet(nn.Module):
    """k experts mixed per task, orthonormalised (Gram-Schmidt) when `orthogonal` (MOORE; without:
    the MoE baseline), then a per-task head. MOORE's heads: Linear(D, hidden) -> Tanh ->
    Linear(hidden, out) on MiniGrid images, a single Linear(D, out) on Meta-World states."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float, *, orthogonal: bool) -> None:
        super().__init__()
        out_g, hid_g = gains(spec, out_gain)
        self.mixture = make_mixture(spec.obs_shape, spec.num_tasks, spec.num_experts, orthogonal)
        hidden = spec.hidden if len(spec.obs_shape) == 3 else None
        self.head = OutputHead(
            spec.num_tasks, self.mixture.out_dim, hidden, out_dim, out_g, spec.head == "multi", hid_g
        )

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        return self.head(self.mixture(obs, task_id), task_id)


def moore(spec: PolicySpec, out_dim: int, out_gain: float) -> MixtureNet:
    """MOORE: k experts orthonormalised by Gram-Schmidt and mixed per task, then a per-task head"""
    return MixtureNet(spec, out_dim, out_gain, orthogonal=True)


def moe(spec: PolicySpec, out_dim: int, out_gain: float) -> MixtureNet:
    """Mixture of experts: k experts mixed per task by learned weights, then a per-task head"""
    return MixtureNet(spec, out_dim, out_gain, orthogonal=False)


def experts(net: MixtureNet) -> nn.Module:
    """What the gradient aggregators treat as shared in moore / moe: the experts."""
    return net.mixture.experts


def register_builtins() -> None:
    """Entry point: register mlp, multihead, moe, moore, softmod, care, paco, sparse_moe and dselect_k."""
    from mtrl.registry import register_arch

    # what the gradient aggregators treat as shared: mlp everything; multihead the encoder and trunk
    # (its heads are task-specific); moore / moe the experts (task-weight rows and heads specific)
    register_arch("mlp", MLPNet)
    register_arch("multihead", MultiHeadNet, features=lambda net: net.encoder if net.no_trunk else net.trunk)
    register_arch("moe", moe, MixtureOptions, features=experts)
    register_arch("moore", moore, MixtureOptions, features=experts)
    # softmod: the state embedding f is what every task's routing and modules read; care: the mixture
    # of encoders is shared, the context, attention, torso and head are conditioned on the task
    register_arch("softmod", SoftModularNet, SoftModOptions, features=lambda net: net.state)
    register_arch("care", CARENet, CareOptions, features=lambda net: net.encoders[-1])
    # paco: Phi is shared but every layer mixes it with w_tau; the first layer's K_p set outputs are
    # the last task-independent tensor (Phi_1 and the encoder shared; later Phi and w task-conditioned)
    register_arch("paco", PacoNet, PacoOptions, features=lambda net: net.layers[0], loss_guard=True)
    # sparse_moe / dselect_k: the experts are shared, the gates and heads task-specific
    register_arch("sparse_moe", sparse_moe, SparseMoEOptions, features=routed_experts)
    register_arch("dselect_k", dselect_k, DSelectKOptions, features=routed_experts)
