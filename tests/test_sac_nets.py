"""SAC actor and twin critics: shapes, log-std clamp, squashed log-prob, separate MOORE networks."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from mtrl.errors import MtrlError
from mtrl.nn import PolicySpec, QCritic, SACActor, TwinQ
from mtrl.nn.moore import MixtureEncoder

OBS, ACT, TASKS = 39, 4, 10


def spec(arch: str) -> PolicySpec:
    return PolicySpec((OBS,), TASKS, ACT, False, arch, hidden=64, layers=2, num_experts=4)


def batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1, torch.arange(n) % TASKS


@pytest.mark.parametrize("arch", ["mlp", "multihead", "moe", "moore"])
def test_shapes_and_action_range(arch):
    obs, act, task = batch()
    actor, critics = SACActor(spec(arch)), TwinQ(spec(arch))
    mean, log_std = actor(obs, task)
    assert mean.shape == log_std.shape == (32, ACT)
    a, logp = actor.sample(obs, task)
    assert a.shape == (32, ACT) and logp.shape == (32,) and torch.isfinite(logp).all()
    assert (a.abs() < 1).all()
    q1, q2 = critics(obs, act, task)
    assert q1.shape == q2.shape == (32,)


def test_log_std_is_clamped_to_moore_range():
    actor = SACActor(spec("moore"))
    obs, _, task = batch()
    with torch.no_grad():  # push the raw log-std far outside [-10, 2] both ways
        last = actor.net.head.layers[-1]
        last.bias[:, ACT:] = 50.0
        assert actor(obs, task)[1].max() == 2.0
        last.bias[:, ACT:] = -50.0
        assert actor(obs, task)[1].min() == -10.0


def test_log_prob_matches_change_of_variables():
    actor = SACActor(spec("multihead"))
    obs, _, task = batch()
    torch.manual_seed(1)
    a, logp = actor.sample(obs, task)
    mean, log_std = actor(obs, task)
    u = torch.atanh(a.double().clamp(-1 + 1e-12, 1 - 1e-12))
    expected = Normal(mean.double(), log_std.double().exp()).log_prob(u).sum(-1) - torch.log1p(-(a.double() ** 2)).sum(
        -1
    )
    torch.testing.assert_close(logp.double(), expected, atol=2e-3, rtol=1e-4)


def test_greedy_action_is_tanh_of_mean():
    actor = SACActor(spec("moore"))
    obs, _, task = batch()
    a, _ = actor.sample(obs, task, greedy=True)
    torch.testing.assert_close(a, torch.tanh(actor(obs, task)[0]))


def test_actor_and_each_twin_critic_are_separate_moore_networks():
    actor, critics = SACActor(spec("moore")), TwinQ(spec("moore"))
    mixtures = [m for net in (actor, critics.q1, critics.q2) for m in net.modules() if isinstance(m, MixtureEncoder)]
    assert len(mixtures) == 3 and all(m.orthogonal and m.experts.k == 4 for m in mixtures)
    # the critics' experts read cat(s, a), the actor's read s
    assert [m.experts.layers[0].weight.shape[1] for m in mixtures] == [OBS, OBS + ACT, OBS + ACT]
    params = [{id(p) for p in net.parameters()} for net in (actor, critics.q1, critics.q2)]
    assert not (params[0] & params[1]) and not (params[1] & params[2]) and not (params[0] & params[2])
    obs, act, task = batch()
    q1, q2 = critics(obs, act, task)
    assert not torch.allclose(q1, q2)  # independent initialisation


def test_critic_depends_on_action_and_q1_loss_leaves_q2_and_actor_untouched():
    actor, critics = SACActor(spec("moore")), TwinQ(spec("moore"))
    obs, act, task = batch()
    assert not torch.allclose(critics.q1(obs, act, task), critics.q1(obs, -act, task))
    critics.q1(obs, act, task).sum().backward()
    assert all(p.grad is None for p in critics.q2.parameters())
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is not None for p in critics.q1.parameters())


def test_discrete_or_image_spec_is_refused():
    with pytest.raises(MtrlError, match="continuous actions"):
        SACActor(PolicySpec((7, 7, 3), 3, 7, True, "moore", num_experts=2))
    with pytest.raises(MtrlError, match="flat observations"):
        QCritic(PolicySpec((7, 7, 3), 3, 2, False, "moore", num_experts=2))


def test_squash_correction_is_stable_for_large_pre_activations():
    actor = SACActor(spec("mlp"))
    obs, _, task = batch()
    with torch.no_grad():
        actor.net.head.bias[:ACT] = 30.0  # tanh(30) == 1.0 in float32: a naive log(1 - a^2) is -inf
    _, logp = actor.sample(obs, task)
    # log(1 - tanh(30)^2) = log 4 - 60 per dimension, so log pi is about +58.6 per dimension
    assert torch.isfinite(logp).all() and logp.min() > 50 * ACT
