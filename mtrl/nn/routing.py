"""Sparse mixtures of experts: task-aware top-k routing (`sparse_moe`) and the DSelect-k gate
(`dselect_k`), over the same experts as MoE and MOORE (`mtrl.nn.moore`).

Every expert runs on every sample as one batched op and the gate's weights, exactly 0 outside the
selected experts, mix them (a dense mask): with task routing all of a task's samples share their
k experts, and at E <= 8 one batched op over all E is the cheap form on a CPU; an expert with
weight 0 receives an exact 0 gradient. The mixture is tanh(sum_e g_e h_e), then a per-task head, as MoE's.

Each gate records, in training passes with gradients on:
- the routing mass per task since the last `take_routing` (logged experts/<task>/<expert>), and
  warns once per expert whose share of all routing stays below `collapse_share` for
  `collapse_iterations` iterations (faults/collapsed_experts);
- its auxiliary loss terms per sample (`pop_aux`), which the algorithms' losses add
  (`mtrl.nn.network.aux_terms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from mtrl.errors import ConfigError
from mtrl.nn.layers import OutputHead, gains
from mtrl.nn.moore import ConvExperts, MLPExperts
from mtrl.nn.network import PolicySpec


@dataclass
class SparseMoEOptions:
    """policy.sparse_moe: task-aware top-k routing over E experts."""

    num_experts: int = field(default=4, metadata={"help": "experts E", "lo": 2})
    k: int = field(default=2, metadata={"help": "experts each sample uses (k <= E)", "lo": 1})
    route: Literal["task", "task_state"] = field(
        default="task", metadata={"help": "router input: the task alone, or the task and the observation"}
    )
    balance: Literal["aux", "bias", "none"] = field(
        default="aux",
        metadata={
            "help": "load balancing: aux (Switch Transformer's auxiliary loss E sum_e f_e P_e), bias "
            "(auxiliary-loss-free routing biases, DeepSeek 2024), none"
        },
    )
    aux_coef: float = field(default=0.01, metadata={"help": "balance=aux: the loss's coefficient", "lo": 0.0})
    bias_rate: float = field(default=0.001, metadata={"help": "balance=bias: the biases' update speed u", "lo": 0.0})
    head: Literal["multi", "single"] = field(default="multi", metadata={"help": "output head, as moe's"})
    dispatch: Literal["gather", "dense"] = field(
        default="gather",
        metadata={
            "help": "gather: each sample through its k experts only (one batched op over per-expert rows); "
            "dense: all E experts on every sample, masked (the same function)"
        },
    )
    collapse_share: float = field(
        default=0.02, metadata={"help": "an expert under this share of all routing counts as collapsed", "lo": 0.0}
    )
    collapse_iterations: int = field(default=20, metadata={"help": "iterations in a row before the warning", "lo": 1})


@dataclass
class DSelectKOptions:
    """policy.dselect_k: one DSelect-k gate per task over E experts."""

    num_experts: int = field(default=4, metadata={"help": "experts E", "lo": 2})
    k: int = field(default=2, metadata={"help": "single-expert selectors, so at most k experts (k <= E)", "lo": 1})
    gamma: float = field(default=1.0, metadata={"help": "the smooth-step's width", "lo": 0.0, "lo_open": True})
    entropy_coef: float = field(
        default=0.0, metadata={"help": "the selectors' entropy regulariser (0: off, the authors' default)", "lo": 0.0}
    )
    head: Literal["multi", "single"] = field(default="multi", metadata={"help": "output head, as moe's"})
    collapse_share: float = field(
        default=0.02, metadata={"help": "an expert under this share of all routing counts as collapsed", "lo": 0.0}
    )
    collapse_iterations: int = field(default=20, metadata={"help": "iterations in a row before the warning", "lo": 1})


class RoutingLog(nn.Module):
    """A gate's routing mass per task since the last `take`, and its collapsed-expert watch (its
    counters are buffers: saved in checkpoints, so a resume continues the watch)."""

    mass: torch.Tensor  # [K, E] routing mass since the last take (not saved)
    low_for: torch.Tensor  # [E] iterations in a row under the share
    warned: torch.Tensor  # [E] said on the console already

    def __init__(self, num_tasks: int, num_experts: int, share: float, iterations: int) -> None:
        super().__init__()
        self.share, self.iterations = share, iterations
        self.register_buffer("mass", torch.zeros(num_tasks, num_experts), persistent=False)
        self.register_buffer("low_for", torch.zeros(num_experts, dtype=torch.long))
        self.register_buffer("warned", torch.zeros(num_experts, dtype=torch.bool))

    @torch.no_grad()
    def add(self, gate: torch.Tensor, task_id: torch.Tensor) -> None:
        self.mass.index_add_(0, task_id, gate.detach().float())

    def take(self) -> tuple[torch.Tensor | None, list[int]]:
        """(each task's share of routing per expert [K, E], NaN rows for tasks not seen; or None
        without training passes) and the experts that have just collapsed."""
        mass = self.mass.cpu().clone()
        self.mass.zero_()
        if float(mass.sum()) == 0.0:
            return None, []
        expert_share = mass.sum(0) / mass.sum()
        self.low_for.copy_(torch.where(expert_share.to(self.low_for.device) < self.share, self.low_for + 1, 0))
        new = (self.low_for >= self.iterations) & ~self.warned
        self.warned |= new
        return mass / mass.sum(1, keepdim=True), new.nonzero().flatten().tolist()


def _check_k(arch: str, k: int, e: int) -> None:
    if e < 2 or not 1 <= k <= e:
        raise ConfigError(f"policy.{arch}: needs num_experts >= 2 and 1 <= k <= num_experts, got k={k}, E={e}")


class TopKGate(nn.Module):
    """Task-aware top-k routing ("Sparsely Activated Mixture-of-Experts are Robust Multi-Task
    Learners", Gupta et al. 2022): logits s = W onehot(c) (+ V x with route=task_state), the k
    largest kept, g = softmax over them, 0 elsewhere.

    balance=aux adds the Switch Transformer's loss (Fedus et al. 2022, eq. 4) per sample,
    aux_coef * E sum_e f_e p_e(x), f_e the batch's share of assignments to e (no gradient) and p
    the softmax over all E logits: its batch mean is E sum_e f_e P_e. balance=bias selects by
    s + b and mixes by s; after every training pass b_e += u sign(mean load - load_e) (Wang et al.
    2024, "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts", DeepSeek)."""

    bias: torch.Tensor  # a buffer: saved in checkpoints, never trained by gradient

    def __init__(self, num_tasks: int, o: SparseMoEOptions, state_dim: int) -> None:
        super().__init__()
        _check_k("sparse_moe", o.k, o.num_experts)
        self.k, self.e, self.o = o.k, o.num_experts, o
        self.task = nn.Linear(num_tasks, o.num_experts, bias=False)
        self.state = nn.Linear(state_dim, o.num_experts) if o.route == "task_state" else None
        self.register_buffer("bias", torch.zeros(o.num_experts))
        self.log = RoutingLog(num_tasks, o.num_experts, o.collapse_share, o.collapse_iterations)
        self._aux: torch.Tensor | None = None

    def route(self, obs: torch.Tensor, task_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(each sample's k gate weights [B, k], its k experts [B, k]); records the routing."""
        logits = self.task.weight.t()[task_id]
        if self.state is not None:
            logits = logits + self.state(obs.float().flatten(1))
        chosen = torch.topk(logits.detach() + self.bias, self.k, dim=-1).indices
        weights = torch.softmax(logits.gather(-1, chosen), -1)
        if self.training and torch.is_grad_enabled():
            self.log.add(torch.zeros_like(logits).scatter(-1, chosen, weights), task_id)
            load = torch.bincount(chosen.flatten(), minlength=self.e).float() / chosen.numel()
            if self.o.balance == "aux":
                self._aux = self.e * (torch.softmax(logits, -1) * load).sum(-1)
            elif self.o.balance == "bias":
                with torch.no_grad():
                    self.bias += self.o.bias_rate * torch.sign(load.mean() - load)
        return weights, chosen

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """The gate over all E experts [B, E], 0 outside each sample's k."""
        weights, chosen = self.route(obs, task_id)
        return torch.zeros(len(task_id), self.e, dtype=weights.dtype, device=weights.device).scatter(
            -1, chosen, weights
        )

    def pop_aux(self) -> dict[str, tuple[float, torch.Tensor]]:
        aux, self._aux = self._aux, None
        return {} if aux is None else {"balance": (self.o.aux_coef, aux)}


def smooth_step(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """DSelect-k's smooth step (Hazimeh et al. 2021): 0 below -gamma/2, 1 above gamma/2,
    -2 x^3 / gamma^3 + 3 x / (2 gamma) + 1/2 between; exactly 0 or 1 outside, so the gate can be
    exactly sparse."""
    cubic = -2 * x.pow(3) / gamma**3 + 3 * x / (2 * gamma) + 0.5
    return torch.where(x <= -gamma / 2, 0.0, torch.where(x >= gamma / 2, 1.0, cubic))


class DSelectKGate(nn.Module):
    """The DSelect-k gate (Hazimeh et al., NeurIPS 2021), static, one per task: k single-expert
    selectors, each choosing among E experts through m = ceil(log2 E) smooth binary choices
    (expert e's weight: prod_j S(z_j) where bit j of e is 1, 1 - S(z_j) where it is 0, the most
    significant bit first, as the authors' code), mixed by softmax(w) over the k selectors.
    Once the z leave (-gamma/2, gamma/2) each selector is one expert, so at most k are used.

    Init as the authors': z ~ U(-gamma/100, gamma/100), w ~ U(-0.05, 0.05). When E is not a power
    of 2 the codes >= E are dropped and each selector is renormalised over the E experts (the
    authors add a penalty instead). entropy_coef adds their regulariser on the selectors."""

    codes: torch.Tensor  # [E, m] bool, a buffer

    def __init__(self, num_tasks: int, o: DSelectKOptions) -> None:
        super().__init__()
        _check_k("dselect_k", o.k, o.num_experts)
        m = max(1, math.ceil(math.log2(o.num_experts)))
        self.gamma, self.o = o.gamma, o
        self.z = nn.Parameter(torch.empty(num_tasks, o.k, m).uniform_(-o.gamma / 100, o.gamma / 100))
        self.w = nn.Parameter(torch.empty(num_tasks, o.k).uniform_(-0.05, 0.05))
        bits = [[(e >> (m - 1 - j)) & 1 for j in range(m)] for e in range(o.num_experts)]
        self.register_buffer("codes", torch.tensor(bits, dtype=torch.bool))  # [E, m]
        self.log = RoutingLog(num_tasks, o.num_experts, o.collapse_share, o.collapse_iterations)
        self._aux: torch.Tensor | None = None

    def selectors(self) -> torch.Tensor:
        """Every task's k single-expert selectors over the E experts [K, k, E]."""
        s = smooth_step(self.z, self.gamma).unsqueeze(-2)  # [K, k, 1, m]
        sel = torch.where(self.codes, s, 1 - s).prod(-1)  # [K, k, E]
        if len(self.codes) < 2 ** self.codes.shape[1]:  # dropped codes: renormalise
            sel = sel / sel.sum(-1, keepdim=True).clamp(min=1e-12)
        return sel

    def task_gates(self, selectors: torch.Tensor | None = None) -> torch.Tensor:
        """[K, E]: every task's gate (from `selectors()`, computed here unless given)."""
        sel = self.selectors() if selectors is None else selectors
        return (torch.softmax(self.w, -1).unsqueeze(-1) * sel).sum(-2)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        sel = self.selectors()
        gate = self.task_gates(sel)[task_id]
        if self.training and torch.is_grad_enabled():
            self.log.add(gate, task_id)
            if self.o.entropy_coef > 0:  # the authors' entropy of the selectors, per sample
                self._aux = -(sel[task_id] * torch.log(sel[task_id] + 1e-6)).sum((-1, -2))
        return gate

    def pop_aux(self) -> dict[str, tuple[float, torch.Tensor]]:
        aux, self._aux = self._aux, None
        return {} if aux is None else {"selector_entropy": (self.o.entropy_coef, aux)}


def dispatch(experts: MLPExperts | ConvExperts, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Each sample through its own k experts only: [B, *in] and chosen [B, k] -> [B, k, D].

    The B k assignments are laid out per expert in a [E, C, *in] buffer, C the largest expert's
    load (GShard / Switch dispatch without dropping), run as one batched op over the E experts
    (`forward_grouped`) and gathered back: E C rows instead of dense's E B, so k B when the load
    is balanced and E B when one expert takes every sample."""
    b, k = chosen.shape
    e = chosen.flatten()
    counts = torch.bincount(e, minlength=experts.k)
    order = torch.argsort(e, stable=True)
    slot = torch.empty_like(e)
    slot[order] = torch.arange(len(e), device=e.device) - (torch.cumsum(counts, 0) - counts)[e[order]]
    buffer = x.new_zeros(experts.k, int(counts.max()), *x.shape[1:])
    buffer[e, slot] = x.repeat_interleave(k, 0)
    return experts.forward_grouped(buffer)[e, slot].reshape(b, k, -1)


class RoutedNet(nn.Module):
    """E experts (MoE's: conv for grids, 400-400-400 MLPs for vectors), a sparse gate per sample,
    tanh(sum_e g_e h_e), then a per-task head."""

    def __init__(
        self, spec: PolicySpec, out_dim: int, out_gain: float, gate: nn.Module, e: int, head: str, gather: bool = False
    ) -> None:
        super().__init__()
        self.gather = gather
        out_g, hid_g = gains(spec, out_gain)
        image = len(spec.obs_shape) == 3
        self.experts = ConvExperts(e, spec.obs_shape) if image else MLPExperts(e, math.prod(spec.obs_shape))  # type: ignore[arg-type]
        self.gate = gate
        hidden = spec.hidden if image else None
        self.head = OutputHead(spec.num_tasks, self.experts.out_dim, hidden, out_dim, out_g, head == "multi", hid_g)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        # the gather runs the experts outside their forward: not while the gradient aggregators
        # replace or hook that forward (mtrl.algos.task_jacobian, torchjd's capture)
        hooked = "forward" in self.experts.__dict__ or bool(self.experts._forward_hooks)
        if self.gather and isinstance(self.gate, TopKGate) and not hooked:
            weights, chosen = self.gate.route(obs, task_id)
            mixed = (weights.unsqueeze(-1) * dispatch(self.experts, obs, chosen)).sum(1)
        else:
            mixed = (self.gate(obs, task_id).unsqueeze(-1) * self.experts(obs)).sum(1)  # [B, E] mask
        return self.head(torch.tanh(mixed), task_id)


def sparse_moe(spec: PolicySpec, out_dim: int, out_gain: float) -> RoutedNet:
    """Sparse MoE: task-aware top-k routing over E experts, with load balancing, then a per-task head"""
    o = SparseMoEOptions(**dict(spec.options))
    gate = TopKGate(spec.num_tasks, o, math.prod(spec.obs_shape))
    return RoutedNet(spec, out_dim, out_gain, gate, o.num_experts, o.head, gather=o.dispatch == "gather")


def dselect_k(spec: PolicySpec, out_dim: int, out_gain: float) -> RoutedNet:
    """DSelect-k: a smooth k-sparse gate per task over E experts (Hazimeh et al. 2021), then a per-task head"""
    o = DSelectKOptions(**dict(spec.options))
    return RoutedNet(spec, out_dim, out_gain, DSelectKGate(spec.num_tasks, o), o.num_experts, o.head)


def routed_experts(net: RoutedNet) -> nn.Module:
    """What the gradient aggregators treat as shared: the experts."""
    return net.experts


def take_routing(policy: nn.Module, tasks: tuple[str, ...]) -> tuple[dict[str, float], int]:
    """Every gate's routing shares since the last call as scalars, experts/<task>/<expert> (the
    actor's; experts/<network>/<task>/<expert> for the others: critic, critic.q1, ...), and the
    number of experts that have just collapsed (each warned once on the console)."""
    scalars: dict[str, float] = {}
    collapsed = 0
    for name, log in policy.named_modules():
        if not isinstance(log, RoutingLog):
            continue
        shares, new = log.take()
        owner = name.removesuffix(".log").removesuffix(".gate").removesuffix(".net")  # actor, critic, critic.q1, ...
        prefix = "experts" if owner in ("actor", "") else f"experts/{owner}"
        if shares is not None:
            for t, row in zip(tasks, shares.tolist()):
                scalars.update({f"{prefix}/{t}/{e}": x for e, x in enumerate(row) if x == x})  # NaN: task not seen
        for e in new:
            print(
                f"mtrl: warning: {owner}: expert {e} has had under {log.share:.0%} of the routing for "
                f"{log.iterations} iterations (collapsed); counted in faults/collapsed_experts"
            )
        collapsed += len(new)
    return scalars, collapsed
