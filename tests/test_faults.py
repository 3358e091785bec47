"""Fault tolerance: envs that raise or return NaN are rebuilt and their partial episode dropped;
a rollout worker process that dies is restarted and training still reaches its step budget."""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mtrl
from mtrl.collect.fragments import Collector
from mtrl.config import load_config
from mtrl.errors import EnvError
from mtrl.nn.network import PolicySpec
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT

pytestmark = pytest.mark.fault  # docs/reliability.md: every fault has its test

EPISODE = 10


class FlakyEnv(gym.Env):
    """Reward 1 per step, terminates after 10 steps; fails once (all processes) at step `fail_at`."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, mode: str, fail_at: int, marker: Path | None) -> None:
        self.mode, self.fail_at, self.marker = mode, fail_at, marker
        self.t = self.total = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.mode == "reset":
            raise RuntimeError("simulator failed to load")
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        reward = 1.0
        if self.marker is not None and self.total == self.fail_at and claim(self.marker):
            if self.mode == "raise":
                raise RuntimeError("simulator blew up")
            if self.mode == "nan":
                reward = float("nan")
            if self.mode == "exit":
                os._exit(1)  # the whole rollout worker process dies
        return np.full(3, self.t / EPISODE, np.float32), reward, self.t >= EPISODE, False, {}


def claim(marker: Path) -> bool:
    """True for exactly one caller over all processes (atomic create)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def build(faults: dict[int | str, tuple[str, int, Path]], task: int, seed: int) -> gym.Env:
    """faults[task], or faults["eval"] for the envs built with an evaluation seed (in faults["eval_seeds"])."""
    key: int | str = "eval" if seed in faults.get("eval_seeds", ()) else task
    mode, fail_at, marker = faults.get(key, ("none", 0, None))
    return FlakyEnv(mode, fail_at, marker)


def flaky_suite(faults: dict) -> mtrl.TaskSuite:
    return mtrl.TaskSuite(
        "flaky", ("steady", "fragile"), partial(build, faults), FlakyEnv.observation_space, FlakyEnv.action_space
    )


SPEC = PolicySpec((3,), 2, 2, True, "multihead", hidden=8, layers=1)


@pytest.mark.parametrize("mode", ["raise", "nan"])
def test_failed_env_is_rebuilt_and_its_partial_episode_dropped(tmp_path, mode, capsys):
    collector = Collector(flaky_suite({1: (mode, 4, tmp_path / "failed")}), [0, 1, 0, 1], [0, 1, 2, 3], SPEC)
    frag = collector.collect(30)
    said = {"raise": "RuntimeError: simulator blew up", "nan": "FloatingPointError: non-finite reward from the env"}
    assert capsys.readouterr().err.splitlines() == [  # the recovery is said, once
        f"mtrl: warning: suite 'flaky' task 'fragile': env step raised {said[mode]}; rebuilt it and dropped its "
        "episode (said once per env; faults/env_errors counts every failure)"
    ]
    assert frag.env_errors.tolist() == [0, 1, 0, 0]  # the marker lets only the first fragile env fail, once
    assert not frag.valid[:5, 1].any()  # the 3 steps before the failure, the failed step, and the reset step
    assert frag.valid[5:15, 1].all()  # then a whole fresh episode
    assert frag.valid[:10, 3].all()  # the other fragile slot is untouched
    ep = frag.episodes
    assert (ep.length == EPISODE).all() and (ep.ret == EPISODE).all()  # no truncated or NaN episode reported
    assert np.isfinite(frag.rewards[frag.valid]).all()


def test_env_that_keeps_failing_stops_with_a_clear_error():
    with pytest.raises(EnvError, match=r"task 'fragile': env reset failed 3 times in a row.*simulator failed to load"):
        Collector(flaky_suite({1: ("reset", 0, None)}), [0, 1], [0, 1], SPEC)


@pytest.mark.slow  # a worker restart spawns a fresh Ray process: ~1-3 min on 2 cores
def test_training_survives_a_dead_worker_and_a_raising_env(tmp_path):
    pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    faults = {0: ("exit", 25, tmp_path / "worker_died"), 1: ("raise", 7, tmp_path / "env_raised")}
    mtrl.register_suite("flaky-ray", lambda: flaky_suite(faults))
    cfg = load_config(
        ROOT / "configs/toy_mtppo.yaml",
        [
            "env.suite=flaky-ray",
            f"run_dir={tmp_path / 'run'}",
            "rollout.workers=2",
            "rollout.num_envs=4",
            "rollout.steps_per_env=20",
            "train.total_steps=400",
            "train.eval_episodes=1",
            "ray.num_cpus=2",
            "policy.hidden=8",
            "policy.layers=1",
        ],
    )
    run = train(cfg)
    _, ckpt = load_latest(run)
    assert (tmp_path / "worker_died").exists() and (tmp_path / "env_raised").exists()
    assert ckpt["env_steps"] >= 400
    assert ckpt["faults"] == {"worker_restarts": 1, "env_errors": 1, "nonfinite_updates": 0, "damaged_checkpoints": 0}


@pytest.mark.slow  # two trainings with 2 Ray workers, one with a worker restart: ~2-4 min on 2 cores
def test_a_worker_that_dies_during_an_evaluation_is_restarted_and_the_results_are_unchanged(tmp_path):
    """The first evaluation (before training) kills one of the two workers mid-episode: its share
    runs again on the restarted worker, and the whole run, every evaluation included, is the
    fault-free run's."""
    pytest.importorskip("ray")
    import ray.cloudpickle

    from mtrl.eval.curve import eval_seed
    from mtrl.eval.evaluate import episode_seeds

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    seeds = {int(s) for s in episode_seeds(flaky_suite({}), 2, eval_seed(0, 0))}  # the evaluation before training
    runs = {}
    for name, faults in (
        ("clean", {}),
        ("killed", {"eval": ("exit", 3, tmp_path / "worker_died"), "eval_seeds": seeds}),
    ):
        mtrl.register_suite(f"flaky-eval-{name}", partial(flaky_suite, faults))
        cfg = load_config(
            ROOT / "configs/toy_mtppo.yaml",
            [
                f"env.suite=flaky-eval-{name}",
                f"run_dir={tmp_path / name}",
                "rollout.workers=2",
                "rollout.num_envs=4",
                "rollout.steps_per_env=20",
                "train.total_steps=160",
                "train.eval_every=80",
                "train.eval_episodes=2",
                "ray.num_cpus=2",
                "policy.hidden=8",
                "policy.layers=1",
            ],
        )
        runs[name] = train(cfg)
    assert (tmp_path / "worker_died").exists(), "the fault did not fire"
    clean, killed = runs["clean"], runs["killed"]
    assert (killed / "eval_curve.csv").read_text() == (clean / "eval_curve.csv").read_text()
    assert json.loads((killed / "eval.json").read_text()) == json.loads((clean / "eval.json").read_text())
    assert load_latest(killed)[1]["faults"]["worker_restarts"] == 1


@pytest.mark.slow  # starts an embedded Ray with 2 workers
def test_an_env_that_fails_while_the_ray_workers_start_is_the_in_process_line(tmp_path, capfd):
    pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    mtrl.register_suite("flaky-start", lambda: flaky_suite({1: ("reset", 0, None)}))
    overrides = ["env.suite=flaky-start", "rollout.num_envs=4", "train.eval_episodes=0", "ray.num_cpus=2"]
    message = r"^suite 'flaky' task 'fragile': env reset failed 3 times in a row after rebuilding \(RuntimeError"
    for workers in (0, 2):
        cfg = load_config(
            ROOT / "configs/toy_mtppo.yaml",
            [*overrides, f"rollout.workers={workers}", f"run_dir={tmp_path / str(workers)}"],
        )
        with pytest.raises(EnvError, match=message):
            train(cfg)
    assert "Traceback" not in capfd.readouterr().err  # no worker traceback forwarded by Ray


def test_env_failures_are_said_on_the_console_at_once_then_at_most_once_a_minute(capsys, monkeypatch):
    from mtrl.run import logger

    clock = {"t": 1000.0}
    monkeypatch.setattr(logger.time, "monotonic", lambda: clock["t"])
    notice = logger.FailureNotice(every_s=60.0)
    notice.add(0, 0)
    assert capsys.readouterr().err == ""  # nothing failed: nothing said
    notice.add(2, 2)
    assert "mtrl: warning: 2 env failure(s)" in capsys.readouterr().err
    clock["t"] += 30
    notice.add(1, 3)
    assert capsys.readouterr().err == ""  # within the minute: held back
    clock["t"] += 31
    notice.add(1, 4)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mtrl: warning: 2 more env failure(s), each recovered the same way (4 in all)"]
