"""Sparse mixtures (`sparse_moe`, `dselect_k`; mtrl.nn.routing): each gate's exact k-sparsity,
gradients only into the selected experts, the balancing and DSelect-k's gate on cases worked by
hand, the collapsed-expert watch, bad options in one line, and toy runs that log the routing."""

from __future__ import annotations

import math

import pytest
import torch

from mtrl.config import load_config
from mtrl.errors import MtrlError
from mtrl.nn.network import PolicySpec, aux_terms, task_network
from mtrl.nn.routing import DSelectKGate, DSelectKOptions, RoutingLog, SparseMoEOptions, TopKGate
from mtrl.run.trainer import train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"


def net(arch: str, **options):  # noqa: ANN003, ANN201
    spec = PolicySpec((6,), 3, 2, True, arch, 16, options=tuple(options.items()))
    torch.manual_seed(0)
    return task_network(spec, 2, 1.0)


@pytest.mark.parametrize("route", ["task", "task_state"])
def test_top_k_gates_are_exactly_k_sparse_and_sum_to_one(route):
    gate = TopKGate(3, SparseMoEOptions(num_experts=5, k=2, route=route), 6)
    g = gate(torch.randn(40, 6), torch.arange(40) % 3)
    assert ((g > 0).sum(-1) == 2).all() and torch.allclose(g.sum(-1), torch.ones(40))


def test_dselect_k_gate_worked_case_and_exact_sparsity_once_decided():
    """E = 4, k = 2, gamma = 1, z = ((0.2, -0.1), (-0.6, 0.7)), w = (0.3, -0.3): S(z_1) = (0.784,
    0.352), so selector 1 over experts 00, 01, 10, 11 (most significant bit first) is (0.139968,
    0.076032, 0.508032, 0.275968); z_2 lies outside +-1/2, S = (0, 1), selector 2 = expert 01;
    softmax(w) = (0.645656, 0.354344) gives (0.090371, 0.403434, 0.328014, 0.178180)."""
    gate = DSelectKGate(1, DSelectKOptions(num_experts=4, k=2, gamma=1.0))
    with torch.no_grad():
        gate.z.copy_(torch.tensor([[[0.2, -0.1], [-0.6, 0.7]]]))
        gate.w.copy_(torch.tensor([[0.3, -0.3]]))
    assert gate.task_gates()[0].tolist() == pytest.approx([0.090371, 0.403434, 0.328014, 0.178180], abs=1e-6)
    with torch.no_grad():  # every z decided: each selector is one expert, so at most k = 2 are used
        gate.z.copy_(torch.tensor([[[0.9, -0.7], [-0.6, 0.7]]]))
    assert gate.task_gates()[0].tolist() == pytest.approx([0.0, 0.354344, 0.645656, 0.0], abs=1e-6)
    three = DSelectKGate(2, DSelectKOptions(num_experts=3, k=1))  # code 11 dropped, renormalised
    assert torch.allclose(three.task_gates().sum(-1), torch.ones(2))


@pytest.mark.parametrize("arch", ["sparse_moe", "dselect_k"])
def test_gradients_reach_only_the_selected_experts(arch):
    network = net(arch, num_experts=4, k=2)
    if arch == "dselect_k":  # decided selectors for task 1: experts 1 (01) and 2 (10)
        with torch.no_grad():
            network.gate.z[1] = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    network.train()
    out = network(torch.randn(8, 6), torch.full((8,), 1))
    out.sum().backward()
    chosen = (network.gate(torch.zeros(1, 6), torch.tensor([1]))[0] > 0).nonzero().flatten().tolist()
    assert len(chosen) == 2
    for layer in network.experts.layers:
        for e in range(4):
            got = layer.weight.grad[e].abs().sum().item()
            assert (got > 0) == (e in chosen), (e, chosen, got)


def test_switch_balancing_loss_and_loss_free_biases_worked_case():
    """Two experts, k = 1, task logits (ln 3, 0) and (0, ln 3); tasks (0, 0, 1) go to experts
    (0, 0, 1): f = (2/3, 1/3). The softmax p is (3/4, 1/4) for task 0 and (1/4, 3/4) for task 1, so
    the per-sample loss E sum_e f_e p_e is 2 (2/3 3/4 + 1/3 1/4) = 7/6 and 2 (2/3 1/4 + 1/3 3/4) =
    5/6; their mean 19/18 is E sum_e f_e P_e. The loss-free biases move against the load:
    b = (-u, +u), and after 6 passes at u = 0.1 (b_1 - b_0 = 1.2 > ln 3) task 0 goes to expert 1."""
    gate = TopKGate(2, SparseMoEOptions(num_experts=2, k=1, aux_coef=0.5), 3)
    with torch.no_grad():
        gate.task.weight.copy_(torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]]))
    tasks = torch.tensor([0, 0, 1])
    gate.train()
    gate(torch.zeros(3, 3), tasks)
    ((coef, per_sample),) = gate.pop_aux().values()
    assert coef == 0.5 and per_sample.tolist() == pytest.approx([7 / 6, 7 / 6, 5 / 6])
    assert per_sample.mean().item() == pytest.approx(19 / 18) and gate.pop_aux() == {}  # taken once
    biased = TopKGate(2, SparseMoEOptions(num_experts=2, k=1, balance="bias", bias_rate=0.1), 3)
    biased.load_state_dict(gate.state_dict())
    biased.train()
    for i in range(6):
        assert biased(torch.zeros(3, 3), tasks)[0].argmax().item() == 0, i
    assert biased.bias.tolist() == pytest.approx([-0.6, 0.6]) and biased.pop_aux() == {}
    assert biased(torch.zeros(3, 3), tasks)[0].argmax().item() == 1  # now all on expert 1: b moves back
    assert biased.bias.tolist() == pytest.approx([-0.5, 0.5])
    with torch.no_grad():  # no recording outside training passes
        biased(torch.zeros(3, 3), tasks)
    assert biased.bias.tolist() == pytest.approx([-0.5, 0.5])


def test_the_loss_functions_add_the_gates_auxiliary_terms():
    from mtrl.algos.losses import reduce_terms
    from mtrl.algos.ppo import PPOBatch, ppo_terms
    from mtrl.nn.policy import build_policy

    cfg = load_config(TOY, ["policy.arch=sparse_moe"])
    spec = PolicySpec((9,), 3, 4, True, "sparse_moe", 16, options=(("num_experts", 4), ("k", 2)))
    policy = build_policy(spec)
    n = 12
    mb = PPOBatch(torch.rand(n, 9), torch.arange(n) % 3, torch.zeros(n, dtype=torch.long), torch.zeros(n),
                  torch.randn(n), torch.zeros(n), torch.zeros(n))  # fmt: skip
    terms = ppo_terms(policy, mb, cfg.ppo)
    assert {"balance:actor.gate", "balance:critic.gate"} <= terms.terms.keys()
    assert "balance:actor.gate" in reduce_terms(terms).values and aux_terms(policy) == {}


def test_a_collapsed_expert_is_warned_once_and_counted():
    log = RoutingLog(2, 3, share=0.05, iterations=3)
    for i in range(5):
        log.add(torch.tensor([[0.5, 0.5, 0.0], [0.3, 0.69, 0.01]]), torch.tensor([0, 1]))
        shares, new = log.take()
        assert shares[1].tolist() == pytest.approx([0.3, 0.69, 0.01])
        assert new == ([2] if i == 2 else []), i  # under 5% for the 3rd iteration in a row: once
    assert log.take() == (None, [])  # no training pass since
    resumed = RoutingLog(2, 3, share=0.05, iterations=3)
    resumed.load_state_dict(log.state_dict())  # the watch's counters are checkpointed, not the mass
    assert set(log.state_dict()) == {"low_for", "warned"}
    resumed.add(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([0]))
    assert resumed.take()[1] == []  # expert 2 was warned before the resume


@pytest.mark.parametrize(
    "override, match",
    [
        (
            ["policy.sparse_moe.k=5"],
            r"policy.sparse_moe: needs num_experts >= 2 and 1 <= k <= num_experts, got k=5, E=4",
        ),
        (["policy.arch=dselect_k", "policy.dselect_k.num_experts=1"], "policy.dselect_k.num_experts"),
        (["policy.sparse_moe.topk=2"], "topk"),
    ],
)
def test_bad_gate_options_are_one_line(override, match, tmp_path):
    overrides = ["policy.arch=sparse_moe", *override, "rollout.workers=0", f"run_dir={tmp_path}"]
    with pytest.raises(MtrlError, match=match) as err:
        train(load_config(TOY, overrides))
    assert "\n" not in str(err.value)


def _scalars(run, prefix: str) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"] if tag.startswith(prefix)}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["policy.arch=sparse_moe", "policy.sparse_moe.route=task_state"], marks=pytest.mark.slow),
        ["policy.arch=sparse_moe", "policy.sparse_moe.balance=bias", "learner.aggregator=pcgrad"],
        ["policy.arch=dselect_k"],
    ],
    ids=["sparse_moe-aux", "sparse_moe-bias-pcgrad", "dselect_k"],
)
def test_toy_runs_log_each_tasks_expert_shares(tmp_path, extra):
    common = ["rollout.workers=0", "train.eval_episodes=0", "train.total_steps=3000", f"run_dir={tmp_path}"]
    run = train(load_config(TOY, [*common, *extra]))
    shares = _scalars(run, "experts/")
    assert {f"experts/sequence-{t}/{e}" for t in range(3) for e in range(4)} <= shares.keys()
    for t in range(3):
        last = [shares[f"experts/sequence-{t}/{e}"][-1] for e in range(4)]
        assert sum(last) == pytest.approx(1.0, abs=1e-4)  # (a task's k experts may change within an iteration)
    assert "faults/collapsed_experts" in _scalars(run, "faults/")


@pytest.mark.slow
def test_sac_trains_with_sparse_gates_in_actor_and_critics(tmp_path):
    overrides = ["rollout.workers=0", "train.eval_episodes=0", "train.total_steps=1200", f"run_dir={tmp_path}"]
    cfg = load_config(
        ROOT / "configs/toy_point_sac.yaml", [*overrides, "policy.arch=sparse_moe", "policy.sparse_moe.k=1"]
    )
    run = train(cfg)
    shares = _scalars(run, "experts/")
    assert {"experts/point-left/0", "experts/critic.q1/point-left/0", "experts/critic.q2/point-left/0"} <= shares.keys()


@pytest.mark.parametrize("shape", [(7, 7, 3), (39,)], ids=["conv", "mlp"])
@pytest.mark.parametrize("route", ["task", "task_state"])
def test_the_gather_dispatch_computes_what_the_dense_mask_does(shape, route):
    """sparse_moe's two dispatches: the same output and gradients, within float rounding."""
    outs, grads = [], []
    for dispatch in ("gather", "dense"):
        spec = PolicySpec(shape, 3, 4, True, "sparse_moe", 32, options=(("dispatch", dispatch), ("route", route)))
        torch.manual_seed(0)
        network = task_network(spec, 4, 1.0).train()
        g = torch.Generator().manual_seed(1)
        obs = torch.randint(0, 6, (50, *shape), generator=g).float() if len(shape) == 3 else torch.randn(50, 39)
        out = network(obs, torch.arange(50) % 3)
        out.sum().backward()
        outs.append(out.detach())
        grads.append({n: p.grad for n, p in network.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs[0], outs[1])
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5, msg=name)


def test_dselect_k_entropy_regulariser_is_the_selectors_entropy_per_sample():
    """At z = 0 every selector is uniform over E = 4 experts: entropy ln 4 each, 2 ln 4 for k = 2."""
    gate = DSelectKGate(2, DSelectKOptions(num_experts=4, k=2, entropy_coef=0.1))
    with torch.no_grad():
        gate.z.zero_()
    gate.train()
    gate(torch.zeros(3, 6), torch.tensor([0, 1, 1]))
    ((coef, per_sample),) = gate.pop_aux().values()
    assert coef == 0.1 and per_sample.tolist() == pytest.approx([2 * math.log(4)] * 3, rel=1e-5)


def test_a_module_whose_pop_aux_returns_the_wrong_thing_stops_with_one_line():
    class Bad(torch.nn.Module):
        def pop_aux(self):  # noqa: ANN202
            return {"balance": 0.5}  # no per-sample tensor

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), Bad())
    with pytest.raises(MtrlError, match=r"^module '1' \(Bad\): pop_aux\(\) returned \{'balance': 0.5\}; expected"):
        aux_terms(net)
