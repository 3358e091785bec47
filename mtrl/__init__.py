"""mtrl: multi-task reinforcement learning with Ray rollout workers and a central learner."""

from typing import Any

from mtrl.env.suite import TaskSuite, get_suite, list_suites
from mtrl.errors import MtrlError
from mtrl.registry import register_aggregator, register_algo, register_arch, register_suite

__all__ = [
    "MtrlError",
    "TaskSuite",
    "get_suite",
    "list_suites",
    "register_aggregator",
    "register_algo",
    "register_arch",
    "register_curriculum",
    "register_suite",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # imported on first use: mtrl.curriculum pulls in torch, which `import mtrl` does not need
    if name == "register_curriculum":
        from mtrl.curriculum import register_curriculum

        return register_curriculum
    raise AttributeError(f"module 'mtrl' has no attribute {name!r}")
