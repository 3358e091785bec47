"""A curriculum and a gradient aggregator written outside mtrl, used together in one run.

- The curriculum `lowest_return` sets, each iteration, the probability with which every env slot
  picks its next task at reset: tasks with a low recent return are drawn more often.
- The aggregator `equal_norm` combines the per-task gradients on the shared parameters (the
  Jacobian [K, n], one row per task) into one direction [n]: each task's gradient is scaled to
  the same norm before they are averaged, so no task dominates the shared layers by gradient size.

    python examples/custom_curriculum_and_aggregator.py                  # a quick check: 3k env steps
    python examples/custom_curriculum_and_aggregator.py --steps 40000    # learns all three toy tasks

From the `mtrl` command, import the file first:

    mtrl train --import examples/custom_curriculum_and_aggregator.py toy_mtppo \
        curriculum.name=lowest_return learner.aggregator=equal_norm train.log_grad_every=1
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import mtrl


@dataclass
class LowestReturnOptions:  # the config section curriculum.lowest_return
    ema: float = 0.3  # weight of the newest iteration in each task's running mean return


class LowestReturn:
    """Draw tasks with a low recent return more often (up to e times as often as the best task)."""

    def __init__(self, tasks: tuple[str, ...], cfg) -> None:  # noqa: ANN001 - the config's curriculum section
        self.eps = cfg.eps  # shared by every curriculum: curriculum.eps
        self.ema = cfg.own().ema  # its own section, parsed into LowestReturnOptions
        self.ret = np.zeros(len(tasks))

    def probs(self) -> np.ndarray:
        spread = self.ret.max() - self.ret.min()
        shortfall = (self.ret.max() - self.ret) / (spread if spread > 0 else 1.0)  # 0 best task .. 1 worst
        p = np.exp(shortfall)  # the worst task is drawn up to e times as often as the best
        # mixing in the uniform keeps every task at >= eps / K, so none is forgotten
        return (1 - self.eps) * p / p.sum() + self.eps / len(p)

    def update(self, stats) -> None:  # noqa: ANN001 - a mtrl.curriculum.TaskStats
        # stats.returns is NaN for a task without a finished episode this iteration: keep its old value
        seen = np.isfinite(stats.returns)
        self.ret[seen] = (1 - self.ema) * self.ret[seen] + self.ema * stats.returns[seen]

    def scores(self) -> dict[str, np.ndarray]:
        return {"return_ema": self.ret}  # TensorBoard: curriculum/return_ema/<task>, one number per task

    def state_dict(self) -> dict:
        return {"ret": self.ret.tolist()}  # plain numbers: checkpoints load with weights_only=True

    def load_state_dict(self, state: dict) -> None:
        self.ret = np.asarray(state["ret"], dtype=np.float64)


def equal_norm(num_tasks: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scale every task gradient to their mean norm, then average them."""

    # a factory: called once per run with K and learner.aggregator_options as keywords (none here)
    def aggregate(jacobian: torch.Tensor) -> torch.Tensor:  # [K, n] -> [n]
        norms = jacobian.norm(dim=1, keepdim=True)
        return (jacobian / norms.clamp_min(1e-12)).mean(dim=0) * norms.mean()

    return aggregate


# At import, so that `mtrl train --import` of this file can name them too. A class whose constructor
# takes (tasks, cfg) is itself a curriculum factory; its options dataclass is the section
# curriculum.lowest_return (e.g. curriculum.lowest_return.ema=0.5).
mtrl.register_curriculum("lowest_return", LowestReturn, LowestReturnOptions)
mtrl.register_aggregator("equal_norm", equal_norm)


def last_logged(run_dir: Path, tag: str) -> float:
    """The last value of a scalar the run wrote to TensorBoard (run_dir/tb)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(run_dir / "tb")).Reload().Scalars(tag)[-1].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="env steps, over all tasks (default 3000)")
    args = parser.parse_args()

    run_dir = mtrl.train(
        "toy_mtppo",
        curriculum__name="lowest_return",
        learner__aggregator="equal_norm",
        train__log_grad_every=1,  # also log per-task gradient norms and cosines (grad/ in TensorBoard)
        rollout__workers=0,
        train__total_steps=args.steps,
    )
    tasks = mtrl.get_suite("toy-mt3").tasks
    probs = {task: last_logged(run_dir, f"curriculum/prob/{task}") for task in tasks}
    print("last task probabilities:", ", ".join(f"{task} {p:.2f}" for task, p in probs.items()))
    print(f"steps that fell back to the mean gradient: {last_logged(run_dir, 'faults/aggregator_fallbacks'):.0f}")
    result = mtrl.evaluate(run_dir, episodes=8).runs[0].result
    print(f"lowest_return + equal_norm on toy-mt3 after {args.steps} env steps: mean return {result.mean_return:.2f}")


if __name__ == "__main__":
    main()
