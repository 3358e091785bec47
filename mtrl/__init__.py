"""mtrl: multi-task reinforcement learning with Ray rollout workers and a central learner."""

from mtrl.errors import MtrlError
from mtrl.registry import register_suite
from mtrl.env.suite import TaskSuite, get_suite, list_suites

__all__ = ["MtrlError", "TaskSuite", "get_suite", "list_suites", "register_suite"]
__version__ = "0.1.0"
