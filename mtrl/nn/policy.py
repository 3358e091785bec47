"""The policies an algorithm trains (its `policy_kind`): the actor-critic of PPO and GRPO here,
SAC's squashed-Gaussian actor and twin critics in `mtrl.nn.sac`. Actor and critic are separate
networks of the registered architecture `spec.arch` (`mtrl.nn.archs` has the built-ins)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from typing import Any, TypeAlias, cast

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from mtrl.config import LearnerConfig, PolicyConfig
from mtrl.errors import ConfigError, MtrlError
from mtrl.nn.network import PolicySpec, task_network
from mtrl.nn.sac import SACPolicy
from mtrl.registry import POLICY_KINDS, call_plugin, register_policy_kind


class ActorCritic(nn.Module):
    """Separate actor and critic networks (`task_network`); Categorical or diagonal Gaussian actions."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        self.actor = task_network(spec, spec.action_dim, out_gain=0.01)
        self.critic = task_network(spec, 1, out_gain=1.0)
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
            # distribution() gives a Categorical exactly when the actions are discrete
            action = dist.probs.argmax(-1) if isinstance(dist, Categorical) else dist.mean
        else:
            action = dist.sample()
        return action, dist.log_prob(action)


Policy: TypeAlias = ActorCritic | SACPolicy  # what the built-in policy kinds make


def build_policy(spec: PolicySpec) -> Policy:
    """Construct the policy of kind `spec.kind` (a registered policy kind: the built-ins make an
    ActorCritic, or a SACPolicy for "sac"), checked at the boundary: a torch module with `actor`
    and `critic` parts and `act(obs, task_id, greedy) -> (action, log-prob)`."""
    build = POLICY_KINDS.get(spec.kind)
    policy = call_plugin("policy kind", spec.kind, "its builder", build, spec)
    missing = [a for a in ("actor", "critic", "act") if not hasattr(policy, a)]
    if not isinstance(policy, nn.Module) or missing:
        raise MtrlError(
            f"policy kind '{spec.kind}': its builder returned {type(policy).__name__}"
            + (f" without {', '.join(missing)}" if missing and isinstance(policy, nn.Module) else "")
            + "; expected a torch module with actor, critic and act(obs, task_id, greedy)"
        )
    return cast(Policy, policy)  # a plug-in kind's own class, with the interface checked above


def compile_networks(policy: Policy, learner: LearnerConfig) -> None:
    """torch.compile the policy's actor and critic in place (`learner.compile`): their state dicts,
    and so checkpoints, keep their keys; the forward and backward run as TorchInductor kernels."""
    if learner.aggregator != "none" or learner.weighting != "none":
        raise ConfigError(
            f"learner.compile=true does not combine with learner.aggregator={learner.aggregator} or "
            f"learner.weighting={learner.weighting}: their task-grouped pass replaces module forwards at run time"
        )
    compilers = [c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)]
    if not compilers:  # TorchInductor builds C++ kernels; without a compiler the first update would fail
        raise ConfigError(
            "learner.compile=true needs a C++ compiler (c++, g++ or clang++ on PATH, or $CXX); none found"
        )
    for part in (policy.actor, policy.critic):
        part.compile()


def register_builtins() -> None:
    """Entry point: register the policy kinds actor_critic and sac."""
    register_policy_kind("actor_critic", ActorCritic)
    register_policy_kind("sac", SACPolicy)


def spec_for(
    suite_obs_shape: tuple[int, ...],
    action_space,
    num_tasks: int,
    arch: str,
    hidden: int,
    layers: int,
    num_experts: int = 4,
    head: str = "multi",
    kind: str = "actor_critic",
    init: str = "orthogonal",
    options: tuple[tuple[str, Any], ...] = (),
    task_metadata: Any = None,
    activation: str = "tanh",
    critic_ensemble: bool = False,
) -> PolicySpec:
    """A PolicySpec from a suite's spaces (and its task metadata) and the policy settings."""
    discrete = hasattr(action_space, "n")
    action_dim = int(action_space.n) if discrete else int(math.prod(action_space.shape))
    return PolicySpec(
        tuple(suite_obs_shape),
        num_tasks,
        action_dim,
        discrete,
        arch,
        hidden,
        layers,
        num_experts,
        head,
        kind,
        init,
        options,
        task_metadata,
        activation,
        critic_ensemble,
    )


def spec_from_config(
    obs_shape: tuple[int, ...],
    action_space: Any,
    num_tasks: int,
    cfg: PolicyConfig,
    kind: str,
    task_metadata: Any = None,
) -> PolicySpec:
    """A PolicySpec from a suite's spaces, its task metadata and the policy config section. The
    architecture's own options (policy.<arch>.*) that are PolicySpec fields (moore/moe:
    num_experts, head) fill those fields; the others go to `PolicySpec.options`."""
    if cfg.critic_ensemble and kind != "sac":
        raise MtrlError(f"policy.critic_ensemble=true: only SAC has twin critics (this algorithm's policy is {kind!r})")
    own = cfg.options.get(cfg.arch)
    values = dataclasses.asdict(own) if own is not None else {}
    fields = {k: values.pop(k) for k in ("num_experts", "head") if k in values}
    return spec_for(
        obs_shape,
        action_space,
        num_tasks,
        cfg.arch,
        cfg.hidden,
        cfg.layers,
        kind=kind,
        init=cfg.init,
        options=tuple(values.items()),
        task_metadata=task_metadata,
        activation=cfg.activation,
        critic_ensemble=cfg.critic_ensemble,
        **fields,
    )
