"""envpool's C++ ports of MiniGrid and Meta-World as a fast rollout backend (`env.backend=envpool`).

A suite's `fast_build(task, seeds)` wraps an envpool pool in `EnvpoolBatch`; `mtrl.env.vector`
puts such per-task batches behind one vector env. `check_fast_backend` validates the choice once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from mtrl.env.suite import TaskSuite
from mtrl.errors import MtrlError


class EnvpoolBatch:
    """An envpool gymnasium-API pool. `obs_fn` picks the observation out of envpool's output and
    `success_fn(reward, terminated, info)` gives each env's success flag for this step."""

    def __init__(
        self,
        pool: Any,
        obs_fn: Callable[[Any], np.ndarray],
        success_fn: Callable[[np.ndarray, np.ndarray, dict], np.ndarray],
    ) -> None:
        self.pool, self.obs_fn, self.success_fn = pool, obs_fn, success_fn

    def reset(self) -> np.ndarray:
        return self.obs_fn(self.pool.reset()[0])

    def step(self, actions: np.ndarray):
        obs, rew, term, trunc, info = self.pool.step(actions)
        return self.obs_fn(obs), rew, term, trunc, {"success": np.asarray(self.success_fn(rew, term, info), np.float32)}

    def close(self) -> None:
        self.pool.close()


def fast_tasks(suite: TaskSuite) -> list[bool]:
    """Which of the suite's tasks the fast backend can run (builds and closes a 1-env batch each)."""
    if suite.fast_build is None:
        return [False] * suite.num_tasks
    out = []
    for task in range(suite.num_tasks):
        env = suite.fast_build(task, [0])
        out.append(env is not None)
        if env is not None:
            env.close()
    return out


def check_fast_backend(suite: TaskSuite, backend: str, autoreset_mode: str, max_episode_steps: int | None) -> None:
    """Validate env.backend=envpool once, in the driver, and say once which tasks fall back."""
    if backend != "envpool":
        return
    try:
        import envpool  # noqa: F401
    except ImportError:
        raise MtrlError(
            "env.backend=envpool needs envpool: pip install 'mtrl[fast]' (or set env.backend=gymnasium)"
        ) from None
    if autoreset_mode != "next_step":
        raise MtrlError(
            "env.backend=envpool resets envs on the step after an episode ends; "
            f"it needs rollout.autoreset_mode=next_step, got {autoreset_mode}"
        )
    if max_episode_steps is not None:
        raise MtrlError(
            "env.backend=envpool runs each task at its own episode limit; unset env.max_episode_steps "
            "or use env.backend=gymnasium"
        )
    missing = [name for name, ok in zip(suite.tasks, fast_tasks(suite)) if not ok]
    if missing:
        print(
            f"mtrl: envpool has no port of {', '.join(missing)} (suite '{suite.name}'); these tasks run on gymnasium",
            file=sys.stderr,
        )
