"""Soft Modularization (Yang et al., NeurIPS 2020) as an mtrl architecture (`policy.arch: softmod`).

The structure follows the authors' code (RchalYang/Soft-Module, `ModularGatedCascadeCondNet`), which
Meta-World+ (rainx0r/metaworld-algorithms, `nn/soft_modules.py`) also follows, rather than the
paper's equations where the two differ:
- state embedding f = Linear(x, D) -> ReLU -> Linear(D, D); task embedding z = Linear(onehot, D)
- routing input e = gating(z * f): ReLU -> Linear(D, G) -> ReLU -> Linear(G, G)
- routing (paper eq. 5-6, cascaded as in the code): p_1 = W_d(ReLU(e)); each later
  p_{l+1} = W_d(ReLU(W_u(cat(p_1..p_l)) * e)), every p a softmax over the source modules; L - 1
  n x n matrices between the L module layers, then a final n-vector that mixes the last layer
- module j of layer l+1 takes ReLU(sum_i p_l[j, i] out_l[i]) (the code's order: the ReLU after
  the weighted sum, not before it as the paper's eq. 8); the output is
  head(ReLU(sum_i p_final[i] out_{L-1}[i])).
Every layer's n modules are one batched einsum; the routing is batched over rows (no loop over
tasks or modules in the forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtrl.nn.layers import ParallelLinear, gains, init_linear, make_encoder
from mtrl.nn.network import PolicySpec

ROUTING_INIT = 1e-3  # W_d (routing logits) and the output layer start near 0: uniform routing (Meta-World+)


@dataclass
class SoftModOptions:
    """policy.softmod: the base network and routing sizes (Soft-Module's MT10 "shallow" config; its
    MT50 "deep" config is depth 4, num_modules 4, module_width 128)."""

    depth: int = field(default=2, metadata={"help": "module layers L of the base network", "lo": 1})
    num_modules: int = field(default=2, metadata={"help": "modules n per layer", "lo": 1})
    module_width: int = field(default=256, metadata={"help": "width of every module", "lo": 1})
    embedding_dim: int = field(default=400, metadata={"help": "state and task embedding size D", "lo": 1})
    gating_hidden: int = field(default=256, metadata={"help": "routing network width G", "lo": 1})


def small_linear(in_dim: int, out_dim: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.uniform_(layer.weight, -ROUTING_INIT, ROUTING_INIT)
    nn.init.zeros_(layer.bias)
    return layer


class SoftModularNet(nn.Module):
    """Soft Modularization: see the module docstring. (obs, task_id) -> [B, out_dim]."""

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        o: SoftModOptions = SoftModOptions(**dict(spec.options))
        out_g, hid_g = gains(spec, out_gain)
        self.num_tasks, self.n, self.depth = spec.num_tasks, o.num_modules, o.depth
        self.encoder = make_encoder(spec.obs_shape)
        D, G, n, w = o.embedding_dim, o.gating_hidden, o.num_modules, o.module_width
        self.state = nn.Sequential(
            init_linear(nn.Linear(self.encoder.out_dim, D), hid_g), nn.ReLU(), init_linear(nn.Linear(D, D), hid_g)
        )
        self.task = init_linear(nn.Linear(spec.num_tasks, D), hid_g)
        self.gating = nn.Sequential(
            nn.ReLU(), init_linear(nn.Linear(D, G), hid_g), nn.ReLU(), init_linear(nn.Linear(G, G), hid_g)
        )
        # routing l (l = 0..depth-1): n x n logits between module layers, the last one n logits
        sizes = [n * n] * (o.depth - 1) + [n]
        self.route_out = nn.ModuleList(small_linear(G, s) for s in sizes)
        self.route_in = nn.ModuleList(init_linear(nn.Linear(n * n * i, G), hid_g) for i in range(1, o.depth))
        self.base = nn.ModuleList(ParallelLinear(n, D if i == 0 else w, w, hid_g) for i in range(o.depth))
        self.head = init_linear(nn.Linear(w, out_dim), out_g)

    def routing(self, obs: torch.Tensor, task_id: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The routing weights: depth - 1 matrices [B, n, n] (row j: module j's mix of the previous
        layer's modules) and the final [B, n]; every row sums to 1 (softmax over source modules)."""
        return self._route(self.state(self.encoder(obs)), task_id)[1:]

    def _route(self, f: torch.Tensor, task_id: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        z = self.task(nn.functional.one_hot(task_id, self.num_tasks).to(f.dtype))
        e = self.gating(z * f)
        probs: list[torch.Tensor] = []
        x = torch.relu(e)
        for i, out in enumerate(self.route_out):
            if i > 0:  # cascaded: conditioned on every earlier routing (Soft-Module's code)
                x = torch.relu(self.route_in[i - 1](torch.cat([p.flatten(1) for p in probs], 1)) * e)
            logits = out(x)
            probs.append(torch.softmax(logits.view(len(f), self.n, self.n) if i < self.depth - 1 else logits, dim=-1))
        return f, probs[:-1], probs[-1]

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        f, mats, final = self._route(self.state(self.encoder(obs)), task_id)
        h = self.base[0](torch.relu(f))  # [B, n, w]
        for mat, layer in zip(mats, self.base[1:]):
            h = layer(torch.relu(torch.bmm(mat, h)))
        return self.head(torch.relu(torch.bmm(final.unsqueeze(1), h).squeeze(1)))
