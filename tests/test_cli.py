"""User errors at the command line: exit code 2 and one line naming the problem, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "configs/does_not_exist.yaml"], "config file not found: configs/does_not_exist.yaml"),
        (["train", "configs/toy_mtppo.yaml", "rollout.wrokers=2"], "unknown config key 'rollout.wrokers'"),
        (["train", "configs/toy_mtppo.yaml", "env.suite=minigrid-mt4"], "unknown suite 'minigrid-mt4'"),
        (["train", "configs/toy_mtppo.yaml", "train.total_steps=lots"], "train.total_steps: expected an integer"),
        (["train", "configs/toy_mtppo.yaml", "rollout.workers=5"], "must be a multiple of rollout.workers=5"),
        (["train", "configs/toy_mtppo.yaml", "env.max_episode_steps=9"], "exceeds suite 'toy-mt3''s limit of 8"),
        (
            ["train", "configs/toy_mtppo.yaml", "policy.arch=moore", "policy.moore.num_experts=500"],
            "policy.moore.num_experts=500 exceeds the expert feature size 400",
        ),
        (["train"], "needs a config file"),
        (["eval", "nowhere"], "no such checkpoint or run directory: nowhere"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, fragment, tmp_path):
    """Each error comes before anything is written: no run directory is created."""
    if args[0] == "train" and len(args) > 1:
        out = run_cli(*args, f"run_dir={tmp_path / 'run'}")
    else:
        out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_empty_run_dir_has_no_checkpoint(tmp_path):
    out = run_cli("eval", str(tmp_path))
    assert out.returncode == 2 and "has no checkpoint" in out.stderr


def test_help_lists_every_config_key():
    out = run_cli("train", "--help")
    assert out.returncode == 0
    for key in ("seed", "run_dir", "train.total_steps", "rollout.workers", "ppo.task_norm", "learner.device"):
        assert f"  {key} " in out.stdout
