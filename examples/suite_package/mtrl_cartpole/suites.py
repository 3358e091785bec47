"""The suite `cartpole-poles-pkg`: three CartPole tasks whose poles differ in length (the suite of
examples/suite_in_a_script.py, under its own name so that the two can be used side by side).

Two ways to make mtrl see it:

    pip install -e examples/suite_package        # then mtrl finds it through the entry point:
    mtrl suites                                  #   ... cartpole-poles-pkg (3 tasks): short, default, long
    mtrl train toy_mtppo env.suite=cartpole-poles-pkg rollout.workers=0

    mtrl train --import examples/suite_package/mtrl_cartpole/suites.py toy_mtppo \
        env.suite=cartpole-poles-pkg rollout.workers=0     # no install: import this file first
"""

import gymnasium as gym
import numpy as np

import mtrl

NAME = "cartpole-poles-pkg"
POLE_HALF_LENGTHS = {"short": 0.25, "default": 0.5, "long": 1.0}  # metres; CartPole-v1's own is 0.5


def build(task_index: int, seed: int) -> gym.Env:
    """A plain gymnasium env for one task; mtrl adds the task id to its observations."""
    env = gym.make("CartPole-v1", max_episode_steps=200)
    pole = env.unwrapped
    pole.length = list(POLE_HALF_LENGTHS.values())[task_index]
    pole.polemass_length = pole.masspole * pole.length  # CartPole derives this once, in its constructor
    return env


def make_suite() -> mtrl.TaskSuite:
    """Called on the suite's first use, so `mtrl suites` and a lookup of another suite cost nothing."""
    return mtrl.TaskSuite(
        name=NAME,
        tasks=tuple(POLE_HALF_LENGTHS),
        build=build,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
        action_space=gym.spaces.Discrete(2),
        eval_episodes=8,
        default_max_episode_steps=200,
        return_range=(0.0, 200.0),
    )


def register() -> None:
    """The entry point (pyproject.toml, group mtrl.suites): mtrl calls it with no arguments."""
    mtrl.register_suite(NAME, make_suite)


# For `mtrl train --import .../suites.py`, which imports the file but calls no function. Through
# the entry point, register() then runs a second time with the same factory, which is allowed.
register()
