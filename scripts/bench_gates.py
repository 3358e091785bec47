"""Sparse gates' cost: `sparse_moe` with its two dispatches (gather: each sample through its k
experts only; dense: all E experts on every sample, masked) against MoE with E and with k experts,
in alternated rounds (scripts/rounds.py).

MoE with k experts computes only as many experts as a sparse gate uses: the floor a gather can
reach. Timed is one forward plus backward of the network (experts, gate, mixing, head) at each
--batches size, on MiniGrid MT3 images and Meta-World MT10 states, with the gate as initialised
(task routing). Medians over rounds; ratios with their min-max over rounds.

  python scripts/bench_gates.py [--rounds 5] [--repeat 10] [--threads 1] [--experts 4] [--k 2] [--batches 768]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from rounds import alternate, show_ratio
from torch import nn

from mtrl.nn.network import PolicySpec, task_network

CASES = {"minigrid-mt3": ((7, 7, 3), 3, 7), "metaworld-mt10": ((39,), 10, 4)}  # obs shape, tasks, outputs


def cell(net: nn.Module, obs: torch.Tensor, task: torch.Tensor, repeat: int) -> Callable[[], float]:
    """Seconds per forward + backward, the mean over `repeat` passes."""

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(repeat):
            net.zero_grad(set_to_none=True)
            net(obs, task).sum().backward()
            for m in net.modules():  # take the recorded auxiliary terms, as a loss would
                if hasattr(m, "pop_aux"):
                    m.pop_aux()
        return (time.perf_counter() - t0) / repeat

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (A B C A B C ...; default 5)")
    p.add_argument("--repeat", type=int, default=10, help="passes per cell per round (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--experts", type=int, default=4, help="experts E (default 4)")
    p.add_argument("--k", type=int, default=2, help="experts per sample k (default 2)")
    p.add_argument("--batches", type=int, nargs="+", default=[768], help="batch sizes (default 768)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"E = {a.experts}, k = {a.k}, {a.threads} thread(s), {a.rounds} rounds x {a.repeat} passes\n")
    print("| suite | batch | gather ms | dense ms | moe(E) ms | moe(k) ms | dense / gather | gather / moe(k) |")
    print("|---|---|---|---|---|---|---|---|")
    for suite, (shape, tasks, out) in CASES.items():
        for batch in a.batches:
            g = torch.Generator().manual_seed(0)
            obs = (
                torch.randint(0, 6, (batch, *shape), generator=g).float()
                if len(shape) == 3
                else torch.randn(batch, *shape)
            )
            task = torch.arange(batch) % tasks
            nets = {}
            for name, arch, options in (
                ("gather", "sparse_moe", (("dispatch", "gather"), ("k", a.k), ("num_experts", a.experts))),
                ("dense", "sparse_moe", (("dispatch", "dense"), ("k", a.k), ("num_experts", a.experts))),
                ("moe_e", "moe", ()),
                ("moe_k", "moe", ()),
            ):
                experts = a.k if name == "moe_k" else a.experts
                spec = PolicySpec(shape, tasks, out, True, arch, 128, num_experts=experts, options=options)
                torch.manual_seed(0)
                nets[name] = task_network(spec, out, 1.0).train()
            t = alternate({n: cell(net, obs, task, a.repeat) for n, net in nets.items()}, a.rounds, desc=suite)
            ms = {n: statistics.median(v) * 1e3 for n, v in t.items()}
            print(
                f"| {suite} | {batch} | {ms['gather']:.2f} | {ms['dense']:.2f} | {ms['moe_e']:.2f} | {ms['moe_k']:.2f} | "
                f"{show_ratio(t['dense'], t['gather'])} | {show_ratio(t['gather'], t['moe_k'])} |"
            )


if __name__ == "__main__":
    main()
