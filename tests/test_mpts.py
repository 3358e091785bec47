"""MPTS (`curriculum.name=mpts`, mtrl.curriculum.mpts): it favours a persistently hard task on a
synthetic stream, its state resumes exactly, a failing risk model stops with one line, and a
toy run logs the predicted risk beside the observed one and resumes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mtrl.config import load_config
from mtrl.curriculum import TaskStats, make_curriculum
from mtrl.errors import MtrlError
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"
TASKS = tuple(f"t{i}" for i in range(6))
HARD = 2


def mpts(*overrides: str):  # noqa: ANN201
    return make_curriculum(TASKS, load_config(TOY, ["curriculum.name=mpts", *overrides]).curriculum)


def stream(cur, iterations: int, seed: int = 0) -> np.ndarray:  # noqa: ANN001
    """Episodes drawn from the curriculum's probabilities, task HARD returning about 0 and the
    others about 1; returns the episodes per task after the warm-up."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(TASKS))
    for it in range(iterations):
        episodes = np.bincount(rng.choice(len(TASKS), size=24, p=cur.probs()), minlength=len(TASKS))
        ret = np.where(np.arange(len(TASKS)) == HARD, 0.0, 1.0) + 0.1 * rng.standard_normal(len(TASKS))
        if it >= 5:
            counts += episodes
        nan = np.full(len(TASKS), np.nan)
        cur.update(TaskStats(it, np.where(episodes > 0, ret, np.nan), nan, nan, episodes))
    return counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mpts_samples_a_persistently_hard_task_more_than_uniform(seed):
    cur = mpts("curriculum.eps=0", f"curriculum.mpts.seed={seed}")
    share = stream(cur, 30, seed)
    assert share[HARD] / share.sum() > 1.4 / len(TASKS), share  # uniform: 1/6
    risk = cur.scores()["predicted_risk"]
    assert np.argmax(risk) == HARD and np.isfinite(cur.scores()["observed_risk"][HARD])


def test_mpts_state_resumes_exactly():
    a = mpts()
    stream(a, 8)
    b = mpts()
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as a checkpoint's save and load would
    for cur in (a, b):
        stream(cur, 4, seed=7)
    np.testing.assert_array_equal(a.probs(), b.probs())
    np.testing.assert_array_equal(a.scores()["predicted_risk"], b.scores()["predicted_risk"])


def test_a_failing_risk_model_stops_with_one_line(monkeypatch):
    cur = mpts()
    monkeypatch.setattr(cur.model, "decode", lambda x, z: torch.full((len(z), len(x)), float("nan")))
    with pytest.raises(MtrlError, match=r"^curriculum 'mpts': the risk model's loss is nan"):
        stream(cur, 2)


def test_mpts_trains_logs_its_predicted_risk_and_resumes(tmp_path):
    ov = [
        f"run_dir={tmp_path}",
        "rollout.workers=0",
        "curriculum.name=mpts",
        "curriculum.mpts.warmup=1",
        "train.checkpoint_every=1",
        "rollout.steps_per_env=16",
        "train.eval_episodes=0",
    ]
    run = train(load_config(TOY, [*ov, "train.total_steps=1500"]))
    saved = make_curriculum(("sequence-0", "sequence-1", "sequence-2"), load_config(TOY, ov).curriculum)
    saved.load_state_dict(load_latest(run)[1]["curriculum"])
    assert saved.iteration > 1
    train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=2000"]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"]
    for key in ("predicted_risk", "risk_std", "observed_risk", "prob"):
        assert f"curriculum/{key}/sequence-0" in tags, key
