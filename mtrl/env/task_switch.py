"""Env slots that draw their task at every reset from the curriculum's probabilities.

All slots of one collector share a `TaskEnvCache` of idle envs per task, so a slot that switches
task takes an idle env of the new task (built on first need) and hands its old one back: a
worker holds about as many envs as it has slots plus one per task, not slots x tasks.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.env.suite import TaskSuite


class TaskEnvCache:
    """Idle task envs (with the task id in their observations), built on demand."""

    def __init__(self, suite: TaskSuite, max_episode_steps: int | None, seed: int) -> None:
        self.suite, self.max_episode_steps = suite, max_episode_steps
        self._idle: dict[int, list[gym.Env]] = defaultdict(list)
        self._all: list[gym.Env] = []
        self._seeds = np.random.SeedSequence(seed)

    def take(self, task: int) -> gym.Env:
        if self._idle[task]:
            return self._idle[task].pop()
        env = self.suite.make_env(task, int(self._seeds.spawn(1)[0].generate_state(1)[0]), self.max_episode_steps)
        self._all.append(env)
        return env

    def give(self, task: int, env: gym.Env) -> None:
        self._idle[task].append(env)

    def close(self) -> None:
        for env in self._all:
            env.close()
        self._all, self._idle = [], defaultdict(list)


class TaskSwitchingEnv(gym.Env):
    """One env slot: at each reset it draws task k with probability probs[k] (`probs` is shared
    with the collector, which overwrites it in place each iteration) and runs that task's env."""

    def __init__(self, cache: TaskEnvCache, probs: np.ndarray, seed: int) -> None:
        suite = cache.suite
        self.observation_space = suite.task_observation_space
        self.action_space = suite.action_space
        self.cache, self.probs = cache, probs
        self.rng = np.random.default_rng(seed)
        self.task = -1
        self.env: gym.Env | None = None  # the current task's env, from the first reset on

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if self.env is not None:
            self.cache.give(self.task, self.env)
        self.task = int(self.rng.choice(len(self.probs), p=self.probs / self.probs.sum()))
        if options and "task" in options:  # a resume replaying this episode: the task it drew then
            self.task = int(options["task"])
            options = {k: v for k, v in options.items() if k != "task"} or None
        self.env = self.cache.take(self.task)
        return self.env.reset(seed=int(self.rng.integers(2**31 - 1)), options=options)

    def step(self, action: Any):
        assert self.env is not None, "reset() first"
        return self.env.step(action)

    def close(self) -> None:
        self.env = None
        self.cache.close()  # every env it built; the other slots' calls then find it empty
