"""MOORE: Gram-Schmidt against sign-fixed QR and the worked case; mixture and head gradients."""

from __future__ import annotations

import pytest
import torch

from mtrl.nn.moore import gram_schmidt, make_mixture, orthonormal_mix
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy


def sign_fixed_q(h: torch.Tensor) -> torch.Tensor:
    q, r = torch.linalg.qr(h.transpose(-1, -2))
    return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)).transpose(-1, -2)


@pytest.mark.parametrize("k, d", [(k, d) for k in (2, 4, 6) for d in (3, 400, 1024) if k <= d])
def test_gram_schmidt_equals_sign_fixed_qr_and_is_orthonormal(k, d):
    h = torch.randn(8, k, d, dtype=torch.float64, generator=torch.Generator().manual_seed(k * d))
    u = gram_schmidt(h)
    torch.testing.assert_close(u, sign_fixed_q(h), atol=1e-7, rtol=0)
    torch.testing.assert_close(
        u @ u.transpose(1, 2), torch.eye(k, dtype=torch.float64).expand(8, k, k), atol=1e-10, rtol=0
    )
    assert (gram_schmidt(h.float()) - u.float()).abs().max() < 1e-5  # the eps guard is invisible in float32


def test_more_experts_than_dimensions_is_refused():
    with pytest.raises(ValueError, match="k <= D"):
        gram_schmidt(torch.randn(2, 4, 3))


def test_worked_case():
    h = torch.tensor([[[3.0, 0, 4], [1, 2, 0], [0, 1, 1]]], dtype=torch.float64)
    u = gram_schmidt(h)[0]
    expected = [[0.6, 0, 0.8], [0.297113, 0.928477, -0.222834], [-0.742781, 0.371391, 0.557086]]
    torch.testing.assert_close(u, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(u @ u.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    f = torch.tanh(torch.tensor([0.5, -1, 2], dtype=torch.float64) @ u)
    torch.testing.assert_close(
        f, torch.tensor([-0.901968, -0.183590, 0.939878], dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("case", ["duplicate", "zero"])
def test_degenerate_experts_stay_finite(case):
    h = torch.randn(4, 3, 16)
    h[:, 2] = h[:, 0] if case == "duplicate" else 0.0
    h.requires_grad_(True)
    u = gram_schmidt(h)
    u.sum().backward()
    assert torch.isfinite(u).all() and torch.isfinite(h.grad).all()


@pytest.mark.parametrize("k, d", [(2, 1024), (4, 400), (6, 16)])
def test_orthonormal_mix_equals_gram_schmidt_then_mixing_in_value_and_gradient(k, d):
    gen = torch.Generator().manual_seed(k)
    h = torch.randn(16, k, d, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(16, k, dtype=torch.float64, generator=gen, requires_grad=True)
    fused = orthonormal_mix(h, w)
    looped = (w.unsqueeze(-1) * gram_schmidt(h)).sum(-2)
    torch.testing.assert_close(fused, looped, atol=1e-12, rtol=0)
    weights = torch.randn(16, d, dtype=torch.float64, generator=gen)
    for a, b in zip(
        torch.autograd.grad((fused * weights).sum(), (h, w)), torch.autograd.grad((looped * weights).sum(), (h, w))
    ):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("case", ["duplicate", "zero"])
def test_orthonormal_mix_of_degenerate_experts_stays_finite(case):
    h = torch.randn(4, 3, 16)
    h[:, 2] = h[:, 0] if case == "duplicate" else 0.0
    h.requires_grad_(True)
    out = orthonormal_mix(h, torch.randn(4, 3))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(h.grad).all()


def test_batched_experts_equal_k_separate_experts():
    """Expert g of the batched conv / bmm experts is exactly an independent network made of its
    own slice of the weights: no expert reads another's channels."""
    torch.manual_seed(0)
    k, img = 3, torch.randint(0, 10, (5, 7, 7, 3)).float()
    conv = make_mixture((7, 7, 3), 2, k, True).experts
    out = conv(img)
    x = img.permute(0, 3, 1, 2)
    for g in range(k):
        y = x
        for i, layer in enumerate(conv.net[::2]):
            n = layer.out_channels // k
            y = torch.nn.functional.conv2d(y, layer.weight[g * n : (g + 1) * n], layer.bias[g * n : (g + 1) * n])
            y = torch.relu(y) if i < 2 else y
        torch.testing.assert_close(out[:, g], y.flatten(1))
    vec = torch.randn(5, 39)
    mlp = make_mixture((39,), 2, k, True).experts
    out = mlp(vec)
    for g in range(k):
        y = vec
        for i, layer in enumerate(mlp.layers):
            y = y @ layer.weight[g] + layer.bias[g]
            y = torch.relu(y) if i < 2 else y
        torch.testing.assert_close(out[:, g], y)


@pytest.mark.parametrize("obs_shape", [(7, 7, 3), (39,)])
def test_every_expert_gets_gradient(obs_shape):
    mix = make_mixture(obs_shape, num_tasks=3, k=4, orthogonal=True)
    obs = torch.randint(0, 10, (6, *obs_shape)).float()
    mix(obs, torch.tensor([0, 1, 2, 0, 1, 2])).pow(2).sum().backward()
    first = mix.experts.net[0].weight.grad if obs_shape == (7, 7, 3) else mix.experts.layers[0].weight.grad
    per_expert = first.reshape(4, -1).abs().sum(1)
    assert (per_expert > 0).all()


def test_head_and_task_weight_isolation():
    """A loss on task 1's rows leaves other tasks' heads and task-weight rows without gradient."""
    policy = build_policy(
        PolicySpec((7, 7, 3), num_tasks=3, action_dim=7, discrete=True, arch="moore", hidden=32, num_experts=2)
    )
    obs, task = torch.randint(0, 10, (5, 7, 7, 3)), torch.full((5,), 1)
    (policy.distribution(obs, task).logits.sum() + policy.value(obs, task).sum()).backward()
    for net in (policy.actor, policy.critic):
        w = net.mixture.task_weights.weight.grad  # [k, n_tasks]: column c is task c's mixing weights
        assert w[:, 1].abs().sum() > 0 and (w[:, [0, 2]] == 0).all()
        assert len(net.head.layers) == 2  # MiniGrid: Linear(D, hidden) -> Tanh -> Linear(hidden, out)
        for layer in net.head.layers:
            g = layer.per_task(layer.weight.grad)
            assert g[1].abs().sum() > 0 and (g[[0, 2]] == 0).all()


def test_moe_differs_from_moore_only_by_gram_schmidt():
    torch.manual_seed(0)
    moore = make_mixture((39,), num_tasks=3, k=4, orthogonal=True)
    moe = make_mixture((39,), num_tasks=3, k=4, orthogonal=False)
    moe.load_state_dict(moore.state_dict())
    obs, task = torch.randn(5, 39), torch.tensor([0, 1, 2, 1, 0])
    h = moore.experts(obs)
    w = moore.task_weights.weight.t()[task]
    torch.testing.assert_close(moore(obs, task), torch.tanh((w.unsqueeze(1) @ gram_schmidt(h)).squeeze(1)))
    torch.testing.assert_close(moe(obs, task), torch.tanh((w.unsqueeze(1) @ h).squeeze(1)))


@pytest.mark.parametrize("obs_shape, layers", [((7, 7, 3), 2), ((39,), 1)])
def test_single_head_sees_the_task_one_hot(obs_shape, layers):
    spec = PolicySpec(
        obs_shape, num_tasks=3, action_dim=4, discrete=True, arch="moore", hidden=32, num_experts=2, head="single"
    )
    net = build_policy(spec).actor
    assert len(net.head.layers) == layers and net.head.layers[0].in_features == net.mixture.out_dim + 3
    obs = torch.randint(0, 10, (1, *obs_shape)).float().repeat(3, *[1] * len(obs_shape))
    net.mixture.task_weights.weight.data.fill_(0.5)  # same feature for every task: only the one-hot differs
    out = net(obs, torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
