"""Reliability: exact resume, kills at random moments, non-finite guards."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from mtrl.config import load_config
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT, train_interrupted

pytestmark = pytest.mark.fault  # docs/reliability.md: every fault has its test


def _states_equal(a: dict, b: dict) -> bool:
    """Deep equality of checkpoint entries (tensors bit-for-bit)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b) or torch.allclose(a, b, 0, 0, equal_nan=True))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b  # NaN: "no data yet" in the curriculum's scores
    return a == b


EXACT_CASES = {
    "ppo-toy": ("configs/toy_mtppo.yaml", ["rollout.num_envs=6", "rollout.steps_per_env=20", "train.total_steps=720"]),
    "ppo-minigrid-curriculum": (
        "configs/minigrid_mt5_curriculum.yaml",
        [
            "rollout.num_envs=5",
            "rollout.steps_per_env=32",
            "train.total_steps=800",
            "curriculum.name=learning_progress",
            "policy.arch=mlp",
        ],
    ),
    "sac-toy-point": (
        "configs/toy_point_sac.yaml",
        ["rollout.num_envs=4", "rollout.steps_per_env=10", "train.total_steps=400", "sac.warmup_steps=80"],
    ),
    "ppo-moore-paper-protocol": (
        "configs/moore_paper/minigrid_mt3_moore.yaml",
        ["rollout.steps_per_env=40", "train.total_steps=600", "ppo.minibatch_size=50", "ppo.epochs=2"],
    ),
    "mt_grpo-toy": (
        "configs/minigrid_mt3_mt_grpo.yaml",
        ["env.suite=toy-mt3", "grpo.group_size=3", "grpo.groups=3", "train.total_steps=600", "policy.arch=mlp"],
    ),
}


@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_interrupt_then_resume_is_bit_exact(case, tmp_path, monkeypatch):
    """N iterations, stop (Ctrl-C saves a checkpoint), resume, finish: every parameter, optimiser
    moment, RNG state, curriculum and replay entry equals those of an uninterrupted run."""
    config, extra = EXACT_CASES[case]
    common = [*extra, "rollout.workers=0", "train.eval_episodes=0", "train.checkpoint_every=1000", "seed=5"]
    straight = train(load_config(ROOT / config, [*common, f"run_dir={tmp_path / 'straight'}"]))
    _, want = load_latest(straight)

    train_interrupted(monkeypatch, 3, load_config(ROOT / config, [*common, f"run_dir={tmp_path / 'stopped'}"]))
    _, mid = load_latest(tmp_path / "stopped")
    assert 0 < mid["iteration"] < want["iteration"]
    train(load_config(ROOT / config, [*common, f"resume={tmp_path / 'stopped'}"]))
    _, got = load_latest(tmp_path / "stopped")

    for key in (
        "env_steps",
        "iteration",
        "policy",
        "optimizer",
        "rng_torch",
        "rng_learner",
        "curriculum",
        "task_steps",
        "collector",
    ):
        assert _states_equal(got[key], want[key]), key


def _newest_steps(run) -> int:
    from mtrl.run.checkpoint import list_checkpoints

    return int(load_latest(run)[1]["env_steps"]) if list_checkpoints(run) else 0


def test_kill_9_at_random_moments_then_resume(tmp_path):
    """SIGKILL a real training process 5 times at random moments, 1-4 s after it starts training
    (checkpoints every iteration of about 1 s, so kills land before, between, in and near writes):
    the newest checkpoint always loads, resume always works, and the step counter never goes
    backwards; a sixth start finishes the run 20k steps further. A start killed before it made its run directory
    is started again as new, as a user would."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "mtrl",
        "train",
        str(ROOT / "configs/toy_mtppo.yaml"),
        "rollout.workers=0",
        "train.checkpoint_every=1",
        "train.total_steps=10000000",
        "train.eval_episodes=0",
        "learner.threads=1",
    ]
    rng = np.random.default_rng(0)
    seen, resumes = 0, 0
    for attempt in range(6):
        events = len(list((run / "tb").glob("events.*"))) if (run / "tb").is_dir() else 0
        cmd = args + ([f"resume={run}"] if run.is_dir() else [f"run_dir={run}"])
        if attempt == 5:  # the last start ends 20k steps after where the kills left it (the target is unreachable)
            cmd.append(f"train.total_steps={seen + 20000}")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if attempt < 5:
            deadline = time.time() + 300  # a new event file: this start is about to train (imports are slow under load)
            while (
                proc.poll() is None
                and time.time() < deadline
                and (not (run / "tb").is_dir() or len(list((run / "tb").glob("events.*"))) <= events)
            ):
                time.sleep(0.05)
            time.sleep(float(rng.uniform(1.0, 4.0)))
            proc.kill()
            out = proc.communicate()[0]
            assert proc.returncode == -9, out
        else:
            out = proc.communicate(timeout=900)[0]
            assert proc.returncode == 0, out
        resumes += "resuming" in out
        steps = _newest_steps(run)
        assert steps >= seen, f"attempt {attempt}: newest checkpoint went back from {seen} to {steps}"
        seen = steps
    assert seen > 20000 and resumes >= 1
    assert not list((run / "checkpoints").glob(".tmp_*"))


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A process killed in the middle of writing a large checkpoint leaves only a temp file; the
    previous checkpoint stays the newest loadable one, and a resume removes the temp file."""
    import subprocess
    import sys
    import time

    from mtrl.run.checkpoint import list_checkpoints, remove_partial_writes, save_checkpoint

    payload = {
        "policy": {},
        "optimizer": {},
        "env_steps": 100,
        "iteration": 1,
        "spec": {},
        "tasks": [],
        "config": "{}",
        "rng_torch": torch.zeros(1),
        "rng_learner": torch.zeros(1),
    }
    save_checkpoint(tmp_path, payload, 100, keep=3)
    writer = (
        "import torch, sys; from mtrl.run.checkpoint import save_checkpoint; "
        "p = dict(policy={'w': torch.ones(400_000_000, dtype=torch.uint8)}, optimizer={}, env_steps=200, iteration=2, "
        "spec={}, tasks=[], config='{}', rng_torch=torch.zeros(1), rng_learner=torch.zeros(1)); "
        "save_checkpoint(sys.argv[1], p, 200, keep=3)"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)], cwd=ROOT)
    folder = tmp_path / "checkpoints"
    deadline = time.time() + 120
    while not any(p.stat().st_size > 10_000_000 for p in folder.glob(".tmp_*")) and time.time() < deadline:
        time.sleep(0.02)  # wait until it is well into the write
    proc.kill()
    proc.wait()
    assert list(folder.glob(".tmp_*")), "the kill did not land during the write"
    path, data = load_latest(tmp_path)
    assert data["env_steps"] == 100 and len(list_checkpoints(tmp_path)) == 1
    assert remove_partial_writes(tmp_path) == 1 and not list(folder.glob(".tmp_*"))


def test_nonfinite_steps_are_skipped_counted_and_stop_the_run():
    from mtrl.algos.base import NonFiniteGuard
    from mtrl.errors import MtrlError

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    guard = NonFiniteGuard(limit=3)
    assert guard.step(opt, (w * float("nan")).sum(), [w]) is None  # NaN loss
    assert guard.step(opt, (w * torch.tensor([1.0, float("inf"), 1.0])).sum(), [w]) is None  # inf loss
    assert torch.equal(w.detach(), torch.ones(3)) and guard.skipped == 2
    assert guard.step(opt, (w**2).sum(), [w]) is not None and guard.streak == 0  # a finite step resets the streak
    assert not torch.equal(w.detach(), torch.ones(3))
    w.register_hook(lambda g: g * float("nan"))  # finite loss, NaN gradient
    before = w.detach().clone()
    assert guard.step(opt, (w**2).sum(), [w]) is None and torch.equal(w.detach(), before)
    guard.step(opt, (w**2).sum(), [w])
    with pytest.raises(MtrlError, match="3 optimiser steps in a row"):
        guard.step(opt, (w**2).sum(), [w])
    assert guard.skipped == 5


def test_a_diverging_run_stops_cleanly_with_finite_checkpoints(tmp_path):
    """ppo.lr=1e30 blows the policy up after one update (16 minibatch steps per iteration): every
    NaN step is skipped and counted, the run stops with exit 2 and one line (on its own line,
    after the progress bar), and its checkpoints hold finite numbers."""
    from tests.conftest import run_cli

    out = run_cli(
        "train",
        "configs/toy_mtppo.yaml",
        f"run_dir={tmp_path}",
        "rollout.workers=0",
        "ppo.lr=1e30",
        "train.checkpoint_every=1",
        "train.total_steps=40000",
        "train.max_nonfinite_updates=40",
    )
    lines = [ln for ln in out.stderr.splitlines() if "mtrl: error" in ln]
    assert (
        out.returncode == 2 and len(lines) == 1 and lines[0].startswith("mtrl: error: 40 optimiser steps in a row")
    ), out.stderr
    _, ckpt = load_latest(tmp_path)
    assert all(torch.isfinite(v).all() for v in ckpt["policy"].values())
    assert ckpt["faults"]["nonfinite_updates"] >= 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_real_signal_mid_iteration_stops_at_the_boundary_and_resumes_exactly(tmp_path, sig):
    """SIGINT or SIGTERM to `mtrl train` lands wherever the run is (mid-collection, mid-update);
    the run finishes that iteration, saves a checkpoint, exits 130, and its resume equals an
    uninterrupted run bit for bit."""
    import subprocess
    import sys
    import time

    common = [
        "rollout.workers=0",
        "train.eval_episodes=0",
        "train.checkpoint_every=100000",
        "seed=2",
        "rollout.num_envs=6",
        "rollout.steps_per_env=20",
        "train.total_steps=60000",
        "learner.threads=1",
    ]
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrl", "train", str(ROOT / "configs/toy_mtppo.yaml"), *common, f"run_dir={stopped}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((stopped / "tb").glob("events.*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # well inside training
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "stopping after this iteration" in out and "interrupted; saved" in out, out[
        -2000:
    ]
    _, mid = load_latest(stopped)
    assert 0 < mid["env_steps"] < 60000
    train(load_config(ROOT / "configs/toy_mtppo.yaml", [*common, f"resume={stopped}"]))
    straight = train(load_config(ROOT / "configs/toy_mtppo.yaml", [*common, f"run_dir={tmp_path / 'straight'}"]))
    _, got = load_latest(stopped)
    _, want = load_latest(straight)
    for key in ("env_steps", "iteration", "policy", "optimizer", "rng_torch", "rng_learner", "collector"):
        assert _states_equal(got[key], want[key]), key
