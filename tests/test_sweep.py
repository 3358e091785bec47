"""`mtrl sweep`: methods x seeds as Ray tasks on real Ray, interrupted, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mtrl.config import load_config
from mtrl.errors import MtrlError
from mtrl.run.checkpoint import load_latest
from mtrl.run.grid import parse_seeds
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli, two_node_cluster

SHARED = ["train.eval_episodes=2", "rollout.num_envs=6", "rollout.steps_per_env=20"]


def _configs(tmp: Path) -> dict[str, Path]:
    """Two toy methods: a quick one, and a long one (about 20 s on one core)."""
    base = yaml.safe_load((ROOT / "configs/toy_mtppo.yaml").read_text())
    out = {}
    for name, steps, every in (("quick", 1200, 1000), ("long", 150_000, 1000)):
        cfg = {**base, "train": {**base["train"], "total_steps": steps, "checkpoint_every": every}}
        out[name] = tmp / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(cfg))
    return out


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _training_pids(run_dir: Path) -> list[int]:
    """The `mtrl train` processes training `run_dir` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in args and f"run_dir={run_dir.resolve()}".encode() in args:
            pids.append(int(proc.name))
    return pids


def test_parse_seeds():
    assert parse_seeds(["0-3", "7", "2,9"]) == [0, 1, 2, 3, 7, 9]
    for bad in ("3-1", "a", "-2"):
        with pytest.raises(MtrlError, match="--seeds"):
            parse_seeds([bad])


@pytest.mark.slow  # 4 minutes on 2 cores: two sweeps with a kill and an interrupt, and the separate runs
def test_sweep_interrupted_killed_and_resumed_equals_separate_runs(tmp_path):
    """2 methods x 2 seeds on the embedded local Ray, 2 at a time. A training process is killed
    with SIGKILL (the sweep starts it again and counts a retry), then the sweep is interrupted
    (SIGINT) while a run is half done (the run saves a checkpoint on the way out), then run again:
    finished runs are skipped, the rest resume and complete, and every run equals a separate
    `mtrl train` with the same seed, bit for bit."""
    cfgs, out = _configs(tmp_path), tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "mtrl",
        "sweep",
        f"quick={cfgs['quick']}",
        f"long={cfgs['long']}",
        "--seeds",
        "0-1",
        "--out",
        str(out),
        "--num-cpus",
        "2",
        "--",
        *SHARED,
    ]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    long0 = out / "long" / "s0"
    try:
        _wait(lambda: _training_pids(long0) and (long0 / "tb").is_dir(), 240, "long/s0 to train")
        for pid in _training_pids(long0):
            os.kill(pid, signal.SIGKILL)
        state = out / "sweep.json"
        _wait(
            lambda: state.exists() and json.loads(state.read_text())["runs"]["long/s0"]["retries"] == 1, 60, "a retry"
        )
        started = lambda: (long0 / "train.log").read_text(errors="replace").count("mtrl: ppo/multihead")  # noqa: E731
        _wait(
            lambda: (out / "quick" / "s0" / "eval.json").exists() and started() == 2,
            240,
            "quick/s0 to finish and long/s0 to train again",
        )
        time.sleep(1)
        first.send_signal(signal.SIGINT)
        log = first.communicate(timeout=120)[0]
    finally:
        first.kill()
    assert first.returncode == 130, log
    _wait(lambda: not _training_pids(long0), 60, "the interrupted run to save and exit")
    assert not (long0 / "eval.json").exists() and "interrupted; saved" in (long0 / "train.log").read_text()
    finished = {
        r: (out / r / "eval.json").stat().st_mtime_ns
        for r in ("quick/s0", "quick/s1", "long/s1")
        if (out / r / "eval.json").exists()
    }
    assert "quick/s0" in finished

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    for run, mtime in finished.items():
        assert f"{run:<28} skipped" in second.stdout and (out / run / "eval.json").stat().st_mtime_ns == mtime
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert runs["long/s0"]["retries"] == 1 and {r["status"] for r in runs.values()} <= {"done", "skipped"}
    assert "| quick | 2 |" in second.stdout and (out / "report" / "summary.csv").exists()

    for method in ("quick", "long"):
        for seed in (0, 1):
            alone = train(
                load_config(
                    cfgs[method],
                    [
                        f"seed={seed}",
                        f"run_dir={tmp_path / 'alone' / method / str(seed)}",
                        "rollout.workers=0",
                        "learner.threads=1",
                        *SHARED,
                    ],
                )
            )
            _, want = load_latest(alone)
            _, got = load_latest(out / method / f"s{seed}")
            assert got["env_steps"] == want["env_steps"]
            assert all(torch.equal(got["policy"][k], want["policy"][k]) for k in want["policy"]), (method, seed)
            assert json.loads((alone / "eval.json").read_text()) == json.loads(
                (out / method / f"s{seed}" / "eval.json").read_text()
            )


def test_sweep_bad_input_is_one_line_before_any_run(tmp_path):
    for args, match in (
        (["x=nope.yaml"], "config file not found"),
        (["x=configs/toy_mtppo.yaml", "--seeds", "4-2"], "--seeds"),
        (["x=configs/toy_mtppo.yaml", "--", "ppo.lrr=1"], "unknown config key 'ppo.lrr'"),
        (["x=configs/toy_mtppo.yaml", "x=configs/toy_mtppo.yaml"], "given twice"),
        (["configs/toy_mtppo.yaml"], "expected NAME=CONFIG"),
    ):
        res = run_cli("sweep", "--out", str(tmp_path / "out"), *args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and match in res.stderr, (args, res.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sweep_on_a_two_node_cluster(tmp_path):
    """`mtrl sweep --address` on a head and a worker node on loopback, one CPU each: both nodes run runs."""
    cfgs, out = _configs(tmp_path), tmp_path / "sweep"
    with two_node_cluster() as (address, env):
        start = time.monotonic()
        res = run_cli(
            "sweep",
            f"quick={cfgs['quick']}",
            "--seeds",
            "0-3",
            "--out",
            str(out),
            "--address",
            address,
            "--",
            *SHARED,
            env=env,
            timeout=600,
        )
        wall_min = (time.monotonic() - start) / 60
    assert res.returncode == 0, res.stdout + res.stderr
    assert all((out / "quick" / f"s{s}" / "eval.json").exists() for s in range(4))
    assert "| quick | 4 |" in res.stdout
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert len({r["node"] for r in runs.values()}) == 2, runs
    # minutes count training, not the time a run's task waited for a CPU: 4 runs on 2 CPUs fit in 2 x the wall-clock
    assert all(r["minutes"] > 0 for r in runs.values()) and sum(r["minutes"] for r in runs.values()) <= 2 * wall_min, (
        runs
    )
