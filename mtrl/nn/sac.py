"""Continuous-action networks for multi-task SAC: a squashed-Gaussian actor and twin Q critics.

Every network is its own `task_network`, so with `policy.arch=moore` the actor and each twin critic
is a separate MOORE network (docs/algorithms/moore.md, "Separate networks"), as in MOORE's
`networks_sac.py`. The critics' experts see cat(s, a).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from mtrl.errors import MtrlError
from mtrl.nn.network import PolicySpec, is_loss_guard, task_network

LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0  # MOORE's SAC actor clamp (docs/algorithms/sac.md, "Actor")


def _check_continuous(spec: PolicySpec) -> None:
    if spec.discrete or len(spec.obs_shape) != 1:
        raise MtrlError(
            f"SAC networks need flat observations and continuous actions; got observation shape "
            f"{spec.obs_shape} and {'discrete' if spec.discrete else 'continuous'} actions"
        )


class SACActor(nn.Module):
    """pi(a|s, c) = tanh(N(mean, exp(log_std))); one network outputs [mean, log_std]."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        _check_continuous(spec)
        self.action_dim = spec.action_dim
        self.net = task_network(spec, 2 * spec.action_dim, out_gain=0.01)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), each [B, action_dim], log_std clamped to [-10, 2]."""
        mean, log_std = self.net(obs, task_id).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, task_id: torch.Tensor, greedy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in (-1, 1) and its log-probability [B] under the squashed Gaussian.

        log pi(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2) (Haarnoja et al. 2018, eq. 21),
        with the stable identity log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        """
        mean, log_std = self(obs, task_id)
        u = mean if greedy else mean + log_std.exp() * torch.randn_like(mean)
        gauss = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        squash = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return torch.tanh(u), (gauss - squash).sum(-1)


class QCritic(nn.Module):
    """Q(s, a, c): a `task_network` whose input is cat(s, a)."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        _check_continuous(spec)
        self.net = task_network(replace(spec, obs_shape=(spec.obs_shape[0] + spec.action_dim,)), 1, out_gain=1.0)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs.float().flatten(1), action.float()], dim=-1), task_id).squeeze(-1)


def _split_ensemble(_module: nn.Module, state: dict, prefix: str, *_: object) -> None:
    """Load-state pre-hook of TwinQ: an ensemble's `stacked.X` [2, ...] become `q1.X` and `q2.X`."""
    for key in [k for k in state if k.startswith(prefix + "stacked.")]:
        both, name = state.pop(key), key[len(prefix + "stacked.") :]
        state[f"{prefix}q1.{name}"], state[f"{prefix}q2.{name}"] = both[0].clone(), both[1].clone()


def _stack_twins(_module: nn.Module, state: dict, prefix: str, *_: object) -> None:
    """Load-state pre-hook of CriticEnsemble: TwinQ's `q1.X` and `q2.X` become `stacked.X` [2, ...],
    so checkpoints written before the ensemble (or without it) load into it."""
    for key in [k for k in state if k.startswith(prefix + "q1.")]:
        name = key[len(prefix + "q1.") :]
        state[f"{prefix}stacked.{name}"] = torch.stack([state.pop(key), state.pop(f"{prefix}q2.{name}")])


class TwinQ(nn.Module):
    """Two independent critics (clipped double Q, Fujimoto et al. 2018); no parameter is shared."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.q1, self.q2 = QCritic(spec), QCritic(spec)
        self.register_load_state_dict_pre_hook(_split_ensemble)

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, task_id: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(obs, action, task_id), self.q2(obs, action, task_id)


class CriticEnsemble(nn.Module):
    """The twin critics as one ensemble (`policy.critic_ensemble`), as Meta-World+ vmaps its critics:
    every parameter and buffer of the two QCritics is stacked as [2, *shape] in `stacked` (a QCritic
    of the same layout whose tensors carry the extra dimension), and `torch.func.vmap` runs both in
    one call, so each layer is one batched matmul. Built from two QCritics drawn as TwinQ draws them,
    so the same seed gives the same critics in either layout; checkpoints convert both ways."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        twins = [QCritic(spec), QCritic(spec)]
        if any(is_loss_guard(m) for m in twins[0].modules()):
            raise MtrlError(
                f"policy.critic_ensemble=true: architecture '{spec.arch}' resets per-task parameters in "
                "place (a loss guard), which a stacked ensemble cannot do; set policy.critic_ensemble=false"
            )
        if any(hasattr(m, "pop_aux") for m in twins[0].modules()):
            raise MtrlError(
                f"policy.critic_ensemble=true: architecture '{spec.arch}' records its routing and auxiliary "
                "losses in its training passes, which the vmapped ensemble cannot; set policy.critic_ensemble=false"
            )
        params, buffers = stack_module_state(twins)
        self.stacked = twins[0]
        for name, tensor in [*params.items(), *buffers.items()]:
            owner, _, leaf = name.rpartition(".")
            module = self.stacked.get_submodule(owner)
            if name in params:
                setattr(module, leaf, nn.Parameter(tensor.detach()))
            else:
                module.register_buffer(leaf, tensor)
        self.register_load_state_dict_pre_hook(_stack_twins)

    def _one(
        self, params: dict, buffers: dict, obs: torch.Tensor, action: torch.Tensor, task_id: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(self.stacked, (params, buffers), (obs, action, task_id))

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, task_id: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        run = vmap(self._one, in_dims=(0, 0, None, None, None), randomness="error")
        q = run(dict(self.stacked.named_parameters()), dict(self.stacked.named_buffers()), obs, action, task_id)
        return q[0], q[1]


Critics = TwinQ | CriticEnsemble  # what SACPolicy.critic is, by PolicySpec.critic_ensemble


class SACPolicy(nn.Module):
    """The SAC actor and twin critics as one module: rollout workers load the actor's weights
    only (`mtrl.nn.weights.actor_weights`), the learner trains both."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        self.actor = SACActor(spec)
        self.critic: Critics = CriticEnsemble(spec) if spec.critic_ensemble else TwinQ(spec)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, task_id: torch.Tensor, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A squashed-Gaussian action in (-1, 1) (tanh of the mean when greedy) and its log-prob."""
        return self.actor.sample(obs, task_id, greedy)
