"""Task weightings (`learner.weighting`, mtrl.algos.weighting): each method's update rule on a case
worked by hand, what it does with RL's signed losses, and real trainings with PPO, GRPO and SAC
that log the weights, checkpoint them and resume."""

from __future__ import annotations

import math

import pytest
import torch

import mtrl
from mtrl.algos.gradnorm import GradNorm
from mtrl.algos.weighting import DynamicWeightAverage, Uncertainty, make_weighting
from mtrl.config import load_config
from mtrl.errors import ConfigError, MtrlError
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"


def test_gradnorm_worked_case():
    # alpha 0: target_i = mean_j(w_j g_j) = mean(1, 3) = 2; the gradient sign(G_i - 2) g_i = (-1, +3);
    # Adam's first step moves each weight by lr against its gradient's sign: w = (1.1, 0.9), sum 2 kept
    gn = GradNorm(2, alpha=0.0, lr=0.1)
    gn.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(gn.weights(), torch.tensor([1.1, 0.9]))
    gn.update(torch.tensor([1.0, 1.0]), None)  # no gradient norms (a task missing from the minibatch): no step
    torch.testing.assert_close(gn.weights(), torch.tensor([1.1, 0.9]))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_uncertainty_worked_case_and_signed_losses(sign):
    # s = 0: d/ds_i = 1 - exp(-s_i) |L_i| = (1 - 2, 1 - 0.5) = (-1, +0.5); Adam's first step: s = (+0.1, -0.1),
    # so the weights exp(-s) = (0.904837, 1.105171); a negative loss acts through its magnitude
    u = Uncertainty(2, lr=0.1)
    torch.testing.assert_close(u.weights(), torch.ones(2))
    u.update(torch.tensor([2.0, 0.5]) * sign, None)
    torch.testing.assert_close(u.weights(), torch.tensor([math.exp(-0.1), math.exp(0.1)]))


def test_uncertainty_fixed_point_and_its_cap():
    u = Uncertainty(2, lr=0.05, max_weight=50.0)
    for _ in range(3000):
        u.update(torch.tensor([4.0, 1e-6]), None)
    w = u.weights()
    assert w[0] == pytest.approx(0.25, rel=0.02)  # exp(-s) -> 1 / |L|
    assert w[1] == pytest.approx(50.0, rel=1e-5)  # 1 / 1e-6 capped at max_weight
    u.update(torch.tensor([float("nan"), 1.0]), None)  # a task without samples keeps its weight
    assert u.weights()[0] == w[0]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_dwa_worked_case_and_signed_losses(sign):
    # iteration means L(1) = (1, 1), L(2) = (0.5, 1): r = (0.5, 1), w(3) = 2 softmax(r / 2) = 2 (e^0.25, e^0.5) / sum
    dwa = DynamicWeightAverage(2, temperature=2.0)
    expected = 2 * torch.tensor([math.exp(0.25), math.exp(0.5)]) / (math.exp(0.25) + math.exp(0.5))
    for losses in ([[1.5, 1.0], [0.5, 1.0]], [[0.5, 0.75], [0.5, 1.25]]):  # each iteration: two steps
        dwa.next_iteration()
        torch.testing.assert_close(dwa.weights(), torch.ones(2))  # the first two iterations: 1
        for step in losses:
            dwa.update(torch.tensor(step) * sign, None)
    dwa.next_iteration()
    torch.testing.assert_close(dwa.weights(), expected)
    assert dwa.weights().tolist() == pytest.approx([0.875647, 1.124353], abs=1e-6)


def test_bad_weightings_are_one_line():
    with pytest.raises(
        ConfigError, match=r"^learner.weighting: unknown weighting 'uncertanty' \(did you mean 'uncertainty'\?\)"
    ):
        load_config(TOY, ["learner.weighting=uncertanty"])
    with pytest.raises(ConfigError, match="weighting 'dwa' does not take them"):
        make_weighting("dwa", {"temp": 2.0}, 3)
    with pytest.raises(ConfigError, match="dwa needs temperature > 0"):
        make_weighting("dwa", {"temperature": 0.0}, 3)

    class Wrong:
        grad_norms = False

        def __init__(self, num_tasks: int) -> None:
            self.k = num_tasks

        def weights(self) -> torch.Tensor:
            return torch.ones(self.k + 1)  # one too many

        def update(self, losses, grad_norms) -> None:  # noqa: ANN001
            pass

        def next_iteration(self) -> None:
            pass

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state: dict) -> None:
            pass

    mtrl.register_weighting("wrong-test", Wrong, overwrite=True)
    with pytest.raises(
        MtrlError, match=r"^weighting 'wrong-test': weights\(\) returned \[1.0, 1.0, 1.0, 1.0\]; expected 3"
    ):
        train(
            load_config(
                TOY,
                ["learner.weighting=wrong-test", "rollout.workers=0", "train.total_steps=600", "train.eval_episodes=0"],
            )
        )
    mtrl.register_weighting("half-test", lambda k: object(), overwrite=True)
    with pytest.raises(MtrlError, match="weighting 'half-test': its factory returned object, which lacks weights"):
        make_weighting("half-test", {}, 3)


def test_old_gradnorm_keys_migrate(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("learner:\n  gradnorm_alpha: 0.5\n  gradnorm_lr: 0.01\n")
    learner = load_config(tmp_path / "c.yaml").learner
    assert learner.weighting == "gradnorm" and learner.weighting_options == {"alpha": 0.5, "lr": 0.01}
    assert "learner.gradnorm_alpha -> learner.weighting_options.alpha" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="^learner.gradnorm_alpha is learner.weighting: gradnorm"):
        load_config(TOY, ["learner.gradnorm_alpha=0.5"])


def _weights_logged(run) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"] if tag.startswith("weighting/")}


@pytest.mark.parametrize(
    "name, extra",
    [
        ("uncertainty", []),
        ("dwa", ["learner.aggregator=upgrad"]),  # weights scale the task gradients the aggregator combines
        ("uncertainty", ["algo=grpo", "grpo.group_size=4", "grpo.groups=6", "grpo.outcome=return"]),
    ],
    ids=["ppo-uncertainty", "ppo-dwa-upgrad", "grpo-uncertainty"],
)
def test_training_logs_checkpoints_and_resumes_the_weights(tmp_path, name, extra):
    common = ["rollout.workers=0", "train.eval_episodes=0", f"learner.weighting={name}", *extra]
    run = tmp_path / "run"
    train(load_config(TOY, [*common, f"run_dir={run}", "train.total_steps=3000", "train.checkpoint_every=1"]))
    logged = _weights_logged(run)
    assert sorted(logged) == [f"weighting/sequence-{i}" for i in range(3)]
    state = load_latest(run)[1]["optimizer"]["task_gradients"][0]
    moved = state["s"] if name == "uncertainty" else state["w"]
    assert not torch.equal(moved, torch.zeros(3) if name == "uncertainty" else torch.ones(3)), "the weights never moved"
    train(load_config(TOY, [*common, f"resume={run}", "train.total_steps=4500"]))
    assert load_latest(run)[1]["env_steps"] >= 4500


def test_sac_trains_with_a_weighting(tmp_path):
    run = train(
        load_config(
            ROOT / "configs/toy_point_sac.yaml",
            [
                "rollout.workers=0",
                "train.eval_episodes=0",
                "learner.weighting=uncertainty",
                f"run_dir={tmp_path}",
                "train.total_steps=1200",
            ],
        )
    )
    assert sorted(_weights_logged(run)) == ["weighting/point-left", "weighting/point-right"]
