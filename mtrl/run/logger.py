"""TensorBoard scalars (per task and overall) and a console progress bar with ETA."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mtrl.data.batch import Episodes
from mtrl.data.reduce import per_task_means
from mtrl.eval.evaluate import EvalResult


class Logger:
    """Writes TensorBoard events to the run directory and drives the progress bar."""

    def __init__(self, run_dir: Path, tasks: tuple[str, ...], total_steps: int, start_steps: int) -> None:
        self.tasks = tasks
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
        self.bar = tqdm(
            total=total_steps,
            initial=min(start_steps, total_steps),
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            file=sys.stderr,
            desc="train",
            smoothing=0.1,
        )
        self._last_return = np.full(len(tasks), np.nan)

    def log_iteration(
        self,
        env_steps: int,
        new_steps: int,
        episodes: Episodes,
        losses: dict[str, float],
        steps_per_s: float,
        success_reported: bool,
        scalars: dict[str, float],
    ) -> None:
        """Log one training iteration's episodes, losses, throughput and the algorithm's own
        scalars (e.g. MT-GRPO's task weights, by full tag)."""
        k = len(self.tasks)
        stats = {
            "return": per_task_means(episodes.task_id, episodes.ret, k),
            "episode_length": per_task_means(episodes.task_id, episodes.length, k),
        }
        if success_reported:
            stats["success"] = per_task_means(episodes.task_id, episodes.success, k)
        for key, per_task in stats.items():
            for name, value in zip(self.tasks, per_task):
                if np.isfinite(value):
                    self.writer.add_scalar(f"task/{name}/{key}", value, env_steps)
            if np.isfinite(per_task).any():
                self.writer.add_scalar(f"charts/mean_{key}", float(np.nanmean(per_task)), env_steps)
        for key, value in losses.items():
            self.writer.add_scalar(f"losses/{key}", value, env_steps)
        self.writer.add_scalar("perf/env_steps_per_s", steps_per_s, env_steps)
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, env_steps)
        self._last_return = np.where(np.isfinite(stats["return"]), stats["return"], self._last_return)
        if np.isfinite(self._last_return).any():
            self.bar.set_postfix(ret=f"{np.nanmean(self._last_return):.3f}", sps=f"{steps_per_s:.0f}", refresh=False)
        self.bar.update(min(new_steps, self.bar.total - self.bar.n))

    def log_faults(self, env_steps: int, faults: dict[str, int]) -> None:
        """Cumulative fault counters: faults/worker_restarts and faults/env_errors."""
        for key, value in faults.items():
            self.writer.add_scalar(f"faults/{key}", value, env_steps)

    def log_task_steps(self, env_steps: int, task_steps: np.ndarray) -> None:
        """Cumulative env steps per task (task/<name>/env_steps)."""
        for name, n in zip(self.tasks, task_steps):
            self.writer.add_scalar(f"task/{name}/env_steps", int(n), env_steps)

    def log_curriculum(self, env_steps: int, probs: np.ndarray, scores: dict[str, np.ndarray]) -> None:
        """The sampling probabilities the workers used and the curriculum's per-task scores."""
        for name, p in zip(self.tasks, probs):
            self.writer.add_scalar(f"curriculum/prob/{name}", float(p), env_steps)
        for key, values in scores.items():
            for name, v in zip(self.tasks, values):
                if np.isfinite(v):
                    self.writer.add_scalar(f"curriculum/{key}/{name}", float(v), env_steps)

    def log_eval(self, env_steps: int, result: EvalResult, seconds: float | None = None) -> None:
        """Log an evaluation per task and its mean (and how long it took)."""
        if seconds is not None:
            self.writer.add_scalar("perf/eval_s", seconds, env_steps)
        for t in result.tasks:
            self.writer.add_scalar(f"eval/{t.task}/return", t.mean_return, env_steps)
            if t.success_rate is not None:
                self.writer.add_scalar(f"eval/{t.task}/success", t.success_rate, env_steps)
        self.writer.add_scalar("eval/mean_return", result.mean_return, env_steps)
        if result.mean_success is not None:
            self.writer.add_scalar("eval/mean_success", result.mean_success, env_steps)

    def flush(self) -> None:
        """Write pending events now (at each checkpoint, so a kill loses no logs the checkpoint has)."""
        self.writer.flush()

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


class FailureNotice:
    """Console lines about failures that were recovered from (envs that raised or returned NaN):
    the first at once, then at most one per `every_s` seconds with the count since the last line,
    so that a recovery is always said and a flaky env never floods the console."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s, self.unsaid = every_s, 0
        self.said_at: float | None = None

    def add(self, new: int, total: int) -> None:
        self.unsaid += new
        now, last = time.monotonic(), self.said_at
        if not self.unsaid or (last is not None and now - last < self.every_s):
            return
        if last is None:
            print(
                f"mtrl: warning: {self.unsaid} env failure(s) (a step or reset raised, or returned NaN): each failed "
                f"episode was dropped and its env rebuilt; faults/env_errors counts them, and this console says "
                f"more at most once per {self.every_s:.0f} s",
                file=sys.stderr,
            )
        else:
            print(
                f"mtrl: warning: {self.unsaid} more env failure(s), each recovered the same way ({total} in all)",
                file=sys.stderr,
            )
        self.unsaid, self.said_at = 0, now
