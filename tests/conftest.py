"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mtrl ARGS` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mtrl", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)  # fmt: skip


@pytest.fixture
def toy_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a fast in-process toy run in a temporary run directory."""
    return [f"run_dir={tmp_path / 'run'}", "rollout.workers=0", "train.eval_episodes=2"]
