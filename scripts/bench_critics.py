"""Twin critics one after the other against one batched ensemble, at the MT10 SAC shapes, in
alternated rounds (scripts/rounds.py).

  python scripts/bench_critics.py                      # 1 thread, CPU
  python scripts/bench_critics.py --device cuda        # on a GPU

Each cell runs the forward and backward pass of two 400-400-400 ReLU Q networks on a batch of
10 x 128 (state 39 + action 4 in, one value out), the twin critics of the Meta-World+ MTSAC:
- `two modules`: two stacks of nn.Linear, one after the other (mtrl's critics today);
- `stacked bmm`: the weights of both stacked as [2, in, out] and one batched matmul per layer
  (`torch.baddbmm`), as Meta-World+ vmaps its critics;
- `vmap`: `torch.func.vmap` over the two modules' stacked parameters (`functional_call`).
Prints ms per pass (median over rounds) and each cell's ratio to `two modules`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from rounds import alternate, show_ratio
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

DIMS = (43, 400, 400, 400, 1)


def q_net() -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(DIMS[:-1], DIMS[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(DIMS) - 2 else [])
    return nn.Sequential(*layers)


def cells(x: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The three ways to run both critics forward and backward on `x`."""
    nets = [q_net().to(x.device) for _ in range(2)]

    def two_modules() -> None:
        (nets[0](x).sum() + nets[1](x).sum()).backward()

    weights = [torch.stack([n[2 * i].weight.detach().t() for n in nets]).requires_grad_() for i in range(len(DIMS) - 1)]
    biases = [
        torch.stack([n[2 * i].bias.detach() for n in nets]).unsqueeze(1).requires_grad_() for i in range(len(DIMS) - 1)
    ]

    def stacked_bmm() -> None:
        h = x.expand(2, *x.shape)
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(weights) - 1:
                h = torch.relu(h)
        h.sum().backward()

    params, buffers = stack_module_state(nets)
    template = copy.deepcopy(nets[0]).to("meta")
    run = vmap(lambda p, b, inp: functional_call(template, (p, b), (inp,)), in_dims=(0, 0, None))

    def vmapped() -> None:
        run(params, buffers, x).sum().backward()

    return {"two modules": two_modules, "stacked bmm": stacked_bmm, "vmap": vmapped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--batch", type=int, default=1280, help="rows per pass (default 1280: MT10, 10 x 128)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    p.add_argument("--reps", type=int, default=20, help="passes timed per cell per round (default 20)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is available")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    fns = cells(torch.randn(args.batch, DIMS[0], device=device))

    def timed(fn: Callable[[], None]) -> float:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.reps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.reps

    times = alternate({name: (lambda fn=fn: timed(fn)) for name, fn in fns.items()}, args.rounds)
    print(
        f"twin critics 43-400-400-400-1, batch {args.batch}, forward + backward, {args.device}, "
        f"{args.threads} thread(s), {args.rounds} alternated rounds x {args.reps}\n"
    )
    print("| cell | ms per pass | / two modules |\n|---|---|---|")
    for name, secs in times.items():
        print(f"| {name} | {statistics.median(secs) * 1e3:.2f} | {show_ratio(secs, times['two modules'])} |")


if __name__ == "__main__":
    main()
