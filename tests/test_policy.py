"""Policies: shapes for both architectures and gradient isolation between task heads."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy


@pytest.mark.parametrize("arch", ["mlp", "multihead"])
@pytest.mark.parametrize("obs_shape, discrete", [((7, 7, 3), True), ((39,), False)])
def test_shapes(arch, obs_shape, discrete):
    spec = PolicySpec(obs_shape, num_tasks=3, action_dim=7 if discrete else 4, discrete=discrete, arch=arch, hidden=32)
    policy = build_policy(spec)
    obs = torch.randint(0, 10, (5, *obs_shape), dtype=torch.uint8) if discrete else torch.randn(5, *obs_shape)
    task = torch.tensor([0, 1, 2, 0, 1])
    action, logp = policy.act(obs, task)
    assert (
        action.shape == ((5,) if discrete else (5, 4)) and logp.shape == (5,) and policy.value(obs, task).shape == (5,)
    )
    assert torch.isfinite(logp).all()


def test_multihead_head_isolation():
    """A loss on task 1's rows gives zero gradient to the other tasks' heads, in actor and critic."""
    policy = build_policy(PolicySpec((9,), num_tasks=3, action_dim=4, discrete=True, arch="multihead", hidden=16))
    obs, task = torch.randn(6, 9), torch.tensor([1, 1, 1, 1, 1, 1])
    loss = policy.distribution(obs, task).logits.sum() + policy.value(obs, task).sum()
    loss.backward()
    for net in (policy.actor, policy.critic):
        w, b = net.head.per_task(net.head.weight.grad), net.head.bias.grad
        assert w[1].abs().sum() > 0 and b[1].abs().sum() > 0
        assert (w[[0, 2]] == 0).all() and (b[[0, 2]] == 0).all()
        assert net.trunk[0].weight.grad.abs().sum() > 0  # the shared trunk learns from every task


def test_critic_loss_leaves_actor_untouched():
    policy = build_policy(PolicySpec((9,), num_tasks=2, action_dim=4, discrete=True, hidden=16))
    policy.value(torch.randn(4, 9), torch.tensor([0, 1, 0, 1])).sum().backward()
    assert all(p.grad is None for p in policy.actor.parameters())


def test_multihead_rows_use_their_own_head():
    policy = build_policy(PolicySpec((9,), num_tasks=3, action_dim=4, discrete=True, hidden=16))
    obs = torch.randn(1, 9).repeat(3, 1)
    logits = policy.actor(obs, torch.tensor([0, 1, 2]))
    x = policy.actor.trunk(obs[:1])
    for k in range(3):
        head = policy.actor.head
        expected = x @ head.per_task(head.weight)[k] + head.bias[k]
        torch.testing.assert_close(logits[k : k + 1], expected)


@pytest.mark.parametrize("arch", ["mlp", "multihead"])
def test_activation_setting_reaches_the_trunk(arch):
    """policy.activation=relu (Meta-World+'s SAC networks) gives a ReLU trunk; tanh stays the default."""
    from mtrl.config import load_config
    from mtrl.nn.policy import spec_from_config

    for value, act in (("relu", torch.nn.ReLU), (None, torch.nn.Tanh)):
        cfg = load_config(None, [f"policy.arch={arch}"] + ([f"policy.activation={value}"] if value else []))
        spec = spec_from_config((39,), gym.spaces.Box(-1, 1, (4,)), 3, cfg.policy, "sac")
        trunk = build_policy(spec).actor.net.trunk
        kinds = {type(m) for m in trunk}
        assert act in kinds and ({torch.nn.ReLU, torch.nn.Tanh} - {act}).isdisjoint(kinds)
