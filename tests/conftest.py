"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m mtrl ARGS` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mtrl", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def train_interrupted(monkeypatch: pytest.MonkeyPatch, after: int, cfg) -> None:  # noqa: ANN001 - a mtrl Config
    """Train `cfg` and stop it like Ctrl-C right after iteration `after` has been logged (before
    that iteration's evaluation and checkpoint); the trainer saves a checkpoint on the way out."""
    from mtrl.run.logger import Logger
    from mtrl.run.trainer import train

    calls = {"n": 0}
    log_iteration = Logger.log_iteration

    def stop(self, *args, **kwargs):  # noqa: ANN001, ANN202
        log_iteration(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(Logger, "log_iteration", stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(Logger, "log_iteration", log_iteration)


@pytest.fixture
def toy_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a fast in-process toy run in a temporary run directory."""
    return [f"run_dir={tmp_path / 'run'}", "rollout.workers=0", "train.eval_episodes=2"]


@contextlib.contextmanager
def two_node_cluster() -> Iterator[tuple[str, dict]]:
    """A Ray head and a second node on loopback, one CPU each (token auth on); yields (address,
    the environment for commands that join it), and stops both nodes afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"
        for _ in range(60):  # wait for the head's GCS before the second node joins
            if (
                subprocess.run([ray_bin, "status", f"--address={address}"], env=env, capture_output=True).returncode
                == 0
            ):
                break
            time.sleep(2)
        nodes.append(
            subprocess.Popen(
                [ray_bin, "start", f"--address={address}", *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(60):
            out = subprocess.run(
                [ray_bin, "status", f"--address={address}"], env=env, capture_output=True, text=True
            ).stdout
            if out.count(" node_") >= 2:
                break
            time.sleep(2)
        yield address, env
    finally:
        for p in reversed(nodes):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
