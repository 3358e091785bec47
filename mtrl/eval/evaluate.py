"""Evaluate a policy on every task of a suite: per-task return, success rate and episode length."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtrl.collect.episodes import ChunkResult, EvalChunk, run_chunks, split_work
from mtrl.env.suite import TaskSuite

if TYPE_CHECKING:
    from mtrl.nn.policy import Policy


@dataclass
class TaskResult:
    task: str
    episodes: int
    mean_return: float
    success_rate: float | None
    mean_length: float
    # every episode, in the order of its reset seed (Meta-World: goal variant j mod 50 for episode j);
    # None in evaluations written before they were kept
    returns: list[float] | None = None
    successes: list[float] | None = None
    lengths: list[int] | None = None


@dataclass
class EvalResult:
    suite: str
    tasks: list[TaskResult]
    greedy: bool
    seed: int

    @property
    def mean_return(self) -> float:
        return float(np.mean([t.mean_return for t in self.tasks]))

    @property
    def mean_success(self) -> float | None:
        rates = [t.success_rate for t in self.tasks]
        known = [r for r in rates if r is not None]
        return None if len(known) < len(rates) else float(np.mean(known))

    def table(self) -> str:
        """A fixed-width per-task table with the mean over tasks."""
        w = max(len("mean over tasks"), *(len(t.task) for t in self.tasks))
        head = f"{'task':<{w}}  {'return':>8}  {'success':>8}  {'length':>8}  {'episodes':>8}"
        rows = [head, "-" * len(head)]
        for t in self.tasks:
            succ = "-" if t.success_rate is None else f"{t.success_rate:.3f}"
            rows.append(f"{t.task:<{w}}  {t.mean_return:>8.3f}  {succ:>8}  {t.mean_length:>8.1f}  {t.episodes:>8d}")
        ms = "-" if self.mean_success is None else f"{self.mean_success:.3f}"
        rows += ["-" * len(head), f"{'mean over tasks':<{w}}  {self.mean_return:>8.3f}  {ms:>8}"]
        return "\n".join(rows)

    @staticmethod
    def from_json(data: dict) -> EvalResult:
        """The inverse of `to_json` (e.g. a run's eval.json)."""
        return EvalResult(data["suite"], [TaskResult(**t) for t in data["tasks"]], data["greedy"], data["seed"])

    def to_json(self) -> dict:
        return {
            "suite": self.suite,
            "greedy": self.greedy,
            "seed": self.seed,
            "mean_return": self.mean_return,
            "mean_success": self.mean_success,
            "tasks": [asdict(t) for t in self.tasks],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")


# runs evaluation chunks: (policy, suite, chunks, greedy, max_episode_steps) -> per chunk (return, length, success)
# (policy, suite, chunks, greedy, max_episode_steps) -> one ChunkResult per chunk, in order
Runner = Callable[["Policy", TaskSuite, list[EvalChunk], bool, "int | None"], list[ChunkResult]]


def evaluate(
    policy: Policy,
    suite: TaskSuite,
    episodes: int,
    seed: int,
    greedy: bool = False,
    max_episode_steps: int | None = None,
    runner: Runner | None = None,
    chunk: int = 64,
) -> EvalResult:
    """Run `episodes` episodes of every task (the first episode of each env slot) and average
    them per task. The work is cut into chunks of at most `chunk` episodes of one task, each
    with its own env seeds and torch seed, so the result depends on `seed` (and `chunk`) only,
    not on where the chunks run: in-process (`run_chunks`, the default), on the rollout actors
    (`WorkerPool.run_eval`) or as Ray tasks (`ray_runner`). The caller's torch RNG is left untouched."""
    jobs = np.repeat(np.arange(suite.num_tasks), episodes)
    seeds = episode_seeds(suite, episodes, seed)
    chunks = [
        np.arange(lo, min(lo + chunk, hi))
        for k in range(suite.num_tasks)
        for hi in [(k + 1) * episodes]
        for lo in range(k * episodes, hi, chunk)
    ]
    work = [EvalChunk(jobs[c], seeds[c], [seed, int(jobs[c[0]]), int(c[0])]) for c in chunks]
    outs = (runner or run_chunks)(policy, suite, work, greedy, max_episode_steps)
    ret, length, success = (np.concatenate(parts) for parts in zip(*outs))
    results = []
    for k, name in enumerate(suite.tasks):
        m = jobs == k
        rate = float(success[m].mean()) if suite.reports_success else None
        results.append(
            TaskResult(
                name,
                int(m.sum()),
                float(ret[m].mean()),
                rate,
                float(length[m].mean()),
                ret[m].tolist(),
                success[m].tolist() if suite.reports_success else None,
                length[m].astype(int).tolist(),
            )
        )
    return EvalResult(suite.name, results, greedy, seed)


def episode_seeds(suite: TaskSuite, episodes: int, seed: int) -> np.ndarray:
    """The reset seed of each evaluation episode, task-major: the suite's protocol (Meta-World:
    one per goal variant) or independent seeds drawn from `seed`."""
    if suite.eval_seeds is not None:
        return np.concatenate(
            [np.asarray(suite.eval_seeds(episodes, seed + k), np.int64) for k in range(suite.num_tasks)]
        )
    return np.random.SeedSequence([seed, 0xE7A1]).generate_state(suite.num_tasks * episodes).astype(np.int64)


def _remote_chunks(spec, state, suite, work, greedy, max_episode_steps):
    """A Ray task: rebuild the policy on the CPU and run its share of the chunks."""
    from mtrl.nn.policy import build_policy

    torch.set_num_threads(1)
    policy = build_policy(spec)
    policy.load_state_dict(state)
    return run_chunks(policy, suite, work, greedy, max_episode_steps)


def ray_runner(workers: int) -> Runner:
    """A Runner that spreads the chunks over `workers` Ray tasks (in a Ray the caller started)."""

    def run(
        policy: Policy, suite: TaskSuite, work: list[EvalChunk], greedy: bool, max_episode_steps: int | None
    ) -> list[ChunkResult]:
        import ray

        state = ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})
        fn = ray.remote(num_cpus=1)(_remote_chunks)
        calls = [
            fn.remote(policy.spec, state, suite, share, greedy, max_episode_steps)
            for share in split_work(work, workers)
        ]
        return [out for share in ray.get(calls) for out in share]

    return run


def default_episodes(suite: TaskSuite, requested: int | None) -> int:
    """The episodes per task: the request, else the suite's protocol."""
    return suite.eval_episodes if requested is None else requested
