"""Configs: the schema (one dataclass per section) and strict YAML loading with dotted overrides."""

from mtrl.config.algo_sections import SurrogateConfig
from mtrl.config.load import apply_override, describe, load_config, read_yaml, save_config, to_dict
from mtrl.config.parse import from_dict
from mtrl.config.schema import (
    Config,
    CurriculumConfig,
    EnvConfig,
    GRPOConfig,
    LearnerConfig,
    MTGRPOConfig,
    PolicyConfig,
    PPOConfig,
    RayConfig,
    RolloutConfig,
    SACConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "CurriculumConfig",
    "EnvConfig",
    "GRPOConfig",
    "LearnerConfig",
    "MTGRPOConfig",
    "PPOConfig",
    "PolicyConfig",
    "RayConfig",
    "RolloutConfig",
    "SACConfig",
    "SurrogateConfig",
    "TrainConfig",
    "apply_override",
    "describe",
    "from_dict",
    "load_config",
    "read_yaml",
    "save_config",
    "to_dict",
]
