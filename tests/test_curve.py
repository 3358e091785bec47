"""Evaluation during training (train.eval_every): the curve, its seeds, resume, and plotting it."""

from __future__ import annotations

import csv

import pytest
import torch

from mtrl.config import load_config
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli, train_interrupted

TOY = ROOT / "configs/toy_mtppo.yaml"
COMMON = [
    "rollout.workers=0",
    "rollout.num_envs=6",
    "rollout.steps_per_env=20",
    "train.total_steps=1200",
    "train.eval_episodes=3",
    "train.checkpoint_every=1000",
    "rollout.autoreset_mode=same_step",
    "seed=3",
]


def _rows(run) -> list[list[str]]:
    with open(run / "eval_curve.csv", newline="") as f:
        return list(csv.reader(f))


def test_eval_curve_rows_and_unchanged_training_trajectory(tmp_path):
    """Rows before training and after every eval_every env steps; evaluating does not move the
    training run by one bit (own env seeds, forked torch RNG)."""
    with_eval = train(load_config(TOY, [*COMMON, "train.eval_every=240", f"run_dir={tmp_path / 'a'}"]))
    without = train(load_config(TOY, [*COMMON, f"run_dir={tmp_path / 'b'}"]))
    rows = _rows(with_eval)
    assert rows[0][:4] == ["iteration", "env_steps", "mean_return", "mean_success"]
    assert [int(r[1]) for r in rows[1:]] == list(range(0, 1201, 240))  # 120 steps per iteration
    assert [int(r[0]) for r in rows[1:]] == [0, 2, 4, 6, 8, 10]
    assert not (without / "eval_curve.csv").exists()
    _, a = load_latest(with_eval)
    _, b = load_latest(without)
    for key in ("policy", "optimizer", "rng_torch", "rng_learner", "collector"):
        assert str(a[key]) == str(b[key]), key
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    # the final evaluation is the curve's last point
    import json

    final = json.loads((with_eval / "eval.json").read_text())
    assert float(rows[-1][2]) == pytest.approx(final["mean_return"], rel=1e-5)


def test_resumed_run_continues_the_curve_without_duplicates(tmp_path, monkeypatch):
    """Ctrl-C after iteration 3 (before that iteration's evaluation), plus a row a kill left after
    the checkpoint: the resumed curve equals the uninterrupted one, row for row."""
    ov = [*COMMON, "train.eval_every=120"]
    straight = train(load_config(TOY, [*ov, f"run_dir={tmp_path / 'straight'}"]))
    train_interrupted(monkeypatch, 3, load_config(TOY, [*ov, f"run_dir={tmp_path / 'stopped'}"]))
    stopped = tmp_path / "stopped"
    assert [int(r[1]) for r in _rows(stopped)[1:]] == [0, 120, 240]  # iteration 3's evaluation never ran
    with open(stopped / "eval_curve.csv", "a") as f:
        f.write("9,1080,0.5,0.5,1,1,1,0,0,0\n7,84")  # a row from after the checkpoint, and a torn line
    train(load_config(TOY, [*ov, f"resume={stopped}"]))
    assert _rows(stopped) == _rows(straight)


def test_plot_source_eval_with_a_reference_curve(tmp_path):
    run = train(load_config(TOY, [*COMMON, "train.eval_every=240", f"run_dir={tmp_path / 'runs' / 's0'}"]))
    ref = tmp_path / "official.csv"
    ref.write_text("update,env_steps,sequence-0,sequence-1,sequence-2,mean\n0,0,0,0,0,0\n1,600,1,2,3,2\n")
    out = tmp_path / "curves.png"
    res = run_cli(
        "plot",
        "--source",
        "eval",
        "--metric",
        "return",
        "--per-task",
        f"toy={tmp_path}/runs/s*",
        "--reference",
        f"official={ref}",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 10_000
    bad = tmp_path / "bad.csv"
    bad.write_text("step,value\n1,2\n")
    res = run_cli("plot", "--source", "eval", str(run), "--reference", f"x={bad}", "--out", str(out))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "env_steps column" in res.stderr
    res = run_cli("plot", "--source", "eval", f"x={tmp_path}/nothing*", "--out", str(out))
    assert res.returncode == 2 and "matches nothing" in res.stderr
