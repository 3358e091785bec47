"""Meta-World v3 suites: metaworld-mt10, metaworld-mt50 and metaworld-mt1-<env>.

Each task env is Meta-World's own `Meta-World/MT1` gymnasium env, which draws a new goal variant
(one of the benchmark's 50) at every reset. The goal set comes from a fixed benchmark seed, so all
runs and all env slots share the same 50 variants; the slot seed only drives the variant order
and the env's own randomness. Observation: the 39-dim state (float32). Horizon: the v3 standard of
500 steps unless `env.max_episode_steps` cuts it shorter (MOORE used 150). Reward: Meta-World's
v2 function unless `env.reward_version=v1` asks for the original paper's.

The task lists are written out so that listing suites does not import MuJoCo; a test checks them
against metaworld's own benchmark classes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

import mtrl

BENCHMARK_SEED = 0
HORIZON = 500
REWARD_VERSIONS = ("v1", "v2")  # Meta-World's reward_function_version; envpool's ports compute v2
MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
MT50 = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)


class SeededVariantReset(gym.Wrapper):
    """Make `reset(seed=s)` fix the whole start state: goal variant s mod 50, then the seed.

    Meta-World's task-select wrapper draws the variant from the env's RNG *before* the seed is
    applied, so the same seed gave different start states depending on the env's history (GRPO
    groups need one start per seed). Resets without a seed still draw a random variant, and the
    evaluation's seeds 0..49 (mod 50) visit every variant once: the v3 protocol.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        select = env
        while not hasattr(select, "sample_tasks_on_reset"):  # find Meta-World's task-select wrapper
            select = select.env
        self._select = select

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            return self.env.reset(options=options)
        select = self._select
        select.unwrapped.set_task(select.tasks[seed % len(select.tasks)])
        select.sample_tasks_on_reset = False
        try:
            return self.env.reset(seed=seed, options=options)
        finally:
            select.sample_tasks_on_reset = True


def eval_seeds(episodes: int, seed: int) -> list[int]:
    """Reset seeds for a task's evaluation: episode j gets goal variant j mod 50."""
    base = int(np.random.SeedSequence([seed, 0x3E7A]).generate_state(1)[0]) % 1_000_000 * 50
    return [base + j for j in range(episodes)]


def _build(tasks: tuple[str, ...], reward_version: str, task: int, seed: int) -> gym.Env:
    try:
        import metaworld  # noqa: F401  (registers the Meta-World ids, also inside Ray workers)
    except ImportError as exc:
        raise mtrl.MtrlError("Meta-World suites need the extra: pip install 'mtrl[metaworld]'") from exc
    env = gym.make(
        "Meta-World/MT1",
        env_name=tasks[task],
        seed=BENCHMARK_SEED,
        disable_env_checker=True,
        reward_function_version=reward_version,
    )
    env.action_space.seed(seed)
    return SeededVariantReset(env)


def envpool_id(task: str) -> str:
    """Meta-World's task name as envpool names its C++ port: 'pick-place-v3' -> 'MetaWorld/PickPlace-v3'."""
    base = task.removesuffix("-v3")
    return "MetaWorld/" + "".join(part.capitalize() for part in base.split("-")) + "-v3"


def _build_envpool(tasks: tuple[str, ...], task: int, seeds: list[int]) -> Any:
    """envpool's C++ port of the task, or None when envpool or the port is missing.

    Made to match the Python env (tests/test_envpool_metaworld.py checks it): the goal stays in the
    observation (`partially_observable=False`, as Meta-World v3's gymnasium envs), float64 is cast
    to float32, the horizon is 500, and success is the env's own `info["success"]`. One difference
    remains: envpool draws every episode's goal from the task's continuous goal range, where the
    Python env cycles through the benchmark's 50 fixed variants. Evaluation always runs the Python
    envs, so reported success is on the benchmark's variants.
    """
    try:
        import envpool
    except ImportError:
        return None
    env_id = envpool_id(tasks[task])
    if env_id not in envpool.list_all_envs():
        return None
    from mtrl.env.envpool import EnvpoolBatch

    pool = envpool.make_gymnasium(
        env_id, num_envs=len(seeds), env_seed=list(seeds), partially_observable=False, max_episode_steps=HORIZON
    )
    return EnvpoolBatch(pool, lambda obs: obs.astype(np.float32), lambda rew, term, info: info["success"] > 0)


def _no_envpool_v1(task: int, seeds: list[int]) -> Any:
    raise mtrl.MtrlError(
        "env.reward_version=v1: envpool's Meta-World ports compute only the v2 reward; use env.backend=gymnasium"
    )


def make_metaworld_suite(name: str, tasks: tuple[str, ...], reward_version: str = "v2") -> mtrl.TaskSuite:
    """A Meta-World suite with reward function `reward_version` (v2: the v3 envs' default; v1: the
    original paper's); evaluation runs one episode per goal variant (50 per task, v3 protocol)."""
    if reward_version not in REWARD_VERSIONS:
        raise mtrl.MtrlError(
            f"env.reward_version={reward_version}: Meta-World's reward functions are {', '.join(REWARD_VERSIONS)}"
        )
    return mtrl.TaskSuite(
        name=name,
        tasks=tasks,
        build=partial(_build, tasks, reward_version),
        observation_space=gym.spaces.Box(-np.inf, np.inf, (39,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        eval_episodes=50,
        reports_success=True,
        default_max_episode_steps=HORIZON,
        fast_build=partial(_build_envpool, tasks) if reward_version == "v2" else _no_envpool_v1,
        eval_seeds=eval_seeds,
    )


def register() -> None:
    """Entry point: register metaworld-mt10, metaworld-mt50 and one metaworld-mt1-<env> per task."""
    mtrl.register_suite("metaworld-mt10", partial(make_metaworld_suite, "metaworld-mt10", MT10))
    mtrl.register_suite("metaworld-mt50", partial(make_metaworld_suite, "metaworld-mt50", MT50))
    for env_name in MT50:
        name = f"metaworld-mt1-{env_name}"
        mtrl.register_suite(name, partial(make_metaworld_suite, name, (env_name,)))
