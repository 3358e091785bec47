"""mtrl suites as RLlib envs (`register_suite_env`).

RLlib's env runners build their sub-envs one after another through the registered creator, so the
creator counts them. Sub-env j of env runner w (remote runners are w = 1..R, the local one w = 0)
is global sub-env i = j * R + (w - 1), which numbers the R x n sub-envs 0..R*n-1 without knowing
n, and it runs task i mod K: every task gets floor or ceil of its share, as mtrl's env slots.
With a curriculum (`MultiTaskCallbacks`) each sub-env instead draws every episode's task from the
probabilities pushed to it with `set_task_probs`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.env.suite import get_suite
from mtrl.env.task_switch import TaskEnvCache, TaskSwitchingEnv
from mtrl.errors import MtrlError

EPISODE_INFO = "mtrl_episode"  # the info key of an episode's last step: {"task", "name", "return", "success"}


class SuiteTaskEnv(gym.Wrapper):
    """One RLlib sub-env: mtrl's task-switching slot, whose probabilities start as one-hot on its
    own task. At an episode's last step its info carries the episode's task, undiscounted return
    and success (any step's info["success"], as mtrl judges it), for the per-task metrics."""

    def __init__(self, suite_name: str, slot: int, seed: int, max_episode_steps: int | None) -> None:
        suite = get_suite(suite_name)
        self.task_probs = np.zeros(suite.num_tasks)
        self.task_probs[slot % suite.num_tasks] = 1.0
        super().__init__(TaskSwitchingEnv(TaskEnvCache(suite, max_episode_steps, seed), self.task_probs, seed))
        self.tasks, self.reports_success = suite.tasks, suite.reports_success
        self._ret, self._success = 0.0, 0.0

    def set_task_probs(self, probs: Any) -> None:
        """Draw the next episodes' tasks from `probs` ([K], non-negative, not all 0)."""
        p = np.asarray(probs, np.float64)
        if p.shape != self.task_probs.shape or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise MtrlError(
                f"set_task_probs: expected {len(self.task_probs)} finite non-negative probabilities, got {p}"
            )
        self.task_probs[:] = p / p.sum()  # in place: the task-switching env holds this array

    def reset(self, **kwargs: Any) -> Any:
        self._ret, self._success = 0.0, 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ret += float(reward)
        self._success = max(self._success, float(info.get("success", 0.0)))
        if terminated or truncated:
            task = int(obs["task_id"])
            info = {
                **info,
                EPISODE_INFO: {
                    "task": task,
                    "name": self.tasks[task],
                    "return": self._ret,
                    "success": self._success if self.reports_success else float("nan"),
                },
            }
        return obs, reward, terminated, truncated, info


class SuiteEnvCreator:
    """RLlib env creator of a suite's sub-envs (see the module docstring for the task of each).
    env_config may hold "seed" (default 0) and "max_episode_steps" (default: the suite's own)."""

    def __init__(self, suite_name: str) -> None:
        self.suite_name, self._made = suite_name, 0

    def __call__(self, ctx: Any) -> gym.Env:
        runners = max(int(getattr(ctx, "num_workers", 0)), 1)
        runner = max(int(getattr(ctx, "worker_index", 0)) - 1, 0)
        slot = self._made * runners + runner
        self._made += 1
        config = dict(ctx)
        seed = int(config.get("seed", 0)) + 1_000_003 * slot
        return SuiteTaskEnv(self.suite_name, slot, seed, config.get("max_episode_steps"))


def register_suite_env(suite_name: str) -> str:
    """Register mtrl suite `suite_name` with RLlib (Ray Tune's env registry) and return the env
    name to pass to `config.environment(env=...)`: "mtrl/<suite_name>"."""
    from ray.tune.registry import register_env

    get_suite(suite_name)  # an unknown suite stops here, with the closest names
    name = f"mtrl/{suite_name}"
    register_env(name, SuiteEnvCreator(suite_name))
    return name
