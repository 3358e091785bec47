"""MultiTaskRLModule weights to and from mtrl checkpoints.

`export_checkpoint(algo_or_module, run_dir)` writes an mtrl run directory (config.yaml and
checkpoints/ckpt_<env steps>.pt, the same atomic, weights-only format as `mtrl train`), so that
`mtrl eval run_dir` evaluates an RLlib-trained policy under mtrl's protocol. The module's state
dict is an mtrl ActorCritic's (same parameter names). The checkpoint holds no optimiser state,
so it is for evaluation (and `load_checkpoint_into`), not for `mtrl train resume=`.
`load_checkpoint_into(algo_or_module, path)` goes the other way, e.g. to fine-tune in RLlib.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

from mtrl.config import save_config, to_dict
from mtrl.env.suite import TaskSuite, get_suite
from mtrl.errors import CheckpointError, MtrlError
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import ActorCritic
from mtrl.rllib.config import mtrl_settings
from mtrl.rllib.module import MultiTaskRLModule, module_spec
from mtrl.run.checkpoint import load_latest, load_state, save_checkpoint
from mtrl.run.lock import RunLock

# config.yaml of an exported policy: its env and policy sections describe the policy; RLlib trained it
EXPORTED = (
    "# Exported from RLlib by mtrl.rllib.export_checkpoint. Only `env` and `policy` describe this policy;\n"
    "# the training settings are RLlib's (rllib_config.json), not the mtrl defaults below.\n"
)


def _source(target: Any, suite_name: str | None) -> tuple[PolicySpec, dict[str, Any], TaskSuite, int, int]:
    """(policy spec, state dict, suite, env steps, iteration) of an RLlib Algorithm or a module."""
    if isinstance(target, MultiTaskRLModule):
        if target.inference_only:
            raise MtrlError(
                "export_checkpoint: this MultiTaskRLModule is inference-only (an env runner's copy, "
                "without the critic); pass the Algorithm or the learner's module"
            )
        model, state, steps, iteration = target.model_config, target.state_dict(), 0, 0
        assert model is None or isinstance(model, dict)  # module_spec, which set the module up, took it
    elif hasattr(target, "learner_group") and hasattr(target, "config"):
        model = target.config.rl_module_spec.model_config
        state = target.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
        steps = int(target.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
        iteration = int(target.iteration)
    else:
        raise MtrlError(
            f"export_checkpoint takes an RLlib Algorithm or a MultiTaskRLModule, got {type(target).__name__}"
        )
    suite_name = suite_name or (model or {}).get("mtrl", {}).get("suite")
    if not suite_name:
        raise MtrlError(
            "export_checkpoint: which suite? pass suite=... (ppo_config records it in the module's model_config)"
        )
    suite = get_suite(suite_name)
    spec = module_spec(suite.task_observation_space, suite.action_space, model)
    return spec, {k: torch.as_tensor(v) for k, v in state.items()}, suite, steps, iteration


def export_checkpoint(algo_or_module: Any, run_dir: str | Path, suite: str | None = None) -> Path:
    """Write the policy as an mtrl run directory `run_dir`; returns the checkpoint file."""
    spec, state, task_suite, steps, iteration = _source(algo_or_module, suite)
    policy = ActorCritic(spec)
    load_state(policy, state, "policy")  # the same parameters, or one line saying which differ
    options = [f"policy.{spec.arch}.{k}={json.dumps(v)}" for k, v in spec.options]
    cfg = mtrl_settings(
        task_suite.name,
        spec.arch,
        spec.num_experts,
        spec.head,
        None,
        (
            f"policy.hidden={spec.hidden}",
            f"policy.layers={spec.layers}",
            f"policy.init={spec.init}",
            f"run_dir={run_dir}",
            *options,
        ),
    )
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    with RunLock.acquire(run):  # one writer per run directory, as for mtrl train (mtrl.run.lock)
        config_yaml = run / "config.yaml"
        save_config(cfg, config_yaml)
        config_yaml.write_text(EXPORTED + config_yaml.read_text(encoding="utf-8"), encoding="utf-8")
        if not isinstance(algo_or_module, MultiTaskRLModule):  # an Algorithm: what RLlib trained with
            settings = json.dumps(algo_or_module.config.to_dict(), indent=1, sort_keys=True, default=repr)
            (run / "rllib_config.json").write_text(settings, encoding="utf-8")
        payload = {
            "policy": policy.state_dict(),
            "optimizer": {},
            "env_steps": steps,
            "iteration": iteration,
            "spec": dataclasses.asdict(spec),
            "tasks": list(task_suite.tasks),
            "config": json.dumps(to_dict(cfg)),
            "rng_torch": torch.get_rng_state(),
            "rng_learner": torch.Generator().get_state(),
            "source": "rllib",
        }
        return save_checkpoint(run, payload, steps, keep=1)


def load_checkpoint_into(algo_or_module: Any, path: str | Path) -> None:
    """Load the policy of an mtrl checkpoint (a file or a run directory) into an RLlib Algorithm's
    learner and env runners, or into a MultiTaskRLModule; a policy of another shape is one line."""
    where, ckpt = load_latest(path)
    state = ckpt["policy"]
    if isinstance(algo_or_module, MultiTaskRLModule):
        if algo_or_module.inference_only:
            state = {k: v for k, v in state.items() if not k.startswith("critic.")}
        load_state(algo_or_module, state, "policy")
        return
    if not hasattr(algo_or_module, "learner_group"):
        raise MtrlError(
            f"load_checkpoint_into takes an RLlib Algorithm or a MultiTaskRLModule, got {type(algo_or_module).__name__}"
        )
    current = algo_or_module.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
    if set(current) != set(state) or any(tuple(current[k].shape) != tuple(state[k].shape) for k in state):
        raise CheckpointError(f"{where} holds a policy of another architecture or size than this algorithm's module")
    algo_or_module.learner_group.set_weights({DEFAULT_MODULE_ID: {k: v.numpy() for k, v in state.items()}})
    algo_or_module.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo_or_module.learner_group, inference_only=True
    )
