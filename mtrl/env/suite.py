"""Task suites: named lists of tasks sharing one observation and one action space.

Every env a suite builds returns observations as a dict {"obs": ..., "task_id": int}, so the task
index travels with every step (as in facebookresearch/mtrl's typed multi-task observation).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.env.envguard import GuardedEnv
from mtrl.errors import EnvError, MtrlError
from mtrl.registry import SUITES, call_plugin


@dataclass(frozen=True)
class TaskSuite:
    """A named set of tasks and how to build one env for any (task index, seed).

    `build(task_index, seed)` returns a plain gymnasium env whose observations fit
    `observation_space` and whose actions fit `action_space`; `make_env` adds the task id.
    `default_max_episode_steps` is the env's own horizon, which `env.max_episode_steps` may only shorten.
    """

    name: str
    tasks: tuple[str, ...]
    build: Callable[[int, int], gym.Env]
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    eval_episodes: int = 16
    reports_success: bool = False
    default_max_episode_steps: int | None = None
    # Optional fast backend: fast_build(task_index, seeds) -> a mtrl.env.vector.BatchEnv of len(seeds)
    # envs of that task (e.g. an envpool pool), or None where the backend lacks the task.
    fast_build: Callable[[int, Sequence[int]], Any] | None = None
    # Optional evaluation seeds: eval_seeds(episodes, seed) -> the reset seed of each of a task's
    # evaluation episodes (Meta-World: one per goal variant); None: independent random seeds.
    eval_seeds: Callable[[int, int], list[int]] | None = None
    # Optional (worst, best) return of every task: reports normalise returns to [0, 1] with it
    return_range: tuple[float, float] | None = None
    # Optional [K, d] task context, e.g. sentence embeddings of the task descriptions (CARE's context)
    task_metadata: Any = None

    def __post_init__(self) -> None:
        if not self.tasks:
            raise MtrlError(f"suite '{self.name}' has no tasks")
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise MtrlError(f"suite '{self.name}': observation_space must be a gymnasium Box")
        if not isinstance(self.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise MtrlError(f"suite '{self.name}': action_space must be Discrete or Box")
        if self.task_metadata is not None:
            meta = np.asarray(self.task_metadata, dtype=np.float64)
            if meta.ndim != 2 or len(meta) != len(self.tasks) or not np.isfinite(meta).all():
                raise MtrlError(
                    f"suite '{self.name}': task_metadata must be a finite [K, d] array with one row per "
                    f"task (K = {len(self.tasks)}), got shape {meta.shape}"
                )
            object.__setattr__(self, "task_metadata", meta)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_observation_space(self) -> gym.spaces.Dict:
        """The observation space of every env the suite makes: {"obs": ..., "task_id": Discrete(K)}."""
        return gym.spaces.Dict({"obs": self.observation_space, "task_id": gym.spaces.Discrete(self.num_tasks)})

    def check_horizon(self, max_episode_steps: int | None) -> None:
        """Reject an episode limit longer than the env's own (the env would fail past it)."""
        limit = self.default_max_episode_steps
        if max_episode_steps is not None and limit is not None and max_episode_steps > limit:
            raise MtrlError(f"env.max_episode_steps={max_episode_steps} exceeds suite '{self.name}''s limit of {limit}")

    def make_env(self, task_index: int, seed: int, max_episode_steps: int | None = None) -> gym.Env:
        """Build task `task_index`'s env with the task id in every observation.

        The env is guarded: if it raises or returns NaN it is rebuilt and the step is reported as
        a truncation with info["env_error"] (see `mtrl.env.envguard`)."""
        if not 0 <= task_index < self.num_tasks:
            raise MtrlError(f"suite '{self.name}' has tasks 0..{self.num_tasks - 1}, got task index {task_index}")
        self.check_horizon(max_episode_steps)
        label = f"suite '{self.name}' task '{self.tasks[task_index]}'"
        env = GuardedEnv(lambda s: self._build_checked(task_index, s, max_episode_steps), seed, label)
        return TaskIdObservation(env, task_index, self)

    def _build_checked(self, task_index: int, seed: int, max_episode_steps: int | None) -> gym.Env:
        env = self.build(task_index, seed)
        if (
            not isinstance(env.action_space, type(self.action_space))
            or env.action_space.shape != self.action_space.shape
        ):
            raise EnvError(
                f"suite '{self.name}' task '{self.tasks[task_index]}': env action space {env.action_space} "
                f"does not match the suite's {self.action_space}"
            )
        return env if max_episode_steps is None else gym.wrappers.TimeLimit(env, max_episode_steps)


class TaskIdObservation(gym.ObservationWrapper):
    """Wrap obs as {"obs": obs cast to the suite's dtype, "task_id": task index}; reject bad shapes."""

    def __init__(self, env: gym.Env, task_index: int, suite: TaskSuite) -> None:
        super().__init__(env)
        self._task = task_index
        self._suite = suite
        self._dtype = suite.observation_space.dtype
        self.observation_space = suite.task_observation_space
        self.action_space = suite.action_space

    def observation(self, observation: Any) -> dict[str, Any]:
        obs = np.asarray(observation, dtype=self._dtype)
        if obs.shape != self._suite.observation_space.shape:
            raise EnvError(
                f"suite '{self._suite.name}' task '{self._suite.tasks[self._task]}' returned an observation "
                f"of shape {obs.shape}; the suite declares {self._suite.observation_space.shape}"
            )
        return {"obs": obs, "task_id": self._task}


def get_suite(name: str, reward_version: str | None = None) -> TaskSuite:
    """Build the registered suite `name` (from `register_suite` or the `mtrl.suites` entry points).
    `reward_version` (env.reward_version) goes to a factory that takes that keyword (Meta-World's
    v1 / v2 rewards); None builds the suite's default."""
    factory: Callable[..., object] = SUITES.get(name)  # it may also take reward_version (checked below)
    if reward_version is None:
        suite = call_plugin("suite", name, "its factory", factory)
    else:
        try:
            takes = "reward_version" in inspect.signature(factory).parameters
        except (TypeError, ValueError):
            takes = False
        if not takes:
            raise MtrlError(
                f"env.reward_version={reward_version}: suite '{name}' has one reward function (its factory "
                "takes no reward_version); set env.reward_version=null"
            )
        suite = call_plugin("suite", name, "its factory", partial(factory, reward_version=reward_version))
    if not isinstance(suite, TaskSuite):
        raise MtrlError(
            f"suite factory for '{name}' returned {type(suite).__name__}, expected mtrl.env.suite.TaskSuite"
        )
    return suite


def list_suites() -> list[str]:
    """Names of every registered suite."""
    return SUITES.names()


def env_actions(space: gym.spaces.Space, actions: np.ndarray) -> np.ndarray:
    """The policy's actions as the env takes them, the one rule for every stepping loop:
    continuous actions clipped to the Box (a Gaussian sample can leave it; the learner keeps the
    unclipped sample and its log-probability), discrete ones as they are."""
    return np.clip(actions, space.low, space.high) if isinstance(space, gym.spaces.Box) else actions


def slot_tasks(num_tasks: int, num_slots: int) -> np.ndarray:
    """Assign env slots to tasks round-robin, so every task gets floor or ceil of its share."""
    return np.arange(num_slots) % num_tasks
