"""CARE, Contextual Attention-based REpresentation (Sodhani et al., ICML 2021), as an mtrl
architecture (`policy.arch: care`).

k encoders of the state are mixed by attention weights computed from a task context only, and the
mixture, concatenated with the context, feeds a torso MLP (`policy.hidden` x `policy.layers`, 3 x 400
in the paper's Meta-World setting). The context is the suite's `task_metadata` row of the task (e.g.
sentence embeddings of the task descriptions, as the paper's RoBERTa embeddings), projected to
`context_dim`; a suite without metadata gets a learned embedding of the task id instead (the paper's
ablation, and what Meta-World+ ships). Sizes follow Meta-World+ (rainx0r/metaworld-algorithms,
`nn/care.py`): 6 encoders of 2 x 50, a 50-d context through an MLP 50 -> 50, attention MLP
50 -> 50 -> k with a softmax at temperature 1. Each encoder layer is one einsum over the k encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtrl.nn.layers import ParallelLinear, gains, init_linear, make_encoder, mlp
from mtrl.nn.network import PolicySpec


@dataclass
class CareOptions:
    """policy.care: the mixture of encoders and the context."""

    num_encoders: int = field(
        default=6, metadata={"help": "encoders k (Meta-World+: 6 for MT10, 10 for MT50)", "lo": 1}
    )
    encoder_width: int = field(default=50, metadata={"help": "width of every encoder layer", "lo": 1})
    encoder_depth: int = field(default=2, metadata={"help": "layers per encoder", "lo": 1})
    context_dim: int = field(default=50, metadata={"help": "size of the task context embedding", "lo": 1})
    temperature: float = field(
        default=1.0, metadata={"help": "softmax temperature of the attention", "lo": 0.0, "lo_open": True}
    )


class CARENet(nn.Module):
    """CARE: see the module docstring. (obs, task_id) -> [B, out_dim]."""

    metadata: torch.Tensor | None  # a buffer when the suite has task metadata

    def __init__(self, spec: PolicySpec, out_dim: int, out_gain: float) -> None:
        super().__init__()
        o = CareOptions(**dict(spec.options))
        out_g, hid_g = gains(spec, out_gain)
        self.temperature = o.temperature
        self.encoder = make_encoder(spec.obs_shape)
        if spec.task_metadata is not None:  # the suite's context, fixed (a buffer: saved with the policy)
            metadata = torch.tensor(spec.task_metadata, dtype=torch.float32)
            self.register_buffer("metadata", metadata)
            self.context_in: nn.Module = init_linear(nn.Linear(metadata.shape[1], o.context_dim), hid_g)
        else:
            self.metadata = None
            self.context_in = nn.Embedding(spec.num_tasks, o.context_dim)
        self.context = nn.Sequential(nn.ReLU(), *mlp([o.context_dim, o.context_dim], nn.ReLU, hid_g))
        self.attention = nn.Sequential(
            *mlp([o.context_dim, o.context_dim], nn.ReLU, hid_g),
            init_linear(nn.Linear(o.context_dim, o.num_encoders), hid_g),
        )
        dims = [self.encoder.out_dim] + [o.encoder_width] * o.encoder_depth
        self.encoders = nn.ModuleList(ParallelLinear(o.num_encoders, a, b, hid_g) for a, b in zip(dims[:-1], dims[1:]))
        self.torso = mlp([o.encoder_width + o.context_dim] + [spec.hidden] * spec.layers, nn.ReLU, hid_g)
        self.head = init_linear(
            nn.Linear(spec.hidden if spec.layers else o.encoder_width + o.context_dim, out_dim), out_g
        )

    def task_context(self, task_id: torch.Tensor) -> torch.Tensor:
        """The context embedding of each row's task, [B, context_dim]."""
        raw = self.context_in(self.metadata[task_id]) if self.metadata is not None else self.context_in(task_id)
        return self.context(raw)

    def attention_weights(self, task_id: torch.Tensor) -> torch.Tensor:
        """[B, k] softmax weights over the encoders; they depend on the task context only."""
        return self._attend(self.task_context(task_id))

    def _attend(self, ctx: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.attention(ctx) / self.temperature, dim=-1)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        ctx = self.task_context(task_id)
        alpha = self._attend(ctx)
        h = self.encoder(obs)
        for layer in self.encoders:  # the k encoders together, ReLU after every layer
            h = torch.relu(layer(h))
        mixed = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)  # [B, width]
        return self.head(self.torso(torch.cat([mixed, ctx], dim=1)))
