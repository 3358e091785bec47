"""Suites, the plug-in registry and the built-in MiniGrid, Meta-World and toy suites."""

from __future__ import annotations

import textwrap

import gymnasium as gym
import numpy as np
import pytest

import mtrl
from mtrl.collect.fragments import Collector
from mtrl.env.suite import get_suite
from mtrl.errors import MtrlError, UnknownNameError
from mtrl.nn.policy import spec_for
from mtrl.registry import SUITES
from tests.conftest import run_cli


def test_builtin_suites_are_registered():
    names = mtrl.list_suites()
    for n in [
        "toy-mt3",
        "minigrid-mt3",
        "minigrid-mt5",
        "minigrid-mt7",
        "metaworld-mt10",
        "metaworld-mt50",
        "metaworld-mt1-reach-v3",
    ]:
        assert n in names
    assert mtrl.get_suite("minigrid-mt5").tasks == (
        "MiniGrid-DoorKey-6x6-v0",
        "MiniGrid-LavaGapS7-v0",
        "MiniGrid-RedBlueDoors-6x6-v0",
        "MiniGrid-DistShift1-v0",
        "MiniGrid-MemoryS11-v0",
    )
    assert mtrl.get_suite("minigrid-mt7").num_tasks == 7


def test_unknown_suite_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'minigrid-mt3'"):
        mtrl.get_suite("minigrid-mt33")


@pytest.mark.parametrize("name", ["minigrid-mt3", "minigrid-mt5", "minigrid-mt7"])
def test_minigrid_suites_build_and_step(name):
    suite = mtrl.get_suite(name)
    for k in range(suite.num_tasks):
        env = suite.make_env(k, seed=k)
        obs, _ = env.reset(seed=k)
        assert obs["obs"].shape == (7, 7, 3) and obs["obs"].dtype == np.uint8 and obs["task_id"] == k
        obs, r, term, trunc, info = env.step(2)
        assert obs["task_id"] == k and "success" in info


def test_metaworld_task_lists_match_metaworld():
    env_dict = pytest.importorskip("metaworld.env_dict")
    from mtrl_envs.metaworld import MT10, MT50

    assert list(MT10) == list(env_dict.MT10_V3)
    assert list(MT50) == list(env_dict.MT50_V3)


def test_metaworld_mt10_builds_and_steps():
    pytest.importorskip("metaworld")
    suite = mtrl.get_suite("metaworld-mt10")
    spec = spec_for(suite.observation_space.shape, suite.action_space, suite.num_tasks, "multihead", 32, 1)
    c = Collector(suite, list(range(10)), list(range(10)), spec, "same_step", max_episode_steps=20)
    frag = c.collect(25)
    assert frag.obs.shape == (25, 10, 39) and frag.obs.dtype == np.float32
    assert frag.actions.shape == (25, 10, 4)
    assert (frag.task_id == np.arange(10)).all()
    assert np.isfinite(frag.obs).all() and np.isfinite(frag.rewards).all()
    assert frag.truncated[19].all() and (frag.episodes.length == 20).all() and len(frag.episodes.ret) == 10
    assert np.isin(frag.episodes.success, [0.0, 1.0]).all()


def test_register_custom_suite_in_process():
    def factory():
        return mtrl.TaskSuite(
            "custom-one",
            ("cartpole",),
            lambda t, s: gym.make("CartPole-v1"),
            gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            gym.spaces.Discrete(2),
        )

    mtrl.register_suite("custom-one", factory, overwrite=True)
    env = mtrl.get_suite("custom-one").make_env(0, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs["obs"].dtype == np.float32 and obs["task_id"] == 0
    with pytest.raises(MtrlError, match="already registered"):
        mtrl.register_suite("custom-one", lambda: None)


def test_suite_rejects_a_mismatched_env():
    suite = mtrl.TaskSuite(
        "bad",
        ("x",),
        lambda t, s: gym.make("CartPole-v1"),
        gym.spaces.Box(0, 1, (3,), np.float32),
        gym.spaces.Discrete(2),
    )
    env = suite.make_env(0, 0)
    with pytest.raises(MtrlError, match=r"observation of shape \(4,\); the suite declares \(3,\)"):
        env.reset(seed=0)


def test_a_suite_factory_that_raises_is_one_line_naming_it():
    def broken():
        raise KeyError("missing asset")

    mtrl.register_suite("broken-test", broken, overwrite=True)
    try:
        with pytest.raises(MtrlError, match=r"^suite 'broken-test': its factory raised KeyError: 'missing asset'$"):
            get_suite("broken-test")
    finally:
        SUITES._items.pop("broken-test")


def test_third_party_suite_via_entry_point(tmp_path):
    """A package that only declares an `mtrl.suites` entry point shows up in `mtrl suites`."""
    (tmp_path / "fakeplugin.py").write_text(
        textwrap.dedent("""
        import gymnasium as gym, numpy as np, mtrl
        def register():
            mtrl.register_suite("fake-cartpole", lambda: mtrl.TaskSuite(
                "fake-cartpole", ("cp",), lambda t, s: gym.make("CartPole-v1"),
                gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2)))
    """)
    )
    dist = tmp_path / "fakeplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtrl.suites]\nfake = fakeplugin:register\n")
    out = run_cli("suites", env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "fake-cartpole (1 tasks): cp" in out.stdout
    assert "minigrid-mt3 (3 tasks): MiniGrid-LavaGapS7-v0" in out.stdout


def test_metaworld_reward_version_reaches_the_env():
    """env.reward_version picks Meta-World's reward function: the same actions from the same start
    give v2's rewards by default and other ones with v1; a suite with one reward function, an
    unknown version and v1 on envpool are one line each."""
    pytest.importorskip("metaworld")
    from mtrl.env.vector import make_vector_env

    def rewards(version):
        envs = make_vector_env(
            mtrl.get_suite("metaworld-mt1-reach-v3", version), [0], [3], "next_step", None, "gymnasium"
        )
        envs.reset(seed=[3])
        actions = np.random.default_rng(0).uniform(-1, 1, (5, 1, 4)).astype(np.float32)
        out = [float(envs.step(a)[1][0]) for a in actions]
        envs.close()
        return out

    assert rewards(None) == rewards("v2") != rewards("v1")
    with pytest.raises(mtrl.MtrlError, match="env.reward_version=v1: suite 'toy-mt3' has one reward function"):
        mtrl.get_suite("toy-mt3", "v1")
    with pytest.raises(mtrl.MtrlError, match="Meta-World's reward functions are v1, v2"):
        mtrl.get_suite("metaworld-mt10", "v9")
    with pytest.raises(mtrl.MtrlError, match="envpool's Meta-World ports compute only the v2 reward"):
        mtrl.get_suite("metaworld-mt10", "v1").fast_build(0, [0])
