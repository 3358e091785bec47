"""MiniGrid suites with MOORE's task lists (Hendawy et al., ICLR 2024; docs/algorithms/evaluation.md).

Observation: the agent's 7x7x3 egocentric image (object, colour, state ids, uint8). MiniGrid does
not report success, so a wrapper marks an episode successful when it terminates with reward > 0
(reaching the goal; lava and wrong doors terminate with reward 0).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

import mtrl

MT3 = ("MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0")
MT5 = (
    "MiniGrid-DoorKey-6x6-v0",
    "MiniGrid-LavaGapS7-v0",
    "MiniGrid-RedBlueDoors-6x6-v0",
    "MiniGrid-DistShift1-v0",
    "MiniGrid-MemoryS11-v0",
)
MT7 = MT5 + ("MiniGrid-SimpleCrossingS9N2-v0", "MiniGrid-MultiRoom-N2-S4-v0")
SUITES = {"minigrid-mt3": MT3, "minigrid-mt5": MT5, "minigrid-mt7": MT7}


class SuccessInfo(gym.Wrapper):
    """Add info['success'] = 1.0 on a rewarded termination (the goal was reached)."""

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["success"] = float(terminated and reward > 0)
        return obs, reward, terminated, truncated, info


def _build(tasks: tuple[str, ...], task: int, seed: int) -> gym.Env:
    import minigrid  # noqa: F401  (registers the MiniGrid ids, also inside Ray workers)
    from minigrid.wrappers import ImgObsWrapper

    return SuccessInfo(ImgObsWrapper(gym.make(tasks[task], disable_env_checker=True)))


def _build_envpool(tasks: tuple[str, ...], task: int, seeds: list[int]) -> Any:
    """envpool's C++ MiniGrid port of the task (same 7x7x3 uint8 image, reward and episode limit;
    tests/test_envpool.py checks it), or None when envpool or its port of the task is missing."""
    try:
        import envpool
    except ImportError:
        return None
    if tasks[task] not in envpool.list_all_envs():
        return None
    from mtrl.env.envpool import EnvpoolBatch

    pool = envpool.make_gymnasium(tasks[task], num_envs=len(seeds), env_seed=list(seeds))
    # success = a rewarded termination (the goal), as SuccessInfo defines it for the Python envs
    return EnvpoolBatch(pool, lambda obs: obs["image"], lambda rew, term, info: term & (rew > 0))


def make_minigrid_suite(name: str) -> mtrl.TaskSuite:
    """One of minigrid-mt3 / mt5 / mt7; 16 stochastic evaluation episodes per task (MOORE)."""
    tasks = SUITES[name]
    return mtrl.TaskSuite(
        name=name,
        tasks=tasks,
        build=partial(_build, tasks),
        observation_space=gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
        action_space=gym.spaces.Discrete(7),
        eval_episodes=16,
        reports_success=True,
        fast_build=partial(_build_envpool, tasks),
        return_range=(0.0, 1.0),  # reward 1 - 0.9 * steps / max_steps on success, else 0
    )


def register() -> None:
    """Entry point: register the MiniGrid suites."""
    for name in SUITES:
        mtrl.register_suite(name, partial(make_minigrid_suite, name))
