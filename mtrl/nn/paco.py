"""PaCo, Parameter-Compositional multi-task RL (Sun et al., NeurIPS 2022), as an mtrl architecture
(`policy.arch: paco`).

Every layer of the network after the encoder is compositional: a shared parameter set Phi of K_p
copies of the layer's weights and bias, and per task a compositional vector w_tau in R^{K_p}, so
that task tau's layer is theta_tau = Phi w_tau (paper eq. 2). The first layer is computed as
x (Phi w_tau) = sum_k w_tau[k] (x Phi_k) (a layer is linear in its parameters): one einsum over
the K_p sets, whose output is what the gradient aggregators see as shared (`features`). The wider
layers after it form theta_tau for each of the K tasks once (K x K_p x in x out, small next to the
batch) and apply them to the batch regrouped by task as one batched matmul (`TaskGroups`), about
the cost of one plain layer instead of K_p; no loop over tasks either way.
As the authors' code (TToTMooN/paco-mtrl, alf `CompositionalFC`): w comes from a bias-free linear
map of the task one-hot initialised N(0, 1), and the K_p sets start as identical copies.

The paper's stability mechanisms act on the per-task losses (`extreme_tasks`, `reset_tasks`): a
task whose loss exceeds `policy.paco.loss_threshold` (3e3 in the authors' MT10 config) is masked
out of that step's loss, and its w is re-initialised as a random convex combination of the other
tasks' w (the code's "interpolate" reset). The SAC learner applies them and counts each event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtrl.nn.layers import ParallelLinear, TaskGroups, gains, make_encoder
from mtrl.nn.network import PolicySpec


@dataclass
class PacoOptions:
    """policy.paco: the parameter set and the stability mechanisms (the authors' MT10 values)."""

    param_sets: int = field(
        default=5,
        metadata={
            "help": "K_p, the size of the shared parameter set Phi (5 for MT10; Meta-World+ uses 20 for MT50)",
            "lo": 1,
        },
    )
    loss_threshold: float = field(
        default=3e3,
        metadata={
            "help": "a task whose loss exceeds this is masked out of the step and its w reset",
            "lo": 0.0,
            "lo_open": True,
        },
    )


def parameter_set(sets: int, in_dim: int, out_dim: int, gain: float | None) -> ParallelLinear:
    """Phi of one layer: K_p copies of a Linear(in, out), one init copied to all (the authors'
    `kernel_identical_init`); applied to [B, in] it gives every set's output, [B, K_p, out]."""
    layer = ParallelLinear(sets, in_dim, out_dim, gain)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[:1].expand_as(layer.weight))
        layer.bias.copy_(layer.bias[:1].expand_as(layer.bias))
    return layer


class PacoNet(nn.Module):
    """PaCo: see the module docstring. (obs, task_id) -> [B, out_dim]."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        o = PacoOptions(**dict(spec.options))
        out_g, hid_g = gains(spec, out_gain)
        self.num_tasks, self.loss_threshold = spec.num_tasks, o.loss_threshold
        self.encoder = make_encoder(spec.obs_shape)
        self.task_weights = nn.Linear(spec.num_tasks, o.param_sets, bias=False)  # row tau of W^T: w_tau
        nn.init.normal_(self.task_weights.weight, 0.0, 1.0)
        dims = [self.encoder.out_dim] + [spec.hidden] * spec.layers + [out_dim]
        self.layers = nn.ModuleList(
            parameter_set(o.param_sets, a, b, out_g if i == len(dims) - 2 else hid_g)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
        )

    def compositional_vectors(self) -> torch.Tensor:
        """w for every task, [K, K_p]."""
        return self.task_weights.weight.t()

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        w = self.compositional_vectors()  # [K, K_p]
        first, *rest = self.layers
        h = torch.einsum("bko,bk->bo", first(self.encoder(obs)), w[task_id])  # x (Phi w) = sum_k w[k] (x Phi_k)
        if not rest:
            return h
        groups = TaskGroups(task_id, self.num_tasks)
        h = groups.group(h)  # [K, m, hidden]
        for layer in rest:
            assert isinstance(layer, ParallelLinear)  # every layer is a parameter_set
            weight = torch.einsum("pio,kp->kio", layer.weight, w)  # theta_tau = Phi w_tau for every task
            h = torch.baddbmm((w @ layer.bias).unsqueeze(1), torch.relu(h), weight)
        return groups.ungroup(h)

    def extreme_tasks(self, task_losses: torch.Tensor) -> torch.Tensor:
        """[K] bool: the tasks whose loss exceeds the threshold (or is not finite), to mask out."""
        return ~(task_losses.detach() <= self.loss_threshold)

    @torch.no_grad()
    def reset_tasks(self, extreme: torch.Tensor, gen: torch.Generator | None = None) -> int:
        """Re-initialise each extreme task's w as a random convex combination of the others' w
        (uniform weights, L1-normalised); nothing when every task is extreme. Returns how many."""
        normal = ~extreme
        if not bool(extreme.any()) or not bool(normal.any()):
            return 0
        w = self.task_weights.weight  # [K_p, K]: column tau is w_tau
        mix = torch.rand(int(extreme.sum()), int(normal.sum()), generator=gen, device=w.device)
        mix = mix / mix.sum(1, keepdim=True)
        w[:, extreme] = w[:, normal] @ mix.t()
        return int(extreme.sum())
