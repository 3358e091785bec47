"""`MultiTaskRLModule`: any registered mtrl architecture as an RLlib (2.60, new API stack) RLModule.

The module is mtrl's actor-critic inside RLlib's conventions: an actor network and a separate
critic network of the architecture `arch` (`mtrl.nn.policy.ActorCritic` has the same parameter
names, so the state dict is an mtrl policy's), and for continuous actions a state-independent
log-std per task. Observations are mtrl's {"obs", "task_id"} dicts, which RLlib batches as a
dict of tensors. Env runners build it `inference_only` (actor only), as mtrl's rollout workers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDiagGaussian
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from mtrl.env.suite import get_suite
from mtrl.errors import MtrlError
from mtrl.nn.network import PolicySpec, task_network
from mtrl.nn.policy import spec_for

# model_config["mtrl"]: the policy settings (mtrl's `policy` config section, flattened) and the suite
MODEL_KEYS = {
    "arch": "moore",
    "hidden": 128,
    "layers": 2,
    "num_experts": 2,
    "head": "multi",
    "init": "orthogonal",
    "options": {},
    "suite": None,
    "activation": "tanh",
}


def mtrl_model_config(**settings: Any) -> dict[str, Any]:
    """The `model_config` of a MultiTaskRLModule: {"mtrl": {...}} with these settings over the
    defaults (arch, hidden, layers, num_experts, head, init, options, suite, activation)."""
    unknown = sorted(set(settings) - set(MODEL_KEYS))
    if unknown:
        raise MtrlError(
            f"MultiTaskRLModule: unknown setting(s) {', '.join(unknown)}; expected some of {', '.join(MODEL_KEYS)}"
        )
    return {"mtrl": {**MODEL_KEYS, **settings}}


def module_spec(observation_space: gym.Space | None, action_space: gym.Space | None, model_config: Any) -> PolicySpec:
    """The mtrl PolicySpec of a module on these spaces; a bad space or setting is one MtrlError."""
    if not (
        isinstance(observation_space, gym.spaces.Dict)
        and set(observation_space.spaces) == {"obs", "task_id"}
        and isinstance(observation_space["task_id"], gym.spaces.Discrete)
    ):
        raise MtrlError(
            f"MultiTaskRLModule needs mtrl's observations, a Dict(obs=Box, task_id=Discrete(K)) "
            f"(an env of mtrl.rllib.register_suite_env); got {observation_space}"
        )
    cfg = dict(model_config or {}).get("mtrl")
    if not isinstance(cfg, dict):
        raise MtrlError(
            "MultiTaskRLModule: model_config has no 'mtrl' settings; build it with mtrl.rllib.mtrl_model_config(...)"
        )
    cfg = mtrl_model_config(**cfg)["mtrl"]
    metadata = get_suite(cfg["suite"]).task_metadata if cfg["suite"] else None  # CARE's context, as in mtrl train
    obs_shape = observation_space["obs"].shape
    assert obs_shape is not None  # mtrl's observations: obs is the suite's Box (TaskSuite checks it)
    return spec_for(
        obs_shape,
        action_space,
        int(observation_space["task_id"].n),
        cfg["arch"],
        int(cfg["hidden"]),
        int(cfg["layers"]),
        int(cfg["num_experts"]),
        cfg["head"],
        "actor_critic",
        cfg["init"],
        tuple(dict(cfg["options"]).items()),
        metadata,
        cfg["activation"],
    )


class MultiTaskRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """An mtrl architecture's actor and critic as an RLModule; see the module docstring."""

    def setup(self) -> None:
        self.spec = spec = module_spec(self.observation_space, self.action_space, self.model_config)
        self.actor = task_network(spec, spec.action_dim, out_gain=0.01)
        if not self.inference_only:
            self.critic = task_network(spec, 1, out_gain=1.0)
        if not spec.discrete:  # state-independent log-std per task, as mtrl's ActorCritic
            self.log_std = nn.Parameter(torch.zeros(spec.num_tasks, spec.action_dim))
        # Categorical on the logits; a diagonal Gaussian on cat(mean, log-std), RLlib's convention
        self.action_dist_cls = TorchCategorical if spec.discrete else TorchDiagGaussian

    def _dist_inputs(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        task = obs["task_id"].long()
        out = self.actor(obs["obs"], task)
        return out if self.spec.discrete else torch.cat([out, self.log_std[task]], dim=-1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Exploration, inference and train forward alike (RLlib's defaults call this one): the
        action distribution's inputs. Greedy inference is RLlib's `to_deterministic()` of it."""
        return {Columns.ACTION_DIST_INPUTS: self._dist_inputs(batch[Columns.OBS])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """V(s, c), shape [B], from the separate critic (no shared embeddings to reuse)."""
        obs = batch[Columns.OBS]
        return self.critic(obs["obs"], obs["task_id"].long()).squeeze(-1)

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic"]
