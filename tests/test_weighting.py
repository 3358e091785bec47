"""Task weightings (`learner.weighting`, mtrl.algos.weighting): each method's update rule on a case
worked by hand, what it does with RL's signed losses, and real trainings with PPO, GRPO and SAC
that log the weights, checkpoint them and resume."""

from __future__ import annotations

import math

import pytest
import torch

import mtrl
from mtrl.algos.gradnorm import GradNorm
from mtrl.algos.log_weighting import FAMO, ImprovableGap, log_loss_weights
from mtrl.algos.weighting import DynamicWeightAverage, Uncertainty, make_weighting
from mtrl.config import load_config
from mtrl.errors import ConfigError, MtrlError
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"


class StubWeighting:
    """A plug-in weighting with the whole contract and weights 1 that never move; the tests'
    broken plug-ins override one method."""

    grad_norms = False

    def __init__(self, num_tasks: int) -> None:
        self.w = torch.ones(num_tasks)

    def weights(self) -> torch.Tensor:
        return self.w

    def update(self, losses, grad_norms) -> None:  # noqa: ANN001
        pass

    def next_iteration(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


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


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_famo_worked_case_and_signed_losses(sign):
    """FAMO (Liu et al. 2023) from xi = 0 with losses (1, 2, 0.5): c = sum z / D = 7/6, so the
    factors on the losses, z / (c D), are (2/7, 1/7, 4/7), times K on the mean's scale. The next
    step's losses (0.9, 1, 0.5) give delta = log D(prev) - log D(now) = (0.105361, 0.693147, 0), the
    softmax's vector-Jacobian product z (delta - z . delta) = (-0.0536, 0.1423, -0.0887), and Adam's
    first step moves each logit by lr = 0.025 against its sign (weight decay is 0 at xi = 0):
    xi = (0.025, -0.025, 0.025), z = (0.338842, 0.322316, 0.338842): the task that improved most
    loses weight. A negative loss acts through its magnitude."""
    famo = FAMO(3, lr=0.025, weight_decay=1e-3, eps=1e-8)
    first, second = torch.tensor([1.0, 2.0, 0.5]) * sign, torch.tensor([0.9, 1.0, 0.5]) * sign
    assert famo.step_weights(first).tolist() == pytest.approx([6 / 7, 3 / 7, 12 / 7], rel=1e-6)
    famo.update(first, None)  # no previous losses yet: no step
    torch.testing.assert_close(famo.weights(), torch.ones(3))
    famo.update(second, None)
    torch.testing.assert_close(famo.xi.detach(), torch.tensor([0.025, -0.025, 0.025]))
    assert (famo.weights() / 3).tolist() == pytest.approx([0.338842, 0.322316, 0.338842], abs=1e-6)
    famo.update(torch.tensor([float("nan"), 0.5, 0.5]) * sign, None)  # a task without samples keeps its last loss
    assert famo.prev[0] == pytest.approx(math.log(0.9))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_igb_worked_case_and_signed_losses(sign):
    """IGBv1 (Dai et al. 2023): base losses (2, 1, 4) (the mean |L| of the base iteration), current
    (1, 0.8, 1): w = 3 softmax(|L| / L_base) = 3 softmax(0.5, 0.8, 0.25) = (0.958877, 1.294349,
    0.746774). The log-losses' factors w / |L| = (0.958877, 1.617936, 0.746774), rescaled to sum 3:
    (0.865520, 1.460413, 0.674068). Before the base is known the weights are 1."""
    igb = ImprovableGap(3, base_iteration=1)
    for iteration in ([[5.0, 5.0, 5.0]], [[1.0, 1.0, 2.0], [3.0, 1.0, 6.0]]):  # iteration 1, the base: mean (2, 1, 4)
        igb.next_iteration()
        for losses in iteration:
            inverse = torch.tensor([1 / x for x in losses])
            factors = igb.step_weights(torch.tensor(losses) * sign)  # w = 1 still: the factors are 1 / |L| rescaled
            assert factors.tolist() == pytest.approx((3 * inverse / inverse.sum()).tolist())
            igb.update(torch.tensor(losses) * sign, None)
    igb.next_iteration()
    factors = igb.step_weights(torch.tensor([1.0, 0.8, 1.0]) * sign)
    assert igb.weights().tolist() == pytest.approx([0.958877, 1.294349, 0.746774], abs=1e-6)
    assert factors.tolist() == pytest.approx([0.865520, 1.460413, 0.674068], abs=1e-6)


def test_log_loss_factors_give_famos_gradient_and_descend_a_negative_loss():
    """sum_i f_i L_i with the factors of `log_loss_weights` has the gradient of sum_i w_i log L_i / c
    for positive losses; for a negative one the factor stays positive, so the step still lowers it."""
    x = torch.tensor([0.3, -0.2, 0.7], requires_grad=True)
    losses = torch.stack([x[0] ** 2 + 1, x[1] ** 2 + 2, x[2] ** 2 + 0.5])
    w = torch.tensor([0.5, 1.0, 1.5])
    f = log_loss_weights(w, losses.detach(), 0.0)
    (g_f,) = torch.autograd.grad((f * losses).sum(), x, retain_graph=True)
    c = (w / losses.detach()).sum() / w.sum()
    (g_log,) = torch.autograd.grad((w * losses.log()).sum() / c, x)
    torch.testing.assert_close(g_f, g_log)
    f_neg = log_loss_weights(w, -losses.detach(), 0.0)
    assert bool((f_neg > 0).all()) and torch.allclose(f_neg, f)
    f_absent = log_loss_weights(w, torch.tensor([1.0, float("nan"), 2.0]), 0.0)
    assert f_absent[1] == 0 and f_absent.sum().item() == pytest.approx(2.0)  # the present tasks' weights


def test_scale_invariant_aggregators_are_declared_as_measured_and_refuse_a_weighting():
    """An aggregator declared scale-invariant gives the same direction when the task gradients are
    scaled (so a weighting does nothing through it); every other built-in does not."""
    from mtrl.algos.aggregators import BUILTINS, make_aggregator
    from mtrl.registry import AGGREGATORS

    torch.manual_seed(0)
    jac, scale = torch.randn(3, 20), torch.tensor([[0.2], [1.0], [5.0]])
    invariant = AGGREGATORS.tagged("scale_invariant")
    assert invariant >= {"nash_mtl", "fairgrad", "imtl_g", "config"}
    for name in BUILTINS:  # (other tests register plug-ins of their own)
        agg = make_aggregator(name, {}, 3)
        torch.manual_seed(1)  # `random` draws its weights
        d1 = agg(jac)
        torch.manual_seed(1)
        d2 = agg(jac * scale)
        cos = torch.nn.functional.cosine_similarity(d1, d2, dim=0).item()
        assert (cos > 1 - 1e-5) == (name in invariant), (name, cos)
    with pytest.raises(ConfigError, match="^learner.weighting=famo would do nothing with learner.aggregator=nash_mtl"):
        load_config(TOY, ["learner.weighting=famo", "learner.aggregator=nash_mtl"])
    load_config(TOY, ["learner.weighting=famo", "learner.aggregator=upgrad"])


def test_weights_outside_the_sane_range_fall_back_to_uniform_counted_and_stop_past_the_share(capsys):
    from mtrl.algos.base import NonFiniteGuard
    from mtrl.algos.multitask import TaskGradients
    from mtrl.config.schema import LearnerConfig

    class Exploding(StubWeighting):
        def update(self, losses, grad_norms) -> None:  # noqa: ANN001
            self.w = self.w * 10

    mtrl.register_weighting("exploding-test", Exploding, overwrite=True)
    cfg = LearnerConfig(weighting="exploding-test", max_task_weight=50.0, fallback_window=4, max_fallback_share=0.5)
    w = torch.nn.Parameter(torch.ones(2))
    grads = TaskGradients(torch.nn.Linear(1, 1), cfg, ("a", "b"), NonFiniteGuard())
    opt = torch.optim.SGD([w], lr=0.1)
    present = torch.tensor([True, True])
    for expected_grad in (1.0, 10.0):  # weights 1 then 10: applied
        grads.step(opt, w * 1.0, present, [], [w], None)
        assert w.grad.tolist() == [expected_grad / 2] * 2
    grads.step(opt, w * 1.0, present, [], [w], None)  # 100 > 50: uniform weights instead
    assert w.grad.tolist() == [0.5, 0.5] and grads.take_faults() == {"weighting_fallbacks": 1}
    assert "weighting 'exploding-test' failed (weights averaging 100" in capsys.readouterr().out
    grads.step(opt, w * 1.0, present, [], [w], None)  # 2 of the last 4 failed: not above the share yet
    with pytest.raises(MtrlError, match="^weighting 'exploding-test' failed in 3 of its last 4 steps"):
        grads.step(opt, w * 1.0, present, [], [w], None)


def test_bad_weightings_are_one_line(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^learner.weighting: unknown weighting 'uncertanty' \(did you mean 'uncertainty'\?\)"
    ):
        load_config(TOY, ["learner.weighting=uncertanty"])
    with pytest.raises(ConfigError, match="weighting 'dwa' does not take them"):
        make_weighting("dwa", {"temp": 2.0}, 3)
    with pytest.raises(ConfigError, match="dwa needs temperature > 0"):
        make_weighting("dwa", {"temperature": 0.0}, 3)

    class Wrong(StubWeighting):
        def weights(self) -> torch.Tensor:
            return torch.ones(len(self.w) + 1)  # one too many

    mtrl.register_weighting("wrong-test", Wrong, overwrite=True)
    with pytest.raises(
        MtrlError, match=r"^weighting 'wrong-test': weights\(\) returned \[1.0, 1.0, 1.0, 1.0\]; expected 3"
    ):
        train(
            load_config(
                TOY,
                [
                    "learner.weighting=wrong-test",
                    "rollout.workers=0",
                    "train.total_steps=600",
                    "train.eval_episodes=0",
                    f"run_dir={tmp_path}",
                ],
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
        ("famo", ["ppo.critic_update=separate"]),  # the critic's optimiser weighs its own MSE per task
        ("igb", ["learner.aggregator=pcgrad", "learner.weighting_options={base_iteration: 0}"]),
    ],
    ids=["ppo-uncertainty", "ppo-dwa-upgrad", "grpo-uncertainty", "ppo-famo-separate", "ppo-igb-pcgrad"],
)
def test_training_logs_checkpoints_and_resumes_the_weights(tmp_path, name, extra):
    common = ["rollout.workers=0", "train.eval_episodes=0", f"learner.weighting={name}", *extra]
    run = tmp_path / "run"
    train(load_config(TOY, [*common, f"run_dir={run}", "train.total_steps=3000", "train.checkpoint_every=1"]))
    logged = _weights_logged(run)
    assert sorted(logged) == [f"weighting/sequence-{i}" for i in range(3)]
    state = load_latest(run)[1]["optimizer"]["task_gradients"][0]
    moved, start = {"uncertainty": ("s", torch.zeros(3)), "famo": ("xi", torch.zeros(3))}.get(
        name, ("w", torch.ones(3))
    )
    assert not torch.equal(state[moved], start), "the weights never moved"
    train(load_config(TOY, [*common, f"resume={run}", "train.total_steps=4500"]))
    assert load_latest(run)[1]["env_steps"] >= 4500


@pytest.mark.parametrize(
    "name", ["uncertainty", pytest.param("famo", marks=pytest.mark.slow), pytest.param("igb", marks=pytest.mark.slow)]
)
def test_sac_trains_with_a_weighting(tmp_path, name):
    run = train(
        load_config(
            ROOT / "configs/toy_point_sac.yaml",
            [
                "rollout.workers=0",
                "train.eval_episodes=0",
                f"learner.weighting={name}",
                f"run_dir={tmp_path}",
                "train.total_steps=1200",
            ],
        )
    )
    assert sorted(_weights_logged(run)) == ["weighting/point-left", "weighting/point-right"]
