"""MOORE: a mixture of orthogonal experts (Hendawy et al., ICLR 2024), and its MoE baseline.

k experts run on the same input as one batched op (weights [k, in, out], or a grouped conv),
their k representations are orthonormalised per sample with Gram-Schmidt (MOORE, eq. 4), and a
task-specific linear combination of them, squashed by tanh, is the shared feature (eq. 5). The
encoder computes that combination from the Cholesky factor of the experts' Gram matrix
(`orthonormal_mix`), the same function as `gram_schmidt` followed by the mixing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch._C._functorch import is_batchedtensor  # no public form: whether a tensor is inside vmap

from mtrl.errors import MtrlError


def gram_schmidt(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Orthonormalise the k rows of each sample: h [B, k, D] -> U [B, k, D] with U U^T = I.

    Classical Gram-Schmidt in expert order (u_i = normalise(h_i - sum_{j<i} (h_i . u_j) u_j)),
    equal to Q of the QR of h^T with diag(R) > 0. The reference code has no epsilon and gives NaN
    for dependent experts; here the norm is sqrt(|v|^2 + eps^2), which keeps zero or dependent
    experts finite (value and gradient) and moves a unit-scale output by about eps^2.
    """
    k = h.shape[-2]
    if k > h.shape[-1]:
        raise ValueError(f"gram_schmidt needs k <= D, got k={k}, D={h.shape[-1]}")
    basis: list[torch.Tensor] = []
    for i in range(k):  # inherently sequential over the k (<= ~10) experts; each step is batched over B and D
        v = h[..., i, :]
        if basis:
            u = torch.stack(basis, dim=-2)  # [B, i, D]
            # the projections as elementwise products and sums: a bmm of B tiny [1, D] @ [D, i]
            # matrices costs more than the arithmetic (forward and backward)
            v = v - ((u * v.unsqueeze(-2)).sum(-1, keepdim=True) * u).sum(dim=-2)
        basis.append(v / torch.sqrt((v * v).sum(-1, keepdim=True) + eps * eps))
    return torch.stack(basis, dim=-2)


def orthonormal_mix(h: torch.Tensor, w: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """sum_i w[i] u_i with U = gram_schmidt(h): h [B, k, D], w [B, k] -> [B, D], without forming U.

    Classical Gram-Schmidt in expert order is h = L U with L the Cholesky factor of the Gram
    matrix G = h h^T (lower, positive diagonal), so w^T U = w^T L^-1 h = a^T h with L^T a = w
    (MOORE, eqs. 4-5). That reads h a few times instead of several times per projection step: the
    mixing's forward + backward is 2-3x faster at MiniGrid's shapes, the whole encoder's 1.3x at
    the paper protocol's minibatch (scripts/bench_moore.py), more for larger k. G gets eps^2 on
    its diagonal (the counterpart of gram_schmidt's eps); where G is singular in floating point
    (duplicate experts) the Cholesky fails and the batch takes gram_schmidt's path.
    """
    k = h.shape[-2]
    if k > h.shape[-1]:
        raise ValueError(f"gram_schmidt needs k <= D, got k={k}, D={h.shape[-1]}")
    eye = torch.eye(k, dtype=h.dtype, device=h.device)
    g = h @ h.transpose(-1, -2) + (eps * eps) * eye
    chol, info = torch.linalg.cholesky_ex(g)
    fails = info.any()
    if is_batchedtensor(fails):
        # under torch.func.vmap (the SAC critic ensemble, mtrl.nn.sac.CriticEnsemble) the branch is a
        # select per vmapped member: both paths run, the Cholesky one on an identity where it failed
        # so that no NaN reaches the backward; gram_schmidt at k experts is a small share of the cost
        chol = torch.linalg.cholesky(torch.where(fails, eye, g))
        a = torch.linalg.solve_triangular(chol.transpose(-1, -2), w.unsqueeze(-1), upper=True)
        return torch.where(fails, (w.unsqueeze(-1) * gram_schmidt(h, eps)).sum(-2), (a * h).sum(-2))
    if bool(fails):  # on CUDA one host sync per forward: the price of the exact fallback
        return (w.unsqueeze(-1) * gram_schmidt(h, eps)).sum(-2)
    a = torch.linalg.solve_triangular(chol.transpose(-1, -2), w.unsqueeze(-1), upper=True)  # [B, k, 1]
    return (a * h).sum(-2)


class BatchedLinear(nn.Module):
    """k independent linear layers applied as one batched matmul: [k, B, in] -> [k, B, out]."""

    def __init__(self, k: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per expert
        self.weight = nn.Parameter(torch.empty(k, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MLPExperts(nn.Module):
    """k MLP experts (Meta-World: 400-400-400, ReLU between, linear last): [B, in] -> [B, k, D]."""

    def __init__(self, k: int, in_dim: int, sizes: tuple[int, ...] = (400, 400, 400)) -> None:
        super().__init__()
        self.k, self.out_dim = k, sizes[-1]
        dims = (in_dim, *sizes)
        self.layers = nn.ModuleList(BatchedLinear(k, a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float().flatten(1).unsqueeze(0).expand(self.k, -1, -1)
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = torch.relu(y)
        return y.transpose(0, 1)

    def forward_grouped(self, x: torch.Tensor) -> torch.Tensor:
        """Each expert on its own rows: x [k, C, in] -> [k, C, D] (a sparse gate's dispatch)."""
        y = x.float().flatten(2)
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = torch.relu(y)
        return y


class ConvExperts(nn.Module):
    """k MiniGrid conv experts (16/32/64 channels, 2x2 kernels, ReLU between, none after the last)
    as one conv per layer: [B, H, W, C] -> [B, k, 64 * (H-3) * (W-3)].

    Every expert reads the same image, so the first layer of all k experts is one plain conv with
    k * 16 output channels (the same weights as a grouped conv over k copies of the image, without
    the copies); the later layers are grouped convs, group g being expert g."""

    def __init__(self, k: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        h, w, c = shape
        self.k = k
        self.net = nn.Sequential(
            nn.Conv2d(c, k * 16, 2),
            nn.ReLU(),
            nn.Conv2d(k * 16, k * 32, 2, groups=k),
            nn.ReLU(),
            nn.Conv2d(k * 32, k * 64, 2, groups=k),
        )
        self.out_dim = 64 * (h - 3) * (w - 3)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().permute(0, 3, 1, 2)).reshape(obs.shape[0], self.k, self.out_dim)

    def forward_grouped(self, obs: torch.Tensor) -> torch.Tensor:
        """Each expert on its own images: obs [k, C, H, W, c] -> [k, C, out_dim] (a sparse gate's
        dispatch). The first layer's plain conv weight [k * 16, c, 2, 2] is, read as a grouped conv
        over k groups of c channels, each expert's own first layer."""
        k, n, h, w, c = obs.shape
        x = obs.float().permute(1, 0, 4, 2, 3).reshape(n, k * c, h, w)
        first = self.net[0]
        assert isinstance(first, nn.Conv2d)
        x = nn.functional.conv2d(x, first.weight, first.bias, groups=k)
        x = self.net[2:](self.net[1](x))
        return x.reshape(n, k, self.out_dim).transpose(0, 1)

    def forward_per_task(self, params: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        """The forward of K parameter sets (params[name] [K, *shape]) on obs regrouped by task [K, m, H, W, C]
        -> [K, m, k, out_dim] (mtrl.algos.task_jacobian). Each layer is one conv whose groups are the K
        tasks (times the experts), in channels-last layout throughout: under vmap the same convs ran
        1.5x the plain forward + backward at the critic's 6000-row batch, this way 1.1x (docs/benchmarks.md)."""
        tasks, m, h, w, c = obs.shape
        x = obs.float().permute(1, 0, 4, 2, 3).reshape(m, tasks * c, h, w).contiguous(memory_format=torch.channels_last)
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.Conv2d):
                weight, bias = params[f"net.{i}.weight"], params[f"net.{i}.bias"]
                x = nn.functional.conv2d(x, weight.flatten(0, 1), bias.flatten(), groups=tasks * layer.groups)
            else:
                x = layer(x)
        return x.reshape(m, tasks, self.k, self.out_dim).transpose(0, 1)


class MixtureEncoder(nn.Module):
    """Experts -> (Gram-Schmidt if orthogonal) -> tanh(sum_i w_c[i] u_i) with w_c = W onehot(c).

    W is a bias-free Linear(n_tasks, k): unconstrained, state-independent task weights (MOORE).
    With orthogonal=False this is the MoE baseline, identical except for the missing Gram-Schmidt.
    """

    def __init__(self, experts: MLPExperts | ConvExperts, num_tasks: int, orthogonal: bool) -> None:
        super().__init__()
        if orthogonal and experts.k > experts.out_dim:
            raise MtrlError(
                f"policy.moore.num_experts={experts.k} exceeds the expert feature size {experts.out_dim}; "
                "MOORE's Gram-Schmidt needs num_experts <= feature size"
            )
        self.experts, self.orthogonal = experts, orthogonal
        self.task_weights = nn.Linear(num_tasks, experts.k, bias=False)
        self.out_dim = experts.out_dim

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        h = self.experts(obs)
        w = self.task_weights.weight.t()[task_id]  # [B, k]: W onehot(c), as a row gather
        if self.orthogonal:
            return torch.tanh(orthonormal_mix(h, w))  # sum_i w_c[i] u_i
        return torch.tanh((w.unsqueeze(-1) * h).sum(1))  # elementwise (see gram_schmidt)


def make_mixture(obs_shape: tuple[int, ...], num_tasks: int, k: int, orthogonal: bool) -> MixtureEncoder:
    """Conv experts for HxWxC grids, 400-400-400 MLP experts for flat vectors."""
    experts: MLPExperts | ConvExperts
    if len(obs_shape) == 3:
        experts = ConvExperts(k, obs_shape)
    else:
        experts = MLPExperts(k, math.prod(obs_shape))
    return MixtureEncoder(experts, num_tasks, orthogonal)
