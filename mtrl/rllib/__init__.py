"""mtrl's multi-task parts inside RLlib 2.60 (new API stack): needs the `rllib` extra.

- `MultiTaskRLModule`: any registered mtrl architecture (mlp, multihead, moe, moore, a user's own)
  as a TorchRLModule with the ValueFunctionAPI; `mtrl_model_config(...)` is its model_config.
- `TaskAdvantageNormalization`: per-task advantage normalisation after GAE, inserted by
  `TaskNormPPOLearner`.
- `register_suite_env(suite)`: an mtrl suite as an RLlib env ("mtrl/<suite>").
- `MultiTaskCallbacks`: per-task return / success in RLlib's metrics, and an mtrl curriculum.
- `ppo_config(suite, arch, num_experts, curriculum, task_norm)`: all of the above in a PPOConfig.
- `export_checkpoint(algo_or_module, run_dir)` / `load_checkpoint_into(...)`: to and from mtrl
  checkpoints (`mtrl eval run_dir`).
"""

from __future__ import annotations

from mtrl.errors import MtrlError

try:
    import ray.rllib  # noqa: F401
    from ray.rllib.algorithms.ppo import PPOConfig  # noqa: F401 - RLlib's own dependencies (tune, pandas, ...)
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MtrlError(f"mtrl.rllib needs RLlib: pip install 'mtrl[rllib]' ({exc})") from None

from mtrl.rllib.callbacks import MultiTaskCallbacks
from mtrl.rllib.config import ppo_config
from mtrl.rllib.connector import TaskAdvantageNormalization, TaskNormPPOLearner
from mtrl.rllib.env import register_suite_env
from mtrl.rllib.export import export_checkpoint, load_checkpoint_into
from mtrl.rllib.module import MultiTaskRLModule, mtrl_model_config

__all__ = [
    "MultiTaskCallbacks",
    "MultiTaskRLModule",
    "TaskAdvantageNormalization",
    "TaskNormPPOLearner",
    "export_checkpoint",
    "load_checkpoint_into",
    "mtrl_model_config",
    "ppo_config",
    "register_suite_env",
]
