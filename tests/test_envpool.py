"""envpool's C++ MiniGrid against the Python reference: layout, dtype, episode limits, reward
scale and success signal, on the real minigrid-mt3 tasks; and a short training run on it."""

from __future__ import annotations

import numpy as np
import pytest

import mtrl
from mtrl.config import load_config
from mtrl.env.envpool import check_fast_backend
from mtrl.env.suite import slot_tasks
from mtrl.env.vector import make_vector_env
from mtrl.errors import MtrlError
from mtrl.run.trainer import train
from tests.conftest import ROOT

pytest.importorskip("envpool")
LIMITS = {"MiniGrid-LavaGapS7-v0": 196, "MiniGrid-RedBlueDoors-6x6-v0": 720, "MiniGrid-MemoryS11-v0": 605}


def random_episodes(backend: str, steps: int = 1500, slots: int = 12) -> tuple[list, np.ndarray]:
    """Run random actions; return (task, length, last reward, success) per finished episode and the first obs."""
    suite = mtrl.get_suite("minigrid-mt3")
    tasks = slot_tasks(3, slots)
    envs = make_vector_env(suite, tasks, list(range(slots)), "next_step", None, backend)
    obs, _ = envs.reset(seed=list(range(slots)))
    first = obs["obs"].copy()
    assert obs["obs"].dtype == np.uint8 and obs["obs"].shape == (slots, 7, 7, 3)
    assert (obs["task_id"] == tasks).all()
    rng = np.random.default_rng(0)
    length, resetting, episodes = np.zeros(slots, int), np.zeros(slots, bool), []
    for _ in range(steps):
        obs, rew, term, trunc, infos = envs.step(rng.integers(0, 7, slots))
        length += ~resetting
        for i in np.flatnonzero((term | trunc) & ~resetting):
            episodes.append(
                (suite.tasks[tasks[i]], int(length[i]), float(rew[i]), float(infos["success"][i]), bool(term[i]))
            )
        length[term | trunc] = 0
        resetting = term | trunc
    envs.close()
    return episodes, first


@pytest.fixture(scope="module")
def both():
    return {b: random_episodes(b) for b in ("gymnasium", "envpool")}


def test_same_image_layout(both):
    # LavaGapS7 starts the agent in the top-left corner facing east, so the walls in its first
    # view are the same for every seed; a transposed or flipped image would move them.
    walls = {b: [o[..., 0] == 2 for o, t in zip(first, slot_tasks(3, 12)) if t == 0] for b, (_, first) in both.items()}
    for mask in walls["gymnasium"] + walls["envpool"]:
        assert (mask == walls["gymnasium"][0]).all()


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_episode_limits(both, backend):
    episodes, _ = both[backend]
    for task, limit in LIMITS.items():
        lengths = [e[1] for e in episodes if e[0] == task]
        assert lengths and max(lengths) <= limit
        truncated = [e for e in episodes if e[0] == task and not e[4]]
        assert all(e[1] == limit for e in truncated)  # time limits cut exactly at the limit
    assert max(e[1] for e in episodes if e[0] == "MiniGrid-RedBlueDoors-6x6-v0") == 720  # reached under random play


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_reward_scale_and_success(both, backend):
    episodes, _ = both[backend]
    rewarded = [e for e in episodes if e[2] > 0]
    assert rewarded, "random play should reach some goals"
    for task, length, reward, _success, _terminated in rewarded:  # MiniGrid: 1 - 0.9 * steps / max_steps
        assert reward == pytest.approx(1 - 0.9 * length / LIMITS[task], abs=1e-5)
    assert all(e[3] == float(e[2] > 0 and e[4]) for e in episodes)  # success <=> rewarded termination


def test_backend_config_errors():
    suite = mtrl.get_suite("minigrid-mt3")
    with pytest.raises(MtrlError, match="autoreset_mode=next_step"):
        check_fast_backend(suite, "envpool", "same_step", None)
    with pytest.raises(MtrlError, match="max_episode_steps"):
        check_fast_backend(suite, "envpool", "next_step", 50)


def test_unsupported_suite_falls_back_and_says_so(capsys):
    check_fast_backend(mtrl.get_suite("toy-mt3"), "envpool", "next_step", None)
    assert "these tasks run on gymnasium" in capsys.readouterr().err


def test_training_on_envpool(tmp_path):
    cfg = load_config(
        ROOT / "configs/minigrid_mt3_mtppo.yaml",
        [
            "env.backend=envpool",
            "rollout.autoreset_mode=next_step",
            f"run_dir={tmp_path}",
            "rollout.workers=0",
            "rollout.num_envs=6",
            "rollout.steps_per_env=32",
            "train.total_steps=600",
            "train.eval_episodes=1",
            "policy.hidden=16",
        ],
    )
    from mtrl.run.checkpoint import load_latest

    _, ckpt = load_latest(train(cfg))
    assert ckpt["env_steps"] >= 600
