"""`ppo_config`: RLlib PPO with mtrl's multi-task parts already wired in."""

from __future__ import annotations

import dataclasses
import json

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from mtrl.config import Config, load_config
from mtrl.curriculum import curriculum_settings
from mtrl.env.suite import get_suite
from mtrl.errors import ConfigError
from mtrl.rllib.callbacks import MultiTaskCallbacks
from mtrl.rllib.connector import TaskNormPPOLearner
from mtrl.rllib.env import register_suite_env
from mtrl.rllib.module import MultiTaskRLModule, mtrl_model_config

MIXTURES = ("moore", "moe")  # the architectures with policy.<arch>.num_experts / head


def mtrl_settings(
    suite: str,
    arch: str,
    num_experts: int | None,
    head: str | None,
    curriculum: str | None,
    overrides: tuple[str, ...] = (),
) -> Config:
    """These settings as a validated mtrl Config (the same checks and messages as `mtrl train`:
    unknown suite, architecture or curriculum, and the architectures' own options)."""
    ov = [f"env.suite={suite}", f"policy.arch={arch}"]
    if arch in MIXTURES:
        ov += [
            f"policy.{arch}.{key}={json.dumps(value)}"
            for key, value in (("num_experts", num_experts), ("head", head))
            if value is not None
        ]
    if curriculum is not None:
        ov.append(f"curriculum.name={curriculum}")
    cfg = load_config(None, ov + list(overrides))
    get_suite(cfg.env.suite)  # an unknown suite stops here, with the closest names
    if cfg.env.reward_version is not None:  # RLlib's env runners build suites by name, at the default reward
        raise ConfigError(
            f"env.reward_version={cfg.env.reward_version}: mtrl.rllib runs each suite's default reward "
            "function; leave env.reward_version unset there"
        )
    return cfg


def ppo_config(
    suite: str,
    arch: str = "moore",
    num_experts: int = 2,
    curriculum: str | None = None,
    task_norm: bool = True,
    *,
    head: str = "multi",
    seed: int = 0,
    overrides: tuple[str, ...] = (),
) -> PPOConfig:
    """RLlib PPO (new API stack) on mtrl suite `suite` with a `MultiTaskRLModule` of architecture
    `arch` (any registered one; `num_experts` and `head` for moore / moe), per-task advantage
    normalisation after GAE when `task_norm`, per-task metrics, and optionally the mtrl curriculum
    `curriculum` (a registered name) choosing each episode's task.

    `overrides` are mtrl config overrides for the rest of the policy, env and curriculum settings,
    e.g. ("policy.hidden=256", "curriculum.eps=0.1", "env.max_episode_steps=200"). The returned
    PPOConfig has RLlib's PPO hyper-parameters; chain `.training(...)`, `.env_runners(...)` etc.
    Each env runner gets K sub-envs, so with the default 2 runners every task runs twice."""
    cfg = mtrl_settings(suite, arch, num_experts, head, curriculum, overrides)
    p = cfg.policy
    own = p.options.get(arch)
    options = {
        k: v
        for k, v in (dataclasses.asdict(own) if own is not None else {}).items()
        if k not in ("num_experts", "head")
    }
    model = mtrl_model_config(
        arch=arch,
        hidden=p.hidden,
        layers=p.layers,
        init=p.init,
        options=options,
        suite=suite,
        num_experts=num_experts,
        head=head,
        activation=p.activation,
    )
    env_config = {
        "seed": seed,
        "max_episode_steps": cfg.env.max_episode_steps,
        "curriculum": curriculum_settings(cfg.curriculum) if cfg.curriculum.name else None,
    }
    config = (
        PPOConfig()
        .environment(env=register_suite_env(suite), env_config=env_config)
        .env_runners(num_envs_per_env_runner=get_suite(suite).num_tasks, gym_env_vectorize_mode="sync")
        .rl_module(rl_module_spec=RLModuleSpec(module_class=MultiTaskRLModule, model_config=model))
        .callbacks(MultiTaskCallbacks)
        .debugging(seed=seed)
    )
    if task_norm:
        config.learners(learner_class=TaskNormPPOLearner)
    return config
