"""Encoders and per-task heads shared by every policy architecture."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from mtrl.nn.network import PolicySpec


def init_linear(layer: nn.Linear, gain: float | None = math.sqrt(2)) -> nn.Linear:
    """Orthogonal weights and zero bias, as in PPO implementations (CleanRL, baselines); with
    gain None the layer keeps PyTorch's default init (as MOORE's official networks)."""
    if gain is not None:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


def gains(spec: PolicySpec, out_gain: float) -> tuple[float | None, float | None]:
    """(output, hidden) orthogonal-init gains; None for PyTorch's default init (as MOORE's official networks)."""
    return (None, None) if spec.init == "default" else (out_gain, math.sqrt(2))


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, gain: float | None = math.sqrt(2)) -> nn.Sequential:
    """Linear layers with `activation` after each one (`init_linear` with `gain`)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [init_linear(nn.Linear(a, b), gain), activation()]
    return nn.Sequential(*layers)


class GridEncoder(nn.Module):
    """MiniGrid image encoder from MOORE: conv 16/32/64 with 2x2 kernels, ReLU between, flattened.

    Input [B, H, W, C] (uint8 ids or floats); a 7x7x3 image gives 64 * 4 * 4 = 1024 features.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        h, w, c = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Conv2d(32, 64, 2), nn.Flatten()
        )
        self.out_dim = 64 * (h - 3) * (w - 3)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().permute(0, 3, 1, 2))


class FlatEncoder(nn.Module):
    """Identity on flat vector observations."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().flatten(1)


def with_task_onehot(x: torch.Tensor, task_id: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """cat(x, onehot(task)): how single-network architectures see the task."""
    return torch.cat([x, nn.functional.one_hot(task_id, num_tasks).to(x.dtype)], dim=1)


def make_encoder(obs_shape: tuple[int, ...]) -> GridEncoder | FlatEncoder:
    """A conv encoder for HxWxC grids, identity for flat vectors."""
    if len(obs_shape) == 3:
        return GridEncoder(obs_shape)
    return FlatEncoder(math.prod(obs_shape))


class ParallelLinear(nn.Module):
    """n linear layers applied together as one einsum: [B, n, in] (or one [B, in] for all) -> [B, n, out].
    Soft Modularization's modules of a layer, CARE's encoders."""

    def __init__(self, n: int, in_dim: int, out_dim: int, gain: float | None) -> None:
        super().__init__()
        weight, bias = torch.empty(n, in_dim, out_dim), torch.zeros(n, out_dim)
        for k in range(n):  # init only: each module as its own Linear
            layer = init_linear(nn.Linear(in_dim, out_dim), gain)
            weight[k], bias[k] = layer.weight.detach().t(), layer.bias.detach()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the first layer: every module sees the same input
            return torch.einsum("bi,nio->bno", x, self.weight) + self.bias
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias


class TaskGroups:
    """A batch's rows regrouped by task: [B, ...] <-> [K, m, ...], task k's rows in slice k in
    their batch order, zero-padded to the largest task's m rows. Lets per-task weights act as one
    batched matmul over K (no loop over tasks, no per-row weight copies)."""

    def __init__(self, task_id: torch.Tensor, num_tasks: int) -> None:
        n = task_id.shape[0]
        counts = torch.bincount(task_id, minlength=num_tasks)
        self.k, self.m = num_tasks, max(int(counts.max()), 1)  # one host sync on a GPU
        order = torch.argsort(task_id, stable=True)
        first = torch.cumsum(counts, 0) - counts  # where each task's rows start in `order`
        self.slot = torch.empty_like(order)  # row i -> its place in the flattened [K * m]
        self.slot[order] = task_id[order] * self.m + torch.arange(n, device=task_id.device) - first[task_id[order]]

    def group(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros((self.k * self.m, *x.shape[1:]))
        out[self.slot] = x
        return out.view(self.k, self.m, *x.shape[1:])

    def ungroup(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(self.k * self.m, *y.shape[2:])[self.slot]


class TaskHeads(nn.Module):
    """One linear head per task, all K stored side by side as one [in, K * out] matrix.

    No Python loop over tasks and no per-row weight copies; a loss on task c's rows gives zero
    gradient to every other head. A small batch applies all K heads in one matmul and keeps each
    row's own task's output (a gather), which costs K times the useful work; a large one (a
    training minibatch) is scattered into a [K, rows per task, in] block, zero-padded to the
    largest task's count, for one batched matmul of each task's rows with its own head only.
    """

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, gain: float | None) -> None:
        super().__init__()
        self.num_tasks, self.out_dim = num_tasks, out_dim
        weight, bias = torch.empty(num_tasks, out_dim, in_dim), torch.zeros(num_tasks, out_dim)
        if gain is None:  # PyTorch's default nn.Linear init, per head: U(-1/sqrt(in), 1/sqrt(in))
            bound = 1.0 / math.sqrt(in_dim)
            weight.uniform_(-bound, bound)
            bias.uniform_(-bound, bound)
        else:
            for k in range(num_tasks):  # init only; orthogonal per head as for a plain Linear
                nn.init.orthogonal_(weight[k], gain)
        self.weight = nn.Parameter(weight.permute(2, 0, 1).reshape(in_dim, num_tasks * out_dim).contiguous())
        self.bias = nn.Parameter(bias)

    def per_task(self, weight: torch.Tensor) -> torch.Tensor:
        """`weight` (the parameter or its gradient) as [K, in, out]: head k is x @ per_task(w)[k]."""
        return weight.view(weight.shape[0], self.num_tasks, self.out_dim).transpose(0, 1)

    def forward(self, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        if len(x) < 32 * self.num_tasks:
            all_heads = (x @ self.weight).view(len(x), self.num_tasks, self.out_dim)  # [B, K, out]
            return all_heads[torch.arange(len(task_id), device=x.device), task_id] + self.bias[task_id]
        counts = torch.bincount(task_id, minlength=self.num_tasks)
        order = torch.argsort(task_id, stable=True)
        rank = torch.empty_like(task_id)  # each row's position among its task's rows
        rank[order] = torch.arange(len(task_id), device=x.device) - (torch.cumsum(counts, 0) - counts)[task_id[order]]
        block = x.new_zeros(self.num_tasks, int(counts.max()), x.shape[1])
        block[task_id, rank] = x
        out = torch.baddbmm(self.bias.unsqueeze(1), block, self.per_task(self.weight))  # [K, rows, out]
        return out[task_id, rank]


class OutputHead(nn.Module):
    """[Linear(in, hidden) -> Tanh ->] Linear(., out), per task (multi-head) or shared on
    cat(x, onehot(task)) (single-head), the two head types of MOORE (docs/algorithms/moore.md, "Heads")."""

    def __init__(
        self,
        num_tasks: int,
        in_dim: int,
        hidden: int | None,
        out_dim: int,
        gain: float | None,
        multi: bool,
        hidden_gain: float | None = math.sqrt(2),
    ) -> None:
        super().__init__()
        self.num_tasks, self.multi = num_tasks, multi
        dims = [in_dim + (0 if multi else num_tasks)] + ([hidden] if hidden else []) + [out_dim]
        gains = [hidden_gain] * (len(dims) - 2) + [gain]
        if multi:
            self.layers = nn.ModuleList(TaskHeads(num_tasks, a, b, g) for a, b, g in zip(dims[:-1], dims[1:], gains))
        else:
            self.layers = nn.ModuleList(init_linear(nn.Linear(a, b), g) for a, b, g in zip(dims[:-1], dims[1:], gains))

    def forward(self, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        if not self.multi:
            x = with_task_onehot(x, task_id, self.num_tasks)
        for i, layer in enumerate(self.layers):
            x = layer(x, task_id) if self.multi else layer(x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x
