"""One writer per run directory (mtrl/run/lock.py): a second `mtrl train` or resume is refused with
one line naming the holder, a holder killed with SIGKILL blocks nothing, a child given the locked
descriptor shares it, and reading a run (eval, verify) needs no lock and writes nothing."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrl.config import load_config
from mtrl.run.checkpoint import list_checkpoints, load_latest
from mtrl.run.lock import FD_ENV, LOCK_FILE, RunDirBusy, RunLock
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.fault  # docs/reliability.md: every fault has its test

TOY = ROOT / "configs/toy_mtppo.yaml"
LONG = ["rollout.workers=0", "train.total_steps=10000000", "train.eval_episodes=0", "train.checkpoint_every=1"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtrl", "train", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C a training process (it saves a checkpoint) and collect its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=120)
    finally:
        proc.kill()


def _busy_line(stderr: str, pid: int, run: Path) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"mtrl: error: run directory {run} is in use by PID {pid} on host "), lines[0]
    assert socket.gethostname() in lines[0]


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    """Two `mtrl train` on one run_dir started together: exactly one trains, the other exits 2 with
    one line naming the first's PID; a resume while it trains is refused the same way, and neither
    refused process writes anything."""
    run = tmp_path / "run"
    a, b = _start(str(TOY), f"run_dir={run}", *LONG), _start(str(TOY), f"run_dir={run}", *LONG)
    try:
        _wait(lambda: a.poll() is not None or b.poll() is not None, 180, "one of the two to be refused")
        loser, winner = (a, b) if a.poll() is not None else (b, a)
        assert loser.returncode == 2 and winner.poll() is None
        _busy_line(loser.stderr.read(), winner.pid, run)  # type: ignore[union-attr]
        assert "mtrl: ppo/multihead" not in loser.stdout.read()  # type: ignore[union-attr]
        _wait(lambda: list_checkpoints(run), 180, "a checkpoint")
        before = {p.name: p.stat().st_mtime_ns for p in [run / "config.yaml", *sorted((run / "tb").iterdir())]}
        resume = run_cli("train", f"resume={run}", "train.total_steps=20000000", timeout=180)
        assert resume.returncode == 2
        _busy_line(resume.stderr, winner.pid, run)
        after = {p.name: p.stat().st_mtime_ns for p in [run / "config.yaml", *sorted((run / "tb").iterdir())]}
        assert set(after) == set(before) and after["config.yaml"] == before["config.yaml"]  # no new event file either
        assert winner.poll() is None
    finally:
        out, _ = _stop(a)
        _stop(b)
    assert winner.returncode == 130, out


def test_a_lock_left_by_a_sigkilled_process_does_not_block_a_resume(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _start(str(TOY), f"run_dir={run}", *LONG)
    try:
        _wait(lambda: list_checkpoints(run), 180, "a checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert f'"pid": {proc.pid}' in (run / LOCK_FILE).read_text()  # the file stays, naming the dead holder
    steps = load_latest(run)[1]["env_steps"]
    train(load_config(run / "config.yaml", [f"resume={run}", f"train.total_steps={steps + 500}"]))
    assert load_latest(run)[1]["env_steps"] >= steps + 500
    assert f'"pid": {os.getpid()}' in (run / LOCK_FILE).read_text()


def test_eval_and_verify_work_on_a_read_only_run_and_change_nothing(tmp_path, toy_overrides):
    run = train(load_config(TOY, toy_overrides + ["train.total_steps=500"]))
    files = sorted(p for p in run.rglob("*"))
    modes = {p: p.stat().st_mode for p in [run, *files]}
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
    for p in modes:
        p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        ev = run_cli("eval", str(run), "--episodes", "1")
        assert ev.returncode == 0, ev.stderr
        ver = run_cli("verify", str(run))
        assert ver.returncode == 0 and ver.stdout.startswith("mtrl: verify: ok:"), ver.stdout + ver.stderr
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    # as root chmod stops nothing, so the run is also compared before and after
    assert sorted(run.rglob("*")) == files
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files} == before


def test_one_lock_per_run_dir_shared_with_a_child_given_the_descriptor(tmp_path):
    """In one process a second open of the lock is refused (flock locks are per open file); a child
    given the locked descriptor in MTRL_RUN_LOCK_FD takes the same lock and hands the lock file back
    naming its parent, one without it is refused."""
    child = (
        "import sys; from mtrl.run.lock import RunLock, RunDirBusy\n"
        "try:\n    RunLock.acquire(sys.argv[1]).release()\nexcept RunDirBusy as e:\n    print(e); sys.exit(75)\n"
    )
    with RunLock.acquire(tmp_path) as lock:
        with pytest.raises(RunDirBusy, match=f"is in use by PID {os.getpid()} on host"):
            RunLock.acquire(tmp_path)
        cmd = [sys.executable, "-c", child, str(tmp_path)]
        shared = subprocess.run(cmd, env={**os.environ, FD_ENV: str(lock.fd)}, pass_fds=(lock.fd,), cwd=ROOT)
        assert shared.returncode == 0
        alone = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert alone.returncode == 75 and f"in use by PID {os.getpid()} on host" in alone.stdout  # the parent again
    RunLock.acquire(tmp_path).release()  # released on leaving the block
