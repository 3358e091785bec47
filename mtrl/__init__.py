"""mtrl: multi-task reinforcement learning with Ray rollout workers and a central learner.

The public API: `train`, `load_config`, `evaluate` and `list_configs` (`mtrl.run.api`), suites
(`TaskSuite`, `get_suite`, `list_suites`) and the plug-in registries (`register_*`).
"""

from typing import Any

from mtrl.config.plugins import extend_search_path
from mtrl.env.suite import TaskSuite, get_suite, list_suites
from mtrl.errors import AggregatorFailed, MtrlError
from mtrl.registry import (
    register_aggregator,
    register_algo,
    register_arch,
    register_policy_kind,
    register_suite,
    register_weighting,
)
from mtrl.version import __version__

__all__ = [
    "AggregatorFailed",
    "MtrlError",
    "__version__",
    "TaskSuite",
    "evaluate",
    "get_suite",
    "list_configs",
    "list_suites",
    "load_config",
    "register_aggregator",
    "register_algo",
    "register_arch",
    "register_curriculum",
    "register_policy_kind",
    "register_suite",
    "register_weighting",
    "train",
]

extend_search_path()  # in a process mtrl started: the user's plug-in modules are importable (MTRL_PLUGIN_PATH)

_LAZY = {
    # imported on first use: they pull in torch, Ray's helpers and every built-in, which `import mtrl` does not need
    "register_curriculum": "mtrl.curriculum",
    "train": "mtrl.run.api",
    "load_config": "mtrl.run.api",
    "evaluate": "mtrl.run.api",
    "list_configs": "mtrl.run.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtrl' has no attribute {name!r}")
