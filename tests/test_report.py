"""Evaluation reports: IQM and stratified-bootstrap CIs, `mtrl eval` on many runs, `mtrl plot`,
`mtrl eval --video`, and clean errors for runs without checkpoints or with corrupt events."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mtrl.config import load_config
from mtrl.eval.stats import aggregate, mean_ci
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_iqm_worked_case():
    est = aggregate(np.array([[0, 1, 0.5, 0.9], [0.2, 0.8, 0.6, 1.0]]))
    # the 8 scores sorted: 0 .2 .5 .6 .8 .9 1 1; the middle half .5 .6 .8 .9 averages 0.7
    assert est["iqm"].point == pytest.approx(0.7)
    assert est["mean"].point == pytest.approx(0.625) and est["median"].point == pytest.approx(0.7)
    for e in est.values():
        assert e.lo <= e.point <= e.hi and e.lo < e.hi


def test_bootstrap_is_stratified_by_task():
    """Runs are resampled within each task, so every replicate holds one task-0 and one task-1
    score per run: the mean stays within [5, 6]. Resampling the pooled scores would not."""
    est = aggregate(np.array([[0.0, 10.0], [1.0, 11.0]]), reps=4000)
    assert 5.0 <= est["mean"].lo < est["mean"].hi <= 6.0


def test_one_run_has_a_point_interval_and_bad_shapes_are_refused():
    est = aggregate(np.array([[0.1, 0.4, 0.9]]))
    assert all(e.lo == e.point == e.hi for e in est.values())
    with pytest.raises(ValueError, match="runs, tasks"):
        aggregate(np.zeros(3))


def test_mean_ci_band_over_runs():
    values = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 4.0]])
    mean, lo, hi = mean_ci(values)
    assert mean == pytest.approx([1.0, 1.0, 3.0])
    assert lo[1] == hi[1] == 1.0  # runs agree: no spread
    assert (lo <= mean).all() and (mean <= hi).all() and lo[0] == 0.0 and hi[0] == 2.0


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("runs")
    return [
        train(
            load_config(
                ROOT / "configs/toy_mtppo.yaml",
                [
                    f"run_dir={base / f's{s}'}",
                    f"seed={s}",
                    "rollout.workers=0",
                    "train.total_steps=3000",
                    "train.eval_episodes=0",
                ],
            )
        )
        for s in (0, 1)
    ]


def test_eval_many_runs_writes_report_files(toy_runs, tmp_path):
    a, b = toy_runs
    out = run_cli(
        "eval",
        f"fast={a}",
        f"fast={b}",
        f"other={b}",
        "--episodes",
        "2",
        "--metric",
        "return",
        "--out",
        str(tmp_path / "rep"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert out.returncode == 0, out.stderr
    assert "| fast | 2 |" in out.stdout and "| other | 1 |" in out.stdout and "iqm [95% CI]" in out.stdout
    with open(tmp_path / "rep/summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["fast", "other"] and rows[0]["runs"] == "2"
    assert set(rows[0]) >= {"mean", "mean_lo", "mean_hi", "median", "iqm", "iqm_lo", "iqm_hi", "metric"}
    assert float(rows[0]["iqm_lo"]) <= float(rows[0]["iqm"]) <= float(rows[0]["iqm_hi"])
    with open(tmp_path / "rep/runs.csv", encoding="utf-8") as f:
        per_run = list(csv.DictReader(f))
    assert len(per_run) == 3 * 3 and set(per_run[0]) >= {"method", "run", "task", "mean_return", "success_rate"}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == json.loads((tmp_path / "rep/report.json").read_text())
    assert data["metric"] == "mean return" and [m["method"] for m in data["methods"]] == ["fast", "other"]
    # the 'other' method is run b alone: its mean is run b's mean return over tasks
    assert data["methods"][1]["mean"]["point"] == pytest.approx(data["runs"][2]["mean_return"])
    assert (tmp_path / "rep/report.md").read_text().startswith("Suite `toy-mt3`")


def test_plot_writes_png_for_the_mean_and_per_task(toy_runs, tmp_path):
    a, b = toy_runs
    for extra, name in (([], "mean.png"), (["--per-task"], "tasks.png")):
        out = run_cli("plot", str(a), f"b={b}", "--out", str(tmp_path / name), *extra)
        assert out.returncode == 0, out.stderr
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_plot_and_eval_errors_are_one_clean_line(toy_runs, tmp_path):
    corrupt = tmp_path / "corrupt"
    (corrupt / "tb").mkdir(parents=True)
    (corrupt / "tb" / "events.out.tfevents.1.host").write_bytes(b"\x00\x17not an event file" * 8)
    (tmp_path / "empty").mkdir()
    cases = [
        (["plot", str(corrupt)], "hold no readable scalars (corrupt or empty)"),
        (["plot", str(tmp_path / "empty")], "has no TensorBoard event files"),
        (["plot", str(toy_runs[0]), "--metric", "success", "--smooth", "0"], "--smooth must be >= 1"),
        (["eval", str(tmp_path / "empty")], "has no checkpoint"),
        (["eval", str(toy_runs[0]), str(tmp_path / "empty")], "has no checkpoint"),
    ]
    for args, fragment in cases:
        out = run_cli(*args, "--out", str(tmp_path / "x"))
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and len(lines) == 1 and fragment in lines[0], (args, out.stderr)
    assert not (tmp_path / "x").exists()  # nothing written on error


def test_eval_is_deterministic_given_the_seed(toy_runs):
    """Same seed, same numbers; Ray workers give these same numbers too (tests/test_workers.py)."""
    import torch

    from mtrl.eval.evaluate import evaluate
    from mtrl.run.checkpoint import load_latest, policy_from_checkpoint

    policy, suite, _ = policy_from_checkpoint(load_latest(toy_runs[0])[1], torch.device("cpu"))
    whole = evaluate(policy, suite, 5, seed=3).to_json()
    assert evaluate(policy, suite, 5, seed=3).to_json() == whole
    assert evaluate(policy, suite, 5, seed=4).to_json() != whole


def test_video_has_one_frame_per_step_plus_reset(tmp_path):
    pytest.importorskip("minigrid")
    import imageio.v2 as imageio

    run = train(
        load_config(
            ROOT / "configs/minigrid_mt3_mtppo.yaml",
            [
                f"run_dir={tmp_path / 'mg'}",
                "rollout.workers=0",
                "rollout.num_envs=3",
                "rollout.steps_per_env=32",
                "train.total_steps=96",
                "env.max_episode_steps=5",
                "train.eval_episodes=0",
            ],
        )
    )
    out = run_cli("eval", str(run), "--episodes", "1", "--video", str(tmp_path / "vid"))
    assert out.returncode == 0, out.stderr
    gifs = sorted((tmp_path / "vid").glob("*.gif"))
    assert [g.stem for g in gifs] == sorted(
        ["MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0"]
    )
    for gif in gifs:
        frames = imageio.mimread(gif)
        # an untrained policy rarely ends an episode early; the 5-step limit gives 6 frames
        assert 2 <= len(frames) <= 6 and frames[0].ndim == 3
        assert f"{gif} ({len(frames)} frames)" in out.stdout
    assert any(len(imageio.mimread(g)) == 6 for g in gifs)


def test_metaworld_video_or_a_clear_renderer_message(tmp_path):
    pytest.importorskip("metaworld")
    run = train(
        load_config(
            ROOT / "configs/metaworld_mt10_mtsac.yaml",
            [
                "env.suite=metaworld-mt1-reach-v3",
                f"run_dir={tmp_path / 'mw'}",
                "rollout.workers=0",
                "rollout.pipeline=false",
                "rollout.num_envs=1",
                "train.total_steps=40",
                "sac.warmup_steps=40",
                "env.max_episode_steps=4",
                "train.eval_episodes=0",
            ],
        )
    )
    out = run_cli("eval", str(run), "--episodes", "1", "--video", str(tmp_path / "vid"))
    if out.returncode == 2:  # no EGL / OSMesa here: the message says what to install
        assert "cannot render offscreen" in out.stderr and "libosmesa6" in out.stderr
        pytest.skip("no offscreen OpenGL backend on this machine")
    assert out.returncode == 0, out.stderr
    import imageio.v2 as imageio

    frames = imageio.mimread(tmp_path / "vid/reach-v3.gif")
    assert len(frames) == 5 and max(frames[0].shape[:2]) == 256
    # a backend the user forces is kept; one that cannot render gives one line saying what to do
    forced = run_cli("eval", str(run), "--episodes", "1", "--video", str(tmp_path / "v2"), env={"MUJOCO_GL": "glx"})
    lines = [ln for ln in forced.stderr.splitlines() if ln.strip()]
    assert forced.returncode == 2 and len(lines) == 1 and "cannot render offscreen" in lines[0], forced.stderr
