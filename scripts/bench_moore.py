"""MOORE speed: batched experts (one bmm / grouped conv) against a loop over k expert modules, in
alternated rounds (scripts/rounds.py).

Both compute the same maths: k experts -> Gram-Schmidt -> task mixing -> tanh. A second table
times the encoder's Cholesky form of the mixing against forming the Gram-Schmidt basis first (the
rest identical). Timed is one forward plus backward at each --batches size (2048: a large
learner batch; 768: the paper protocol's MiniGrid minibatch; 64: about a rollout worker's
inference batch, where per-op overhead dominates). Each row's two models are timed in the same
process, A B A B ...: each round times --repeat passes of each (mean), and the figures are medians
over the alternated rounds: ms per pass, and the median over rounds of the per-round ratio with its
min-max. Also prints each policy architecture's parameter count.

  python scripts/bench_moore.py [--device cpu|cuda] [--rounds 5] [--repeat 10] [--threads N] [--batches 64 768 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from rounds import alternate, show_ratio
from torch import nn

from mtrl.nn.moore import MixtureEncoder, gram_schmidt, make_mixture
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy


class LoopMixture(nn.Module):
    """Reference: the same MOORE maths with one nn.Module per expert, run in a Python loop."""

    def __init__(self, obs_shape: tuple[int, ...], num_tasks: int, k: int) -> None:
        super().__init__()
        self.image = len(obs_shape) == 3

        def make() -> nn.Sequential:
            if self.image:
                c = obs_shape[2]
                return nn.Sequential(
                    nn.Conv2d(c, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Conv2d(32, 64, 2), nn.Flatten()
                )
            d = obs_shape[0]
            return nn.Sequential(nn.Linear(d, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400))

        self.experts = nn.ModuleList(make() for _ in range(k))
        self.task_weights = nn.Linear(num_tasks, k, bias=False)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        x = obs.float().permute(0, 3, 1, 2) if self.image else obs.float()
        h = torch.stack([e(x) for e in self.experts], dim=1)
        w = self.task_weights.weight.t()[task_id]
        return torch.tanh((w.unsqueeze(1) @ gram_schmidt(h)).squeeze(1))


class GramSchmidtMixing(nn.Module):
    """The same encoder's maths with the basis formed explicitly: experts -> gram_schmidt -> mix."""

    def __init__(self, encoder: MixtureEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        w = self.encoder.task_weights.weight.t()[task_id]
        return torch.tanh((w.unsqueeze(-1) * gram_schmidt(self.encoder.experts(obs))).sum(1))


Pair = Callable[[tuple[int, ...], int, int], tuple[nn.Module, nn.Module]]  # (shape, tasks, k) -> the two models
CASES = {"MiniGrid conv 7x7x3 (D=1024)": ((7, 7, 3), 3), "Meta-World MLP 39 (D=400)": ((39,), 10)}


def fwd_bwd(model: nn.Module, obs: torch.Tensor, task: torch.Tensor, repeat: int) -> Callable[[], float]:
    """A cell: seconds per forward + backward of `model` (mean of `repeat` passes), after 3 warm-up passes."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(obs, task).square().mean().backward()

    def cell() -> float:
        if obs.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            step()
        if obs.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / repeat

    for _ in range(3):
        step()
    return cell


def table(header: str, pair: Pair, batches: list[int], rounds: int, repeat: int, dev: torch.device) -> None:
    """One row per batch x case x k: the two models of pair(shape, tasks, k), alternated over `rounds`."""
    print(header)
    print("|---|---|---|---|---|---|")
    for batch in batches:
        for name, (shape, tasks) in CASES.items():
            for k in (2, 4, 6):
                torch.manual_seed(0)
                obs = torch.randint(0, 11, (batch, *shape)) if len(shape) == 3 else torch.randn(batch, *shape)
                obs, task = obs.to(dev), torch.randint(0, tasks, (batch,), device=dev)
                a, b = (fwd_bwd(m.to(dev), obs, task, repeat) for m in pair(shape, tasks, k))
                t = alternate({"a": a, "b": b}, rounds, desc=f"batch {batch}, k {k}")
                print(
                    f"| {batch} | {k} | {name} | {statistics.median(t['a']) * 1e3:.2f} | "
                    f"{statistics.median(t['b']) * 1e3:.2f} | {show_ratio(t['b'], t['a'])} |"
                )


def cholesky_vs_basis(shape: tuple[int, ...], tasks: int, k: int) -> tuple[nn.Module, nn.Module]:
    enc = make_mixture(shape, tasks, k, True)
    return enc, GramSchmidtMixing(enc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        choices=["cpu", "cuda"],
        help="where to run (default cuda when available, else cpu)",
    )
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds per row (default 5)")
    p.add_argument("--repeat", type=int, default=10, help="passes timed per model per round (default 10)")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 768, 2048], help="batch sizes (default 64 768 2048)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.rounds < 1 or args.repeat < 1 or min(args.batches) < 1 or (args.threads is not None and args.threads < 1):
        p.error("--rounds, --repeat, --batches and --threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(
        f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__}, "
        f"{args.rounds} alternated rounds x {args.repeat} pass(es); ms: median over rounds; "
        "ratios: median over rounds (min-max)\n"
    )
    run = (args.batches, args.rounds, args.repeat, dev)
    table(
        "| batch | experts | case | batched (ms) | loop (ms) | loop/batched |",
        lambda shape, tasks, k: (make_mixture(shape, tasks, k, True), LoopMixture(shape, tasks, k)),
        *run,
    )
    print(
        "\nThe orthonormal mixing: mtrl's Cholesky form (orthonormal_mix) against the explicit Gram-Schmidt "
        "basis then the mixing, same encoder and weights, forward + backward (ms)\n"
    )
    table("| batch | experts | case | Cholesky form | Gram-Schmidt basis | basis/Cholesky |", cholesky_vs_basis, *run)
    print("\n| suite | arch | experts | parameters (actor + critic) |")
    print("|---|---|---|---|")
    for suite, shape, tasks, act, discrete, k in [
        ("minigrid-mt3", (7, 7, 3), 3, 7, True, 2),
        ("metaworld-mt10", (39,), 10, 4, False, 4),
    ]:
        for arch in ("mlp", "multihead", "moe", "moore"):
            spec = PolicySpec(shape, tasks, act, discrete, arch, 128 if discrete else 400, 2, k)
            n = sum(q.numel() for q in build_policy(spec).parameters())
            print(f"| {suite} | {arch} | {k if arch in ('moe', 'moore') else '-'} | {n:,} |")


if __name__ == "__main__":
    main()
