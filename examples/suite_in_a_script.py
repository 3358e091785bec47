"""A multi-task suite defined in a script: three CartPole tasks whose poles differ in length.

Every task has the same observation and action spaces but its own dynamics, so one policy has to
tell the tasks apart by their task id. The script registers the suite with `mtrl.register_suite`,
trains on it in this process with `mtrl.train`, evaluates the run with `mtrl.evaluate` and prints
the report.

    python examples/suite_in_a_script.py                  # a quick check: 3k env steps, seconds
    python examples/suite_in_a_script.py --steps 200000   # normalised returns of 0.8 to 1 per task

The `mtrl` command can use the same file: `--import` imports it (main() does not run) before any
name is resolved, which registers the suite; `toy_mtppo` is a packaged config (`mtrl configs`):

    mtrl train --import examples/suite_in_a_script.py toy_mtppo env.suite=cartpole-poles
"""

import argparse

import gymnasium as gym
import numpy as np

import mtrl

POLE_HALF_LENGTHS = {"short": 0.25, "default": 0.5, "long": 1.0}  # metres; CartPole-v1's own is 0.5


def build(task_index: int, seed: int) -> gym.Env:
    """A plain gymnasium env for one task; mtrl adds the task id to its observations."""
    env = gym.make("CartPole-v1", max_episode_steps=200)
    pole = env.unwrapped
    pole.length = list(POLE_HALF_LENGTHS.values())[task_index]
    pole.polemass_length = pole.masspole * pole.length  # CartPole derives this once, in its constructor
    return env


def make_suite() -> mtrl.TaskSuite:
    return mtrl.TaskSuite(
        name="cartpole-poles",
        tasks=tuple(POLE_HALF_LENGTHS),
        build=build,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),  # every task's must match
        action_space=gym.spaces.Discrete(2),
        eval_episodes=8,  # per task, in the evaluation at the end of training
        default_max_episode_steps=200,
        return_range=(0.0, 200.0),  # reports score the return normalised to [0, 1]
    )


# At import, not in main(): `mtrl train --import` of this file then finds the suite too.
mtrl.register_suite("cartpole-poles", make_suite)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="env steps, over all tasks (default 3000)")
    args = parser.parse_args()

    # rollout__workers=0 collects in this process, so no Ray; the run goes to runs/cartpole-poles-ppo-s0-<time>
    run_dir = mtrl.train(env__suite="cartpole-poles", rollout__workers=0, train__total_steps=args.steps)
    report = mtrl.evaluate(run_dir, episodes=8)  # per task; the newest checkpoint
    print(report.markdown())


if __name__ == "__main__":
    main()
