"""envpool's C++ Meta-World v3 against the Python reference on the real metaworld-mt10 tasks:
observation layout and dtype (goal visible), horizon, reward scale and the success signal."""

from __future__ import annotations

import numpy as np
import pytest

import mtrl
from mtrl.env.vector import make_vector_env

pytest.importorskip("envpool")
pytest.importorskip("metaworld")


TASKS = [0, 1, 3]  # reach, push, door-open: no object, a free object, an articulated object


def first_obs(backend: str) -> np.ndarray:
    suite = mtrl.get_suite("metaworld-mt10")
    envs = make_vector_env(suite, TASKS, [0, 1, 2], "next_step", None, backend)
    obs, _ = envs.reset(seed=[0, 1, 2])
    envs.close()
    assert obs["obs"].dtype == np.float32 and obs["obs"].shape == (len(TASKS), 39)
    assert (obs["task_id"] == TASKS).all()
    return obs["obs"]


def test_same_observation_layout():
    """Same start pose of the arm, and the goal (the last 3 entries) visible and inside each task's
    goal range on both backends: a partially observable port would show zeros there."""
    import metaworld

    py, fast = first_obs("gymnasium"), first_obs("envpool")
    np.testing.assert_allclose(fast[:, :3], py[:, :3], atol=0.02)  # hand position
    np.testing.assert_allclose(fast[:, 3], py[:, 3], atol=0.05)  # gripper opening
    for row, task in enumerate(TASKS):
        name = mtrl.get_suite("metaworld-mt10").tasks[task]
        env = metaworld.ALL_V3_ENVIRONMENTS[name]()
        low, high = env.goal_space.low - 1e-4, env.goal_space.high + 1e-4
        for obs in (py[row], fast[row]):
            assert np.any(obs[-3:] != 0) and np.all(obs[-3:] >= low) and np.all(obs[-3:] <= high), name
        env.close()


def reach_episode(backend: str) -> tuple[list[float], int, bool, bool, float]:
    """One metaworld-mt1-reach-v3 episode of a scripted reacher (move the hand to the goal in the
    observation): returns (rewards, length, terminated, truncated, success at any step)."""
    suite = mtrl.get_suite("metaworld-mt1-reach-v3")
    envs = make_vector_env(suite, [0], [3], "next_step", None, backend)
    obs, _ = envs.reset(seed=[3])
    rewards, success = [], 0.0
    for _ in range(600):
        o = obs["obs"][0]
        action = np.zeros((1, 4), np.float32)
        action[0, :3] = np.clip((o[-3:] - o[:3]) * 10, -1, 1)
        obs, rew, term, trunc, infos = envs.step(action)
        rewards.append(float(rew[0]))
        success = max(success, float(infos["success"][0]))
        if term[0] or trunc[0]:
            break
    envs.close()
    return rewards, len(rewards), bool(term[0]), bool(trunc[0]), success


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_horizon_reward_scale_and_success(backend):
    rewards, length, terminated, truncated, success = reach_episode(backend)
    assert length == 500 and truncated and not terminated  # Meta-World never terminates; v3 horizon 500
    assert success == 1.0  # the scripted reacher reaches the goal, and the success flag says so
    assert 0.0 <= min(rewards) and max(rewards) <= 10.0 and max(rewards) > 9.0  # v3 rewards lie in [0, 10]
