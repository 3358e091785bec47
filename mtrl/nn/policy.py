"""Actor-critic policies for multi-task PPO. Actor and critic are separate networks.

- `mlp`: encoder -> trunk on cat(features, task one-hot) -> one output layer.
- `multihead`: encoder -> shared trunk -> one output head per task; with `layers=0` no shared
  trunk: MOORE's MTPPO network (`networks_ppo.MiniGridPPOMHNetwork`), tanh on the conv features,
  then per-task heads Linear(D, hidden) -> Tanh -> Linear(hidden, out).
- `moore` / `moe`: k experts mixed per task (orthogonalised for MOORE) -> a per-task head, as in
  MOORE's networks (ALGORITHMS.md section 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from mtrl.nn.layers import OutputHead, TaskHeads, init_linear, make_encoder, mlp, with_task_onehot
from mtrl.nn.moore import make_mixture


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
    num_experts: int = 4
    head: str = "multi"
    kind: str = "actor_critic"  # "sac": squashed-Gaussian actor + twin Q critics (mtrl.nn.sac.SACPolicy)
    init: str = "orthogonal"  # trunk and head layers: "orthogonal" (CleanRL's gains) or "default" (PyTorch's)


class TaskNetwork(nn.Module):
    """Encoder -> trunk -> output, conditioned on the task by one-hot input or by head selection."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        self.arch, self.num_tasks = spec.arch, spec.num_tasks
        default = spec.init == "default"  # PyTorch's layer init (gain None), as MOORE's official networks
        out_g, hid_g = (None, None) if default else (out_gain, math.sqrt(2))
        images = len(spec.obs_shape) == 3
        if spec.arch in ("moore", "moe"):
            self.mixture = make_mixture(spec.obs_shape, spec.num_tasks, spec.num_experts, spec.arch == "moore")
            # MOORE's heads: Linear(D, hidden) -> Tanh -> Linear(hidden, out) for MiniGrid images,
            # a single Linear(D, out) for Meta-World states.
            hidden = spec.hidden if images else None
            self.head = OutputHead(spec.num_tasks, self.mixture.out_dim, hidden, out_dim, out_g, spec.head == "multi", hid_g)
            return
        self.encoder = make_encoder(spec.obs_shape)
        self.no_trunk = spec.arch == "multihead" and spec.layers == 0
        self.squash = self.no_trunk and images  # MOORE's MTPPO network has a tanh after the last conv
        if self.no_trunk:
            self.head = OutputHead(spec.num_tasks, self.encoder.out_dim, spec.hidden, out_dim, out_g, True, hid_g)
            return
        trunk_in = self.encoder.out_dim + (spec.num_tasks if spec.arch == "mlp" else 0)
        self.trunk = mlp([trunk_in] + [spec.hidden] * spec.layers, gain=hid_g)
        if spec.arch == "mlp":
            self.head: nn.Module = init_linear(nn.Linear(spec.hidden, out_dim), out_g)
        elif spec.arch == "multihead":
            self.head = TaskHeads(spec.num_tasks, spec.hidden, out_dim, out_g)
        else:
            raise ValueError(f"unknown policy.arch '{spec.arch}'")

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        if self.arch in ("moore", "moe"):
            return self.head(self.mixture(obs, task_id), task_id)
        x = self.encoder(obs)
        if self.no_trunk:
            return self.head(torch.tanh(x) if self.squash else x, task_id)
        if self.arch == "mlp":
            x = with_task_onehot(x, task_id, self.num_tasks)
            return self.head(self.trunk(x))
        return self.head(self.trunk(x), task_id)


class ActorCritic(nn.Module):
    """Separate actor and critic TaskNetworks; Categorical or diagonal Gaussian actions."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        self.actor = TaskNetwork(spec, spec.action_dim, out_gain=0.01)
        self.critic = TaskNetwork(spec, 1, out_gain=1.0)
        if not spec.discrete:  # state-independent log-std per task
            self.log_std = nn.Parameter(torch.zeros(spec.num_tasks, spec.action_dim))

    def distribution(self, obs: torch.Tensor, task_id: torch.Tensor) -> Distribution:
        """The action distribution pi(.|s, c)."""
        out = self.actor(obs, task_id)
        # validate_args=False: the argument checks cost more than the sampling itself at a rollout
        # worker's batch of a few envs, and the inputs come from our own network.
        if self.spec.discrete:
            return Categorical(logits=out, validate_args=False)
        return Independent(Normal(out, self.log_std[task_id].exp(), validate_args=False), 1, validate_args=False)

    def value(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """V(s, c), shape [B]."""
        return self.critic(obs, task_id).squeeze(-1)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, task_id: torch.Tensor, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (or pick the mode of) an action; returns (action, log-prob). Actor only: the
        learner computes values for a whole batch at once."""
        dist = self.distribution(obs, task_id)
        if greedy:
            action = dist.probs.argmax(-1) if self.spec.discrete else dist.mean
        else:
            action = dist.sample()
        return action, dist.log_prob(action)


def build_policy(spec: PolicySpec) -> nn.Module:
    """Construct the policy described by `spec`: an ActorCritic, or a SACPolicy for kind "sac".
    Both have `actor` and `critic` parts and `act(obs, task_id, greedy) -> (action, log-prob)`."""
    if spec.kind == "sac":
        from mtrl.nn.sac import SACPolicy  # mtrl.nn.sac builds on this module

        return SACPolicy(spec)
    return ActorCritic(spec)


def spec_for(suite_obs_shape: tuple[int, ...], action_space, num_tasks: int, arch: str, hidden: int, layers: int,
             num_experts: int = 4, head: str = "multi", kind: str = "actor_critic", init: str = "orthogonal") -> PolicySpec:  # fmt: skip
    """A PolicySpec from a suite's spaces and the policy config."""
    discrete = hasattr(action_space, "n")
    action_dim = int(action_space.n) if discrete else int(math.prod(action_space.shape))
    return PolicySpec(tuple(suite_obs_shape), num_tasks, action_dim, discrete, arch, hidden, layers, num_experts, head,
                      kind, init)  # fmt: skip
