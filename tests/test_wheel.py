"""The wheel as a pip user gets it: built from this tree, installed into a fresh virtual
environment outside the source tree, it lists its packaged configs and trains one by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str | Path, cwd: Path, timeout: int = 1200) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_the_wheel_installs_elsewhere_and_trains_a_packaged_config(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("mtrl-*.whl")
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    # torch pinned as the README does (a CPU build where one is at hand); the rest from the index
    run(venv / "bin/pip", "install", "-q", "torch==2.13.0", wheel, cwd=tmp_path)
    configs = run(venv / "bin/mtrl", "configs", cwd=work)
    assert "toy_mtppo" in configs and "moore_paper/minigrid_mt3_moore" in configs
    where = run(
        venv / "bin/python", "-c", "import mtrl, mtrl_configs; print(mtrl.__file__, mtrl_configs.__file__)", cwd=work
    )
    assert str(ROOT) not in where and str(venv) in where  # the installed copy, not this tree
    run(venv / "bin/mtrl", "train", "toy_mtppo", "rollout.workers=0", "train.total_steps=3000", "run_dir=run", cwd=work)
    result = json.loads((work / "run/eval.json").read_text())
    assert result["suite"] == "toy-mt3" and len(result["tasks"]) == 3
