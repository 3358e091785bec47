"""MOORE speed: batched experts (one bmm / grouped conv) against a loop over k expert modules.

Both compute the same maths: k experts -> Gram-Schmidt -> task mixing -> tanh. A second table
times the encoder's Cholesky form of the mixing against forming the Gram-Schmidt basis first (the
rest identical). Timed is one forward plus backward at each --batches size (2048: a large
learner batch; 768: the paper protocol's MiniGrid minibatch; 64: about a rollout worker's
inference batch, where per-op overhead dominates), median of --repeat runs, side by side in one
process. Also prints each policy architecture's parameter count.

  python scripts/bench_moore.py [--device cpu|cuda] [--repeat 10] [--threads N] [--batches 64 768 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mtrl.nn.moore import gram_schmidt, make_mixture
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

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        w = self.encoder.task_weights.weight.t()[task_id]
        return torch.tanh((w.unsqueeze(-1) * gram_schmidt(self.encoder.experts(obs))).sum(1))


def time_fwd_bwd(model: nn.Module, obs: torch.Tensor, task: torch.Tensor, repeat: int) -> float:
    """Median seconds of forward + backward."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(obs, task).square().mean().backward()

    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        if obs.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if obs.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=10, help="timed repetitions per case (median reported)")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 768, 2048], help="batch sizes to time")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"device={dev} threads={torch.get_num_threads()} torch={torch.__version__}\n")
    cases = {"MiniGrid conv 7x7x3 (D=1024)": ((7, 7, 3), 3), "Meta-World MLP 39 (D=400)": ((39,), 10)}

    def table(header: str, pair) -> None:
        """One row per batch x case x k: pair(shape, tasks, k) -> the two models, timed side by side."""
        print(header)
        print("|---|---|---|---|---|---|")
        for batch in args.batches:
            for name, (shape, tasks) in cases.items():
                for k in (2, 4, 6):
                    torch.manual_seed(0)
                    obs = (torch.randint(0, 11, (batch, *shape)) if len(shape) == 3 else torch.randn(batch, *shape)).to(
                        dev
                    )
                    task = torch.randint(0, tasks, (batch,), device=dev)
                    a, b = (time_fwd_bwd(m.to(dev), obs, task, args.repeat) for m in pair(shape, tasks, k))
                    print(f"| {batch} | {k} | {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f}x |")

    table(
        "| batch | experts | case | batched (ms) | loop (ms) | loop/batched |",
        lambda shape, tasks, k: (make_mixture(shape, tasks, k, True), LoopMixture(shape, tasks, k)),
    )
    print(
        "\nThe orthonormal mixing: mtrl's Cholesky form (orthonormal_mix) against the explicit Gram-Schmidt "
        "basis then the mixing, same encoder and weights, forward + backward (ms)\n"
    )

    def cholesky_vs_basis(shape: tuple[int, ...], tasks: int, k: int) -> tuple[nn.Module, nn.Module]:
        enc = make_mixture(shape, tasks, k, True)
        return enc, GramSchmidtMixing(enc)

    table("| batch | experts | case | Cholesky form | Gram-Schmidt basis | basis/Cholesky |", cholesky_vs_basis)
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
