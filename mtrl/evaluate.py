"""Evaluate a policy on every task of a suite: per-task return, success rate and episode length."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mtrl.suite import TaskSuite


@dataclass
class TaskResult:
    task: str
    episodes: int
    mean_return: float
    success_rate: float | None
    mean_length: float


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
        return None if any(r is None for r in rates) else float(np.mean(rates))

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
        return {"suite": self.suite, "greedy": self.greedy, "seed": self.seed, "mean_return": self.mean_return,
                "mean_success": self.mean_success, "tasks": [asdict(t) for t in self.tasks]}  # fmt: skip

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")


# runs evaluation chunks: (policy, suite, chunks, greedy, max_episode_steps) -> per chunk (return, length, success)
Runner = Callable[[nn.Module, TaskSuite, list, bool, "int | None"], list]


def evaluate(policy: nn.Module, suite: TaskSuite, episodes: int, seed: int, greedy: bool = False,
             max_episode_steps: int | None = None, runner: Runner | None = None, chunk: int = 64) -> EvalResult:  # fmt: skip
    """Run `episodes` episodes of every task (the first episode of each env slot) and average
    them per task. The work is cut into chunks of at most `chunk` episodes of one task, each
    with its own env seeds and torch seed, so the result depends on `seed` (and `chunk`) only,
    not on where the chunks run: in-process (`run_chunks`, the default), on the rollout actors
    (`WorkerPool.run_eval`) or as Ray tasks (`ray_runner`). The caller's torch RNG is left untouched."""
    jobs = np.repeat(np.arange(suite.num_tasks), episodes)
    seeds = episode_seeds(suite, episodes, seed)
    chunks = [np.arange(lo, min(lo + chunk, hi)) for k in range(suite.num_tasks)
              for hi in [(k + 1) * episodes] for lo in range(k * episodes, hi, chunk)]  # fmt: skip
    work = [(jobs[c], seeds[c], [seed, int(jobs[c[0]]), int(c[0])]) for c in chunks]
    outs = (runner or run_chunks)(policy, suite, work, greedy, max_episode_steps)
    ret, length, success = (np.concatenate(parts) for parts in zip(*outs))
    results = []
    for k, name in enumerate(suite.tasks):
        m = jobs == k
        rate = float(success[m].mean()) if suite.reports_success else None
        results.append(TaskResult(name, int(m.sum()), float(ret[m].mean()), rate, float(length[m].mean())))
    return EvalResult(suite.name, results, greedy, seed)


def episode_seeds(suite: TaskSuite, episodes: int, seed: int) -> np.ndarray:
    """The reset seed of each evaluation episode, task-major: the suite's protocol (Meta-World:
    one per goal variant) or independent seeds drawn from `seed`."""
    if suite.eval_seeds is not None:
        return np.concatenate([np.asarray(suite.eval_seeds(episodes, seed + k), np.int64) for k in range(suite.num_tasks)])
    return np.random.SeedSequence([seed, 0xE7A1]).generate_state(suite.num_tasks * episodes).astype(np.int64)


def run_chunks(policy: nn.Module, suite: TaskSuite, work: list, greedy: bool, max_episode_steps: int | None) -> list:
    """Run evaluation chunks here, one after the other (a progress bar on a terminal)."""
    device = next(policy.parameters()).device
    outs = []
    with torch.random.fork_rng(devices=[]):
        for tasks, seeds, torch_seed in tqdm(work, desc="eval", unit="chunk", disable=None, leave=False, file=sys.stderr):
            torch.manual_seed(int(np.random.SeedSequence(torch_seed).generate_state(1)[0]))
            outs.append(_run_first_episodes(policy, suite, tasks, seeds, greedy, max_episode_steps, device))
    return outs


def split_work(work: list, parts: int) -> list[list]:
    """`work` in at most `parts` contiguous, non-empty shares (so results concatenate in order)."""
    return [[work[i] for i in idx] for idx in np.array_split(np.arange(len(work)), parts) if len(idx)]


def _remote_chunks(spec, state, suite, work, greedy, max_episode_steps):
    """A Ray task: rebuild the policy on the CPU and run its share of the chunks."""
    from mtrl.nn.policy import build_policy

    torch.set_num_threads(1)
    policy = build_policy(spec)
    policy.load_state_dict(state)
    return run_chunks(policy, suite, work, greedy, max_episode_steps)


def ray_runner(workers: int) -> Runner:
    """A Runner that spreads the chunks over `workers` Ray tasks (in a Ray the caller started)."""

    def run(policy: nn.Module, suite: TaskSuite, work: list, greedy: bool, max_episode_steps: int | None) -> list:
        import ray

        state = ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})
        fn = ray.remote(num_cpus=1)(_remote_chunks)
        calls = [fn.remote(policy.spec, state, suite, share, greedy, max_episode_steps) for share in split_work(work, workers)]
        return [out for share in ray.get(calls) for out in share]

    return run


def _run_first_episodes(policy, suite, tasks, seeds, greedy, max_episode_steps, device):
    """Run one episode in each of len(tasks) envs, stepping only the envs whose episode is still
    running (a vector env would step all of them until the longest episode ends) and batching the
    policy over them; returns per-env (undiscounted return, length, success)."""
    envs = [suite.make_env(int(t), int(s), max_episode_steps) for t, s in zip(tasks, seeds, strict=True)]
    try:
        obs = [env.reset(seed=int(s))[0]["obs"] for env, s in zip(envs, seeds)]
        n = len(envs)
        task_ids = torch.as_tensor(np.array(tasks, np.int64), device=device)  # a copy: Ray's arrays are read-only
        live = np.ones(n, bool)
        ret, length, success = np.zeros(n), np.zeros(n), np.zeros(n, np.float32)
        box = suite.action_space
        while live.any():
            idx = np.flatnonzero(live)
            action, _ = policy.act(torch.as_tensor(np.stack([obs[i] for i in idx]), device=device),
                                   task_ids[torch.as_tensor(idx, device=device)], greedy=greedy)  # fmt: skip
            action = action.cpu().numpy()
            if hasattr(box, "low"):
                action = np.clip(action, box.low, box.high)
            for i, a in zip(idx, action):
                o, rew, term, trunc, info = envs[i].step(a)
                obs[i] = o["obs"]
                if info.get("env_error"):  # the env failed and was rebuilt (mtrl.envguard): this slot starts over
                    ret[i], length[i], success[i] = 0.0, 0, 0.0
                    continue
                ret[i] += rew
                length[i] += 1
                success[i] = max(success[i], float(info.get("success", 0.0)))
                live[i] = not (term or trunc)
        return ret, length, success
    finally:
        for env in envs:
            env.close()


def default_episodes(suite: TaskSuite, requested: int | None) -> int:
    """The episodes per task: the request, else the suite's protocol."""
    return suite.eval_episodes if requested is None else requested

