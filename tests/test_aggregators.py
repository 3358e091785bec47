"""Gradient aggregators (learner.aggregator): the per-task gradient step on hand-computed cases,
head isolation inside a real MOORE policy, every built-in on a short toy run, the fallbacks, and
the gradient diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtrl.algos.base import NonFiniteGuard
from mtrl.algos.multitask import TaskGradients
from mtrl.config import load_config
from mtrl.config.schema import LearnerConfig
from mtrl.errors import AggregatorFailed, ConfigError, MtrlError
from mtrl.registry import AGGREGATORS, register_aggregator
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"


def ppo_task_losses(policy: nn.Module, mb, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's loss reduced per task: (losses [3], which tasks have samples)."""
    from mtrl.algos.losses import reduce_terms
    from mtrl.algos.ppo import ppo_terms

    r = reduce_terms(ppo_terms(policy, mb, cfg), 3)
    return r.loss, r.present


def two_task_step(name: str, a: list[float], b: list[float], present=(True, True), diagnose=False):
    """Shared parameters theta (features f = theta), task heads h; L_1 = h_0 a.f, L_2 = h_1 b.f, so
    the Jacobian of the losses on theta is [h_0 a; h_1 b] = [a; b] at h = 1."""
    theta = nn.Parameter(torch.tensor([1.0, 2.0]))
    heads = nn.Parameter(torch.ones(2))
    grads = TaskGradients(
        nn.Module(),
        LearnerConfig(aggregator=name),
        ("a", "b"),
        NonFiniteGuard(),
    )
    grads.diagnose = diagnose
    features = theta * 1.0
    losses = torch.stack([heads[0] * (torch.tensor(a) @ features), heads[1] * (torch.tensor(b) @ features)])
    opt = torch.optim.SGD([theta, heads], lr=0.0)
    grads.step(opt, losses, torch.tensor(present), [features], [theta, heads], None)
    return theta.grad, heads.grad, grads


def test_pcgrad_projects_conflicting_task_gradients_as_computed_by_hand():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # a.b = -1 < 0: they conflict
    a_pc = a - (a @ b) / (b @ b) * b  # Yu et al. 2020, eq. (1): project a onto b's normal plane
    b_pc = b - (b @ a) / (a @ a) * a
    shared, heads, grads = two_task_step("pcgrad", a.tolist(), b.tolist())
    torch.testing.assert_close(shared, (a_pc + b_pc) / 2)  # averaged over the K = 2 tasks
    # the task-specific head entries get their own task's gradient on the scale of the mean over the
    # K = 2 tasks, as the shared direction and as aggregator none: dL_c/dh_c / K = (a or b) . theta / 2
    torch.testing.assert_close(heads, torch.tensor([0.5, 0.5]))
    assert grads.fallbacks == 0


def test_without_conflict_pcgrad_is_the_mean():
    a, b = [1.0, 0.5], [0.5, 1.0]
    for name in ("pcgrad", "mean"):
        shared, _, _ = two_task_step(name, a, b)
        torch.testing.assert_close(shared, torch.tensor([0.75, 0.75]))


def test_diagnostics_give_the_known_cosine_norms_and_conflict_fraction():
    _, _, grads = two_task_step("mean", [1.0, 0.0], [1.0, 1.0], diagnose=True)
    d = grads.report()
    assert d["grad/cosine/a/b"] == pytest.approx(1 / math.sqrt(2))
    assert (d["grad/norm/a"], d["grad/norm/b"]) == pytest.approx((1.0, math.sqrt(2)))
    assert d["grad/conflicting_fraction"] == 0.0 and d["grad/weight/a"] == pytest.approx(0.5)
    _, _, grads = two_task_step("upgrad", [1.0, 0.0], [-1.0, 1.0], diagnose=True)
    d = grads.report()
    assert d["grad/cosine/a/b"] == pytest.approx(-1 / math.sqrt(2)) and d["grad/conflicting_fraction"] == 1.0
    assert grads.report() == {}  # reported once


def test_a_task_without_samples_falls_back_to_the_mean_and_is_counted():
    shared, _, grads = two_task_step("upgrad", [1.0, 0.0], [-1.0, 1.0], present=(True, False))
    torch.testing.assert_close(shared, torch.tensor([1.0, 0.0]))  # the mean over the present task
    assert grads.take_fallbacks() == 1 and grads.take_fallbacks() == 0


def failing(result: str, every: int = 1):
    """An aggregator factory whose aggregator fails on every `every`-th call: it declares a failure
    (`AggregatorFailed`), returns NaN, or raises a plain error (a bug); the other calls give the mean."""

    def factory(num_tasks):
        calls = [0]

        def aggregate(matrix):
            calls[0] += 1
            if calls[0] % every:
                return matrix.mean(0)
            if result == "declared":
                raise AggregatorFailed("solver did not converge")
            if result == "raises":
                raise ValueError("bad shape in my aggregator")
            return torch.full(matrix.shape[1:], float("nan"))

        return aggregate

    return factory


@pytest.mark.parametrize("result", ["declared", "nan"])
def test_a_declared_failure_falls_back_to_the_mean_with_one_warning(result, capsys):
    register_aggregator("broken", failing(result), overwrite=True)
    try:
        shared, _, grads = two_task_step("broken", [1.0, 0.0], [-1.0, 1.0])
    finally:
        AGGREGATORS._items.pop("broken")
    torch.testing.assert_close(shared, torch.tensor([0.0, 0.5]))  # the mean of the task gradients
    assert grads.fallbacks == 1
    why = "solver did not converge" if result == "declared" else "a non-finite direction"
    assert f"aggregator 'broken' failed ({why}); that step takes the mean" in capsys.readouterr().out


def test_any_other_exception_from_an_aggregator_stops_with_one_line():
    register_aggregator("buggy", failing("raises"), overwrite=True)
    try:
        with pytest.raises(
            MtrlError, match=r"aggregator 'buggy': aggregate raised ValueError: bad shape in my aggregator"
        ):
            two_task_step("buggy", [1.0, 0.0], [-1.0, 1.0])
    finally:
        AGGREGATORS._items.pop("buggy")


def steps(grads: TaskGradients, n: int) -> None:
    theta = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([theta], lr=0.0)
    for _ in range(n):
        features = theta * 1.0
        losses = torch.stack([torch.tensor([1.0, 0.0]) @ features, torch.tensor([-1.0, 1.0]) @ features])
        grads.step(opt, losses, torch.tensor([True, True]), [features], [theta], None)


def test_fallbacks_warn_once_and_a_run_that_mostly_falls_back_stops(capsys):
    register_aggregator("flaky", failing("declared", every=3), overwrite=True)
    register_aggregator("dead", failing("declared"), overwrite=True)
    try:
        grads = TaskGradients(nn.Module(), LearnerConfig(aggregator="flaky"), ("a", "b"), NonFiniteGuard())
        steps(grads, 60)  # a third of its steps fail: under the default share of 0.5
        assert grads.take_fallbacks() == 20
        assert capsys.readouterr().out.count("that step takes the mean") == 1
        grads = TaskGradients(nn.Module(), LearnerConfig(aggregator="dead"), ("a", "b"), NonFiniteGuard())
        steps(grads, 10)  # the window is not full yet
        with pytest.raises(
            MtrlError, match=r"aggregator 'dead' failed in 20 of its last 20 steps .*max_fallback_share=0.5"
        ):
            steps(grads, 10)
        strict = LearnerConfig(aggregator="flaky", max_fallback_share=0.25, fallback_window=12)
        with pytest.raises(MtrlError, match=r"failed in 4 of its last 12 steps"):
            steps(TaskGradients(nn.Module(), strict, ("a", "b"), NonFiniteGuard()), 12)
    finally:
        AGGREGATORS._items.pop("flaky")
        AGGREGATORS._items.pop("dead")


def test_a_plugin_aggregator_that_raises_stops_the_run_with_one_line(tmp_path):
    """Training with a plug-in aggregator that raises a plain ValueError stops, where it used to train on as `mean`."""
    register_aggregator("buggy", failing("raises"), overwrite=True)
    try:
        cfg = load_config(TOY, ["rollout.workers=0", f"run_dir={tmp_path}", "learner.aggregator=buggy"])
        with pytest.raises(MtrlError, match=r"^aggregator 'buggy': aggregate raised ValueError"):
            train(cfg)
    finally:
        AGGREGATORS._items.pop("buggy")


def test_task_c_loss_changes_only_task_cs_head_and_task_weight_row():
    from mtrl.algos.ppo import PPOBatch
    from mtrl.env.suite import get_suite
    from mtrl.nn.policy import build_policy
    from mtrl.run.training import policy_spec

    cfg = load_config(TOY, ["policy.arch=moore", "policy.moore.num_experts=2", "learner.aggregator=upgrad"])
    suite = get_suite(cfg.env.suite)
    torch.manual_seed(0)
    policy = build_policy(policy_spec(cfg, suite))
    grads = TaskGradients(policy, cfg.learner, suite.tasks, NonFiniteGuard())
    n = 12
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(n, *suite.observation_space.shape, generator=g)
    task = torch.arange(n) % 3
    adv = torch.where(task == 1, torch.randn(n, generator=g), torch.zeros(n))  # only task 1 has a signal
    mb = PPOBatch(
        obs,
        task,
        torch.randint(0, 4, (n,), generator=g),
        torch.full((n,), -math.log(4)),
        adv,
        torch.zeros(n),
        torch.zeros(n),
    )
    cfg.ppo.ent_coef, cfg.ppo.vf_coef = 0.0, 0.0
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    (losses, present), features = grads.evaluate(
        lambda policy=policy, mb=mb: ppo_task_losses(policy, mb, cfg.ppo), mb.task_id
    )
    assert grads.grouped  # MOORE's experts take the observation: one grouped backward pass
    grads.step(opt, losses, present, features, list(policy.parameters()), None)
    after = policy.state_dict()
    mix = "actor.mixture.task_weights.weight"  # [k, K]: column c is task c's weight row
    assert not torch.equal(after[mix][:, 1], before[mix][:, 1])
    assert torch.equal(after[mix][:, [0, 2]], before[mix][:, [0, 2]])
    head = policy.actor.head.layers[0]  # MOORE's multi-head output layer on flat observations: a TaskHeads
    w_before, w_after = (head.per_task(s["actor.head.layers.0.weight"]) for s in (before, after))
    assert torch.equal(w_after[[0, 2]], w_before[[0, 2]]) and not torch.equal(w_after[1], w_before[1])
    b_before, b_after = before["actor.head.layers.0.bias"], after["actor.head.layers.0.bias"]
    assert torch.equal(b_after[[0, 2]], b_before[[0, 2]]) and not torch.equal(b_after[1], b_before[1])
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("actor.mixture.experts"))


def ppo_case(arch: str, image: bool):
    """A policy of `arch` on flat (toy) or MiniGrid-image observations, a minibatch with uneven task counts."""
    from mtrl.algos.ppo import PPOBatch
    from mtrl.nn.network import PolicySpec
    from mtrl.nn.policy import build_policy

    obs_shape, actions = ((7, 7, 3), 7) if image else ((6,), 4)
    options = (("num_experts", 2),) if arch in ("moe", "moore") else ()
    spec = PolicySpec(obs_shape, 3, actions, True, arch=arch, hidden=32, num_experts=2, options=options)
    torch.manual_seed(0)
    policy = build_policy(spec)
    g = torch.Generator().manual_seed(1)
    n = 40
    task = torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(12, dtype=torch.long), torch.full((8,), 2)])
    task = task[torch.randperm(n, generator=g)]
    obs = (
        torch.randint(0, 11, (n, *obs_shape), generator=g, dtype=torch.uint8)
        if image
        else torch.rand(n, *obs_shape, generator=g)
    )
    mb = PPOBatch(
        obs,
        task,
        torch.randint(0, actions, (n,), generator=g),
        torch.full((n,), -math.log(actions)),
        torch.randn(n, generator=g),
        torch.randn(n, generator=g),
        torch.zeros(n),
    )
    return policy, mb


# the architectures whose shared parameters all sit inside their `features` module on these inputs
GROUPED = {
    ("moe", False),
    ("moore", False),
    ("moe", True),
    ("moore", True),
    ("mlp", False),
    ("mlp", True),
    ("softmod", False),
    ("paco", False),
    ("multihead", False),
}


@pytest.mark.parametrize("image", [False, True], ids=["flat", "minigrid"])
@pytest.mark.parametrize("arch", ["mlp", "multihead", "moe", "moore", "softmod", "care", "paco"])
def test_the_grouped_jacobian_equals_torchjds_per_task_differentiation(arch, image):
    """One backward pass through the shared module run grouped by task gives the same task
    gradients (diagnostics), the same aggregated step and the same task-specific gradients as
    torchjd's mtl_backward; architectures with parameters upstream of their features fall back."""

    cfg = load_config(TOY, ["learner.aggregator=upgrad"])
    out = {}
    for grouped in (True, False):
        policy, mb = ppo_case(arch, image)
        grads = TaskGradients(policy, cfg.learner, ("a", "b", "c"), NonFiniteGuard())
        grads.grouped, grads.diagnose = grouped, True
        (losses, present), features = grads.evaluate(
            lambda policy=policy, mb=mb: ppo_task_losses(policy, mb, cfg.ppo), mb.task_id
        )
        used_grouped = grads.grouped
        grads.step(
            torch.optim.SGD(policy.parameters(), lr=0.0), losses, present, features, list(policy.parameters()), None
        )
        out[grouped] = used_grouped, grads.report(), {k: p.grad for k, p in policy.named_parameters()}
    (used, diag, grad), (_, diag_ref, grad_ref) = out[True], out[False]
    assert used == ((arch, image) in GROUPED)
    assert diag.keys() == diag_ref.keys() and diag == pytest.approx(diag_ref, rel=1e-4, abs=1e-6)
    assert grad.keys() == grad_ref.keys()
    for k in grad:
        assert (grad[k] is None) == (grad_ref[k] is None), k
        if grad[k] is not None:
            torch.testing.assert_close(grad[k], grad_ref[k], rtol=1e-4, atol=1e-6, msg=k)


def test_conv_experts_own_per_task_forward_equals_the_vmapped_one():
    """MOORE's conv experts run the grouped pass with their own channels-last grouped convs
    (`forward_per_task`): the same features and per-task Jacobian as vmap over their plain forward."""
    from torch.func import functional_call, vmap

    from mtrl.algos.task_jacobian import TaskGroupedPass
    from mtrl.nn.moore import ConvExperts

    torch.manual_seed(0)
    net = ConvExperts(2, (7, 7, 3))
    task = torch.tensor([0, 2, 2, 1, 0, 2, 2, 0, 2])  # uneven: 3, 1 and 5 rows
    obs = torch.randint(0, 11, (9, 7, 7, 3), dtype=torch.uint8)
    calls, per_task = [], net.forward_per_task
    net.forward_per_task = lambda *args: calls.append(1) or per_task(*args)  # type: ignore[method-assign]
    grouped = TaskGroupedPass([net], task, 3)
    with grouped.installed():
        out = net(obs)
    assert calls == [1]
    torch.testing.assert_close(out, net(obs), rtol=1e-5, atol=1e-5)  # each row through its own task's (equal) weights
    losses = torch.zeros(3).index_add(0, task, out.pow(2).sum(dim=(1, 2)))  # L_k: a sum over task k's rows
    own = grouped.jacobian(losses, list(net.parameters()))
    views = {n: p.unsqueeze(0).expand(3, *p.shape) for n, p in net.named_parameters()}
    ref = vmap(lambda v, o: functional_call(net, v, (o,)))(views, grouped.groups.group(obs))
    rows = torch.zeros(3).index_add(0, task, grouped.groups.ungroup(ref).pow(2).sum(dim=(1, 2)))
    jac = torch.autograd.grad(rows.sum(), list(views.values()))
    assert len(own) == len(jac) == 6
    for p, j in zip(own, jac):
        torch.testing.assert_close(p.jac, j, rtol=1e-4, atol=1e-4)


def test_a_per_task_forward_of_the_wrong_shape_stops_with_one_line():
    from mtrl.algos.task_jacobian import TaskGroupedPass

    class Bad(nn.Linear):
        def forward_per_task(self, params, x):
            return x.flatten(0, 1)  # [K * m, ...] instead of [K, m, ...]

    bad = Bad(4, 4)
    with TaskGroupedPass([bad], torch.tensor([0, 1, 1]), 2).installed(), pytest.raises(MtrlError) as err:
        bad(torch.randn(3, 4))
    assert str(err.value) == "Bad.forward_per_task returned (4, 4); expected a tensor [2 tasks, 2 rows per task, ...]"


def test_the_grouped_jacobian_of_a_task_without_samples_falls_back_to_the_plain_mean_gradient():

    cfg = load_config(TOY, ["learner.aggregator=pcgrad"])
    out = []
    for grouped in (True, False):
        policy, mb = ppo_case("moore", image=False)
        mb = mb.index(torch.nonzero(mb.task_id != 2).flatten())  # task 2 has no samples
        grads = TaskGradients(policy, cfg.learner, ("a", "b", "c"), NonFiniteGuard())
        grads.grouped = grouped
        (losses, present), features = grads.evaluate(
            lambda policy=policy, mb=mb: ppo_task_losses(policy, mb, cfg.ppo), mb.task_id
        )
        grads.step(
            torch.optim.SGD(policy.parameters(), lr=0.0), losses, present, features, list(policy.parameters()), None
        )
        assert grads.take_fallbacks() == 1
        out.append({k: p.grad for k, p in policy.named_parameters()})
    for k in out[0]:
        torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-4, atol=1e-6, msg=k)


def test_the_grouped_sac_update_equals_torchjds():
    """MOORE SAC at Meta-World-like shapes: critics and actor, one update each way from the same start."""
    from mtrl.algos.sac import SACAlgorithm
    from mtrl.env.suite import get_suite
    from mtrl.nn.policy import build_policy
    from mtrl.run.trainer import policy_spec

    cfg = load_config(
        ROOT / "configs/toy_point_sac.yaml",
        ["policy.arch=moore", "policy.moore.num_experts=2", "learner.aggregator=upgrad", "rollout.workers=0"],
    )
    suite = get_suite(cfg.env.suite)
    states = []
    for grouped in (True, False):
        torch.manual_seed(0)
        policy = build_policy(policy_spec(cfg, suite))
        learner = SACAlgorithm(policy, cfg, suite, torch.device("cpu")).learner
        for g in (learner.actor_grads, learner.critic_grads):
            g.grouped = grouped
        k, per = suite.num_tasks, 16
        d, a = suite.observation_space.shape[0], suite.action_space.shape[0]
        gen = torch.Generator().manual_seed(0)
        batch = {
            "task_id": torch.arange(k).repeat_interleave(per),
            "obs": torch.randn(k * per, d, generator=gen),
            "actions": torch.rand(k * per, a, generator=gen) * 2 - 1,
            "rewards": torch.randn(k * per, generator=gen),
            "next_obs": torch.randn(k * per, d, generator=gen),
            "terminated": torch.zeros(k * per, dtype=torch.bool),
        }
        torch.manual_seed(1)
        learner.update(batch)
        assert learner.actor_grads.grouped == grouped and learner.critic_grads.grouped == grouped
        states.append(policy.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", sorted(AGGREGATORS.names()))
def test_every_aggregator_trains_toy_with_finite_parameters(name, tmp_path):
    run = train(
        load_config(
            TOY,
            [
                "rollout.workers=0",
                "train.eval_episodes=1",
                f"run_dir={tmp_path}",
                "train.total_steps=1536",
                f"learner.aggregator={name}",
                "train.log_grad_every=1",
            ],
        )
    )
    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 1536 and ckpt["faults"].get("aggregator_fallbacks", 0) == 0
    assert all(bool(torch.isfinite(p).all()) for p in ckpt["policy"].values() if p.is_floating_point())


def test_bad_aggregator_names_and_options_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="learner.aggregator: unknown aggregator 'pcgard' \\(did you mean 'pcgrad'"):
        load_config(TOY, ["learner.aggregator=pcgard"])
    with pytest.raises(ConfigError, match="aggregator 'cagrad' does not take them"):
        train(
            load_config(
                TOY,
                [
                    "rollout.workers=0",
                    f"run_dir={tmp_path}",
                    "learner.aggregator=cagrad",
                    "learner.aggregator_options.radius=0.4",
                ],
            )
        )
    assert not (tmp_path / "checkpoints").exists()


def test_gradnorm_moves_weight_toward_the_task_with_the_smaller_gradient_and_keeps_the_sum():
    from mtrl.algos.gradnorm import GradNorm

    gn = GradNorm(2, alpha=0.0, lr=0.1)
    for _ in range(5):
        gn.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))  # G = w g: target mean(G) = 2 at w = 1
    w = gn.weights()
    assert w[0] > 1.0 > w[1] and float(w.sum()) == pytest.approx(2.0)
    # alpha > 0: a task whose loss fell less (training slower) gets a larger target, so more weight
    fast = GradNorm(2, alpha=1.5, lr=0.1)
    fast.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]))  # L(0)
    for _ in range(5):  # task 0's loss fell to 0.2 of its start, task 1's only to 0.9
        fast.update(torch.tensor([0.2, 0.9]), torch.tensor([1.0, 1.0]))
    assert fast.weights()[1] > 1.0


def test_gradnorm_trains_with_and_without_an_aggregator_and_resumes_its_weights(tmp_path):
    for agg in ("none", "upgrad"):
        run = tmp_path / agg
        common = [
            "rollout.workers=0",
            "train.eval_episodes=1",
            "learner.weighting=gradnorm",
            f"learner.aggregator={agg}",
        ]
        train(load_config(TOY, [*common, f"run_dir={run}", "train.total_steps=3072", "train.checkpoint_every=2"]))
        state = load_latest(run)[1]["optimizer"]
        w = state["task_gradients"][0]["w"]
        assert float(w.sum()) == pytest.approx(3.0) and not torch.equal(w, torch.ones(3))
        train(load_config(TOY, [*common, f"resume={run}", "train.total_steps=4608"]))
        assert load_latest(run)[1]["env_steps"] >= 4608


def test_gradient_diagnostics_reach_tensorboard_with_aggregator_none_without_changing_the_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for every in (None, 1):
        run = tmp_path / f"log{every}"
        train(
            load_config(
                TOY,
                [
                    "rollout.workers=0",
                    "train.eval_episodes=1",
                    f"run_dir={run}",
                    "train.total_steps=2304",
                    f"train.log_grad_every={'null' if every is None else every}",
                ],
            )
        )
        runs[every] = run
    a, b = (load_latest(runs[e])[1]["policy"] for e in (None, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)  # measuring leaves the trajectory as it was
    events = EventAccumulator(str(runs[1] / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"grad/cosine/sequence-0/sequence-1", "grad/norm/sequence-2", "grad/conflicting_fraction"} <= tags
    assert len(events.Scalars("grad/conflicting_fraction")) == load_latest(runs[1])[1]["iteration"]  # one per iteration


@pytest.mark.parametrize(
    "factory, expected",
    [
        (lambda num_tasks: 1 / 0, "aggregator 'odd': its factory raised ZeroDivisionError"),
        (lambda num_tasks: "pcgrad", "aggregator 'odd': its factory returned str, expected a callable"),
    ],
)
def test_a_malformed_aggregator_plugin_stops_before_training_with_one_line(tmp_path, factory, expected):

    register_aggregator("odd", factory, overwrite=True)
    try:
        with pytest.raises(MtrlError, match=expected):
            train(load_config(TOY, ["rollout.workers=0", f"run_dir={tmp_path}", "learner.aggregator=odd"]))
    finally:
        AGGREGATORS._items.pop("odd")
    assert not (tmp_path / "checkpoints").exists()


def test_an_architecture_whose_shared_module_cannot_run_under_vmap_falls_back_to_torchjd(tmp_path):
    """A plug-in's shared module with data-dependent control flow (`.item()`) cannot be vmapped:
    the run goes on with torchjd's mtl_backward, not a traceback."""
    from mtrl.registry import ARCHS, register_arch

    class Gate(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.lin = nn.Linear(dim, 16)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.lin(obs.float().flatten(1)))
            return h if float(h.sum().item()) >= -1e9 else -h  # a host read: not vmappable

    class Net(nn.Module):
        def __init__(self, spec, out_dim: int, out_gain: float) -> None:
            super().__init__()
            self.gate, self.heads = (
                Gate(int(math.prod(spec.obs_shape))),
                nn.Parameter(torch.zeros(spec.num_tasks, 16, out_dim)),
            )

        def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bi,bio->bo", self.gate(obs), self.heads[task_id])

    register_arch("gated", Net, features=lambda net: net.gate, overwrite=True)
    try:
        run = train(
            load_config(
                TOY,
                [
                    "rollout.workers=0",
                    "train.eval_episodes=1",
                    f"run_dir={tmp_path}",
                    "policy.arch=gated",
                    "train.total_steps=1536",
                    "learner.aggregator=upgrad",
                    "train.log_grad_every=1",
                ],
            )
        )
    finally:
        ARCHS._items.pop("gated")
    ckpt = load_latest(run)[1]
    assert ckpt["env_steps"] >= 1536 and ckpt["faults"].get("aggregator_fallbacks", 0) == 0


@pytest.mark.parametrize("image", [False, True], ids=["flat", "minigrid"])
def test_the_mean_aggregator_on_a_task_balanced_minibatch_is_the_plain_ppo_gradient(image):
    """With equal task counts the mean of the per-task losses is the sample mean, so the whole
    aggregator route (per-task losses, grouped Jacobian, head gradients, torchjd's Mean) must give
    the gradient of the plain loss: a control for what surgery alone changes."""
    from mtrl.algos.losses import reduce_terms
    from mtrl.algos.ppo import ppo_terms

    cfg = load_config(TOY, ["learner.aggregator=mean"])
    out = []
    for route in ("mean", "none"):
        policy, mb = ppo_case("moore", image)
        balanced = torch.cat([torch.nonzero(mb.task_id == k).flatten()[:8] for k in range(3)])  # 8 rows per task
        mb = mb.index(balanced)
        if route == "mean":
            grads = TaskGradients(policy, cfg.learner, ("a", "b", "c"), NonFiniteGuard())
            (losses, present), features = grads.evaluate(
                lambda policy=policy, mb=mb: ppo_task_losses(policy, mb, cfg.ppo), mb.task_id
            )
            assert grads.grouped
            grads.step(
                torch.optim.SGD(policy.parameters(), lr=0.0), losses, present, features, list(policy.parameters()), None
            )
        else:
            reduce_terms(ppo_terms(policy, mb, cfg.ppo)).loss.backward()
        out.append({k: p.grad for k, p in policy.named_parameters()})
    for k in out[0]:
        assert (out[0][k] is None) == (out[1][k] is None), k
        if out[0][k] is not None:
            torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-4, atol=1e-6, msg=k)
