"""A multi-task network written outside mtrl, registered as `policy.arch=wide` with its own options.

`Wide` is one wide hidden layer shared by all tasks, on the observation and the task's one-hot,
then one linear output head per task. The options dataclass `WideOptions` becomes the config
section `policy.wide` (`policy.wide.width`, `policy.wide.head_init`), checked like every other
key. mtrl builds every network of the policy with it: the PPO actor and critic, or the SAC actor
and its twin critics.

    python examples/custom_architecture.py                    # a quick check: 3k env steps on toy-mt3
    python examples/custom_architecture.py --steps 40000      # learns all three toy tasks
    python examples/custom_architecture.py --aggregator upgrad    # per-task gradients on the shared layer

From the `mtrl` command, import the file first:

    mtrl train --import examples/custom_architecture.py toy_mtppo policy.arch=wide policy.wide.width=128
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
from torch import nn

import mtrl


@dataclass
class WideOptions:
    # metadata: the help text of `mtrl train --help` and the range a value is checked against
    width: int = field(default=256, metadata={"help": "units of the shared hidden layer", "lo": 1})
    head_init: float = field(
        default=1.0, metadata={"help": "scale of the heads' initial weights, times mtrl's out_gain", "lo": 0.0}
    )


class Wide(nn.Module):
    """One wide hidden layer shared by all tasks, then a linear head per task."""

    def __init__(self, spec, out_dim: int, out_gain: float) -> None:  # noqa: ANN001 - a mtrl.nn.network.PolicySpec
        super().__init__()
        self.k = spec.num_tasks
        width = spec.option("width")  # this run's policy.wide.width
        in_dim = int(torch.Size(spec.obs_shape).numel())  # images arrive as [B, H, W, C]: flattened below
        self.shared = nn.Sequential(nn.Linear(in_dim + self.k, width), nn.Tanh())
        # all K heads as one tensor, so that a batch of mixed tasks is one batched matmul, not K
        self.heads = nn.Parameter(torch.empty(self.k, width, out_dim))
        self.bias = nn.Parameter(torch.zeros(self.k, out_dim))
        # out_gain is 0.01 for an actor (near-uniform first policy) and 1 for a critic
        for head in self.heads:
            nn.init.orthogonal_(head, gain=out_gain * spec.option("head_init"))

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(task_id, self.k).float()
        h = self.shared(torch.cat([obs.flatten(1).float(), one_hot], dim=-1))  # uint8 images too: float()
        return torch.einsum("bw,bwo->bo", h, self.heads[task_id]) + self.bias[task_id]


# features= names the module whose output is the last representation all tasks share: gradient
# aggregators (learner.aggregator) combine the task gradients of everything up to it and leave
# each head its own task's gradient. At import, so that `mtrl train --import` finds it too.
mtrl.register_arch("wide", Wide, WideOptions, features=lambda net: net.shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="env steps, over all tasks (default 3000)")
    parser.add_argument("--width", type=int, default=64, help="policy.wide.width (default 64)")
    parser.add_argument("--aggregator", default="none", help="learner.aggregator, e.g. upgrad (default none)")
    args = parser.parse_args()

    run_dir = mtrl.train(
        "toy_mtppo",
        policy__arch="wide",
        policy__wide__width=args.width,  # `__` between sections: policy.wide.width
        learner__aggregator=args.aggregator,
        rollout__workers=0,
        train__total_steps=args.steps,
    )
    result = mtrl.evaluate(run_dir, episodes=8).runs[0].result
    print(result.table())
    print(f"wide (width {args.width}) on toy-mt3 after {args.steps} env steps: mean return {result.mean_return:.2f}")


if __name__ == "__main__":
    main()
