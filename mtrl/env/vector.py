"""The fast env backend: per-task batched envs (envpool's C++ ports) behind one vector env.

envpool runs one env id per pool, so a multi-task slot layout becomes one pool per task; tasks
that envpool lacks run as gymnasium envs in the same layout. `TaskVectorEnv` scatters every
group's results back into slot order and speaks the gymnasium vector API the collector uses,
with NEXT_STEP autoreset semantics (envpool's own): the step after an episode end is a reset step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from mtrl.env.slot_state import SeededEpisodes
from mtrl.env.suite import TaskSuite
from mtrl.env.task_switch import TaskEnvCache, TaskSwitchingEnv

IntSeq = Sequence[int] | np.ndarray  # task ids or seeds, one per slot: a list or an int array


class BatchEnv(Protocol):
    """n envs of one task, NEXT_STEP autoreset; success is a float per env (1 on success)."""

    def reset(self) -> np.ndarray: ...
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...
    def close(self) -> None: ...


class GymBatch:
    """The reference gymnasium envs of one task, for tasks the fast backend lacks."""

    def __init__(self, envs: gym.vector.SyncVectorEnv, seeds: Sequence[int]) -> None:
        self.envs = envs
        self.seeds: list[int | None] | None = [int(s) for s in seeds]  # as SyncVectorEnv.reset takes them

    def reset(self) -> np.ndarray:
        """The first reset uses the slot seeds; later ones continue each slot's seed sequence."""
        seeds, self.seeds = self.seeds, None
        return self.envs.reset(seed=seeds)[0]["obs"]

    def step(self, actions: np.ndarray):
        # annotated: SyncVectorEnv.step's stub leaves its type variables unbound
        out: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]] = self.envs.step(actions)
        obs, rew, term, trunc, infos = out
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


def make_task_vector_env(suite: TaskSuite, tasks: IntSeq, seeds: IntSeq) -> TaskVectorEnv:
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


def step_flag(infos: dict, key: str, done: np.ndarray, same_step: bool) -> np.ndarray:
    """info[key] of this step for every slot (e.g. "success", "env_error"), 0 where absent. Under
    SAME_STEP autoreset an ended episode's last info lives in info['final_info']."""
    out = np.zeros(len(done), np.float32)
    if key in infos:
        mask = infos.get("_" + key, np.ones_like(done))
        out[mask] = np.asarray(infos[key], np.float32)[mask]
    final = infos.get("final_info", {}) if same_step else {}
    if key in final:
        mask = done & final.get("_" + key, np.ones_like(done))
        out[mask] = np.asarray(final[key], np.float32)[mask]
    return out


def make_vector_env(
    suite: TaskSuite,
    tasks: IntSeq,
    seeds: IntSeq,
    autoreset_mode: str = "next_step",
    max_episode_steps: int | None = None,
    backend: str = "gymnasium",
    task_probs: np.ndarray | None = None,
) -> Any:
    """One vector env whose slot i runs task tasks[i] seeded with seeds[i]: gymnasium's
    SyncVectorEnv of restorable slots (`mtrl.env.slot_state`: each episode reset with a seed derived
    from seeds[i]), or with backend="envpool" the suite's fast batched envs (`mtrl.env.vector`).
    With `task_probs` (a curriculum's shared array) every slot draws its task at each reset."""
    if task_probs is not None:
        cache = TaskEnvCache(suite, max_episode_steps, int(seeds[0]))
        fns = [_seeded_slot(TaskSwitchingEnv, cache, task_probs, int(s)) for s in seeds]
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=_AUTORESET[autoreset_mode])
    if backend == "envpool":
        return make_task_vector_env(suite, tasks, seeds)
    fns = [_seeded_slot(suite.make_env, int(t), int(s), max_episode_steps) for t, s in zip(tasks, seeds, strict=True)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=_AUTORESET[autoreset_mode])


def _seeded_slot(make: Callable[..., gym.Env], *args: Any) -> Callable[[], gym.Env]:
    """The factory of one restorable slot: `make(*args)` wrapped in SeededEpisodes."""
    return lambda: SeededEpisodes(make(*args))


_AUTORESET = {"next_step": gym.vector.AutoresetMode.NEXT_STEP, "same_step": gym.vector.AutoresetMode.SAME_STEP}
