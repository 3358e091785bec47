"""Tiny deterministic multi-task suites for fast learning tests.

`toy-point-mt2` (continuous, for SAC): a point on [-1, 1] starts at 0 and moves by 0.2 a per step
(a in [-1, 1]); task 0's goal is +0.6, task 1's is -0.6, the reward is -|x - goal| and an episode
lasts 20 steps (success: within 0.1 of the goal). The observation (x, t / 20) is the same for
both tasks, so only the task id says which way to go.

Task k of `toy-mt<K>`: at step t the correct action is (k + t) mod A. A correct action earns +1,
a wrong one ends the episode (termination, no bootstrap). After `length` correct actions the
episode is cut by a time limit (truncation, bootstrapped). The observation is the one-hot step
index, so only the task id tells the tasks apart: a policy must use it to exceed 1/A per step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

import mtrl

LENGTH = 8
N_ACTIONS = 4


class SequenceEnv(gym.Env):
    """Reproduce the task's action sequence; see the module docstring."""

    def __init__(self, task: int, length: int = LENGTH, n_actions: int = N_ACTIONS) -> None:
        self.task, self.length, self.n_actions = task, length, n_actions
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length + 1,), np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length + 1, np.float32)
        obs[self._t] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        correct = int(action) == (self.task + self._t) % self.n_actions
        self._t += 1
        success = correct and self._t == self.length
        return self._obs(), float(correct), not correct, False, {"success": float(success)}


class PointEnv(gym.Env):
    """Move a point to the task's goal; see the module docstring."""

    def __init__(self, goal: float, length: int = 20) -> None:
        self.goal, self.length = goal, length
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x, self._t = 0.0, 0

    def _obs(self) -> np.ndarray:
        return np.array([self._x, self._t / self.length], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._x, self._t = 0.0, 0
        return self._obs(), {}

    def step(self, action: Any):
        self._x = float(np.clip(self._x + 0.2 * float(np.asarray(action).reshape(-1)[0]), -1.0, 1.0))
        self._t += 1
        dist = abs(self._x - self.goal)
        return self._obs(), -dist, False, self._t >= self.length, {"success": float(dist < 0.1)}


def make_point_suite() -> mtrl.TaskSuite:
    """The `toy-point-mt2` suite (continuous actions)."""
    goals = (0.6, -0.6)
    return mtrl.TaskSuite(
        name="toy-point-mt2",
        tasks=("point-right", "point-left"),
        build=lambda task, seed: PointEnv(goals[task]),
        observation_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        eval_episodes=4,
        reports_success=True,
        default_max_episode_steps=20,
    )


def _build(task: int, seed: int) -> gym.Env:
    return gym.wrappers.TimeLimit(SequenceEnv(task), max_episode_steps=LENGTH)


def make_toy_suite(num_tasks: int) -> mtrl.TaskSuite:
    """The `toy-mt<num_tasks>` suite."""
    return mtrl.TaskSuite(
        name=f"toy-mt{num_tasks}",
        tasks=tuple(f"sequence-{k}" for k in range(num_tasks)),
        build=_build,
        observation_space=gym.spaces.Box(0.0, 1.0, (LENGTH + 1,), np.float32),
        action_space=gym.spaces.Discrete(N_ACTIONS),
        eval_episodes=8,
        reports_success=True,
        default_max_episode_steps=LENGTH,
    )


def register() -> None:
    """Entry point: register toy-mt2, toy-mt3 and toy-point-mt2."""
    for k in (2, 3):
        mtrl.register_suite(f"toy-mt{k}", partial(make_toy_suite, k))
    mtrl.register_suite("toy-point-mt2", make_point_suite)
