"""The fast env backend: per-task batched envs (envpool's C++ ports) behind one vector env.

envpool runs one env id per pool, so a multi-task slot layout becomes one pool per task; tasks
that envpool lacks run as gymnasium envs in the same layout. `TaskVectorEnv` scatters every
group's results back into slot order and speaks the gymnasium vector API the collector uses,
with NEXT_STEP autoreset semantics (envpool's own): the step after an episode end is a reset step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from mtrl.errors import MtrlError
from mtrl.rollout import step_flag
from mtrl.suite import TaskSuite, make_vector_env


class BatchEnv(Protocol):
    """n envs of one task, NEXT_STEP autoreset; success is a float per env (1 on success)."""

    def reset(self) -> np.ndarray: ...
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...
    def close(self) -> None: ...


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


class GymBatch:
    """The reference gymnasium envs of one task, for tasks the fast backend lacks."""

    def __init__(self, envs: gym.vector.VectorEnv, seeds: Sequence[int]) -> None:
        self.envs = envs
        self.seeds: list[int] | None = [int(s) for s in seeds]

    def reset(self) -> np.ndarray:
        """The first reset uses the slot seeds; later ones continue each slot's seed sequence."""
        seeds, self.seeds = self.seeds, None
        return self.envs.reset(seed=seeds)[0]["obs"]

    def step(self, actions: np.ndarray):
        obs, rew, term, trunc, infos = self.envs.step(actions)
        done = term | trunc
        flags = {k: step_flag(infos, k, done, False) for k in ("success", "env_error")}
        return obs["obs"], rew, term, trunc, flags

    def close(self) -> None:
        self.envs.close()


class TaskVectorEnv:
    """Slots in the caller's order, each group of same-task slots stepped as one batch env."""

    def __init__(self, groups: list[tuple[np.ndarray, BatchEnv]], tasks: np.ndarray, obs_space: gym.spaces.Box) -> None:
        self.groups, self.tasks, self.obs_space = groups, tasks, obs_space
        self.num_envs = len(tasks)

    def reset(self, seed: Any = None) -> tuple[dict[str, np.ndarray], dict]:
        obs = np.empty((self.num_envs, *self.obs_space.shape), self.obs_space.dtype)
        for idx, env in self.groups:  # one call per task group (envpool runs one env id per pool)
            obs[idx] = env.reset()
        return {"obs": obs, "task_id": self.tasks.copy()}, {}

    def step(self, actions: np.ndarray):
        n = self.num_envs
        obs = np.empty((n, *self.obs_space.shape), self.obs_space.dtype)
        rew, term, trunc = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        flags = {"success": np.zeros(n, np.float32), "env_error": np.zeros(n, np.float32)}
        for idx, env in self.groups:
            obs[idx], rew[idx], term[idx], trunc[idx], group_flags = env.step(actions[idx])
            for key, value in group_flags.items():
                flags[key][idx] = value
        infos: dict[str, np.ndarray] = {}
        for key, value in flags.items():
            infos[key], infos["_" + key] = value, np.ones(n, bool)
        return {"obs": obs, "task_id": self.tasks.copy()}, rew, term, trunc, infos

    def close(self) -> None:
        for _, env in self.groups:
            env.close()


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
        raise MtrlError("env.backend=envpool needs envpool: pip install 'mtrl[fast]' (or set env.backend=gymnasium)") from None
    if autoreset_mode != "next_step":
        raise MtrlError("env.backend=envpool resets envs on the step after an episode ends; "
                        f"it needs rollout.autoreset_mode=next_step, got {autoreset_mode}")  # fmt: skip
    if max_episode_steps is not None:
        raise MtrlError("env.backend=envpool runs each task at its own episode limit; unset env.max_episode_steps "
                        "or use env.backend=gymnasium")  # fmt: skip
    missing = [name for name, ok in zip(suite.tasks, fast_tasks(suite)) if not ok]
    if missing:
        print(f"mtrl: envpool has no port of {', '.join(missing)} (suite '{suite.name}'); "
              "these tasks run on gymnasium", file=sys.stderr)  # fmt: skip


def make_task_vector_env(suite: TaskSuite, tasks: Sequence[int], seeds: Sequence[int]) -> TaskVectorEnv:
    """Group slots by task; each group runs on envpool when the suite can, else on gymnasium."""
    tasks_arr, seeds_arr = np.asarray(tasks, np.int64), np.asarray(seeds, np.int64)
    groups: list[tuple[np.ndarray, BatchEnv]] = []
    for task in np.unique(tasks_arr):
        idx = np.flatnonzero(tasks_arr == task)
        group_seeds = [int(s) % 2**31 for s in seeds_arr[idx]]
        env = suite.fast_build(int(task), group_seeds) if suite.fast_build is not None else None
        if env is None:
            env = GymBatch(make_vector_env(suite, tasks_arr[idx], seeds_arr[idx], "next_step", None), group_seeds)
        groups.append((idx, env))
    return TaskVectorEnv(groups, tasks_arr, suite.observation_space)
