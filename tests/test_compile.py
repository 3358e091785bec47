"""learner.compile: the learner's networks under torch.compile train to the same weights as eager
ones (up to float rounding), checkpoints keep their keys, and what it cannot combine with is one line."""

from __future__ import annotations

import pytest
import torch

from mtrl.config import load_config
from mtrl.env.suite import get_suite
from mtrl.errors import ConfigError
from mtrl.nn.policy import build_policy
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import policy_spec, train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"
BASE = ["rollout.workers=0", "train.eval_episodes=0", "train.eval_every=null", "train.total_steps=1200"]


@pytest.mark.slow
def test_compiled_networks_train_to_the_eager_weights(tmp_path):
    """Toy PPO for 1200 env steps with the same seed: the compiled run's checkpoint has the eager
    run's keys and, within float rounding, its weights, which training moved well away from the
    initial ones."""
    eager = load_latest(train(load_config(TOY, [*BASE, f"run_dir={tmp_path / 'eager'}"])))[1]["policy"]
    compiled = load_latest(
        train(load_config(TOY, [*BASE, "learner.compile=true", f"run_dir={tmp_path / 'compiled'}"]))
    )[1]["policy"]
    assert compiled.keys() == eager.keys()
    cfg = load_config(TOY, BASE)
    torch.manual_seed(cfg.seed)  # the trainer's initial weights, to see that training moved them
    initial = build_policy(policy_spec(cfg, get_suite(cfg.env.suite))).state_dict()
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert max(float((eager[k] - initial[k]).abs().max()) for k in eager) > 1e-2


def test_compile_with_a_task_grouped_step_is_one_line(tmp_path):
    cfg = load_config(TOY, [*BASE, "learner.compile=true", "learner.aggregator=pcgrad", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"learner.compile=true does not combine with learner.aggregator=pcgrad"):
        train(cfg)


def test_compile_without_a_compiler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    cfg = load_config(TOY, [*BASE, "learner.compile=true", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"learner.compile=true needs a C\+\+ compiler"):
        train(cfg)
