"""`MultiTaskCallbacks`: per-task metrics in RLlib's results, and mtrl curricula driving RLlib's
env runners.

On the env runners, every finished episode logs under `env_runners/mtrl/<task>/`: `return` and
`success` (means), and `episodes`, `return_sum`, `success_sum` (sums, which add up exactly over
runners). On the driver, after each `train()`, the curriculum (env_config["curriculum"], as
`ppo_config` puts it) takes those per-task statistics and its new probabilities are pushed to
every env runner; `result["mtrl"]` then holds each task's mean return, success, episodes and
probability. The function run on the runners catches its own errors (an exception there would
kill the runner) and reports them back as a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from mtrl.curriculum import TaskStats, checked_probs, curriculum_from_settings, make_curriculum
from mtrl.env.suite import TaskSuite, get_suite
from mtrl.errors import MtrlError
from mtrl.registry import call_plugin
from mtrl.rllib.env import EPISODE_INFO

log = logging.getLogger(__name__)
ENV_PREFIX = "mtrl/"


def suite_of(env: Any) -> TaskSuite:
    """The mtrl suite of an RLlib env name made by `register_suite_env` ("mtrl/<suite>")."""
    name = env if isinstance(env, str) else ""
    if not name.startswith(ENV_PREFIX):
        raise ValueError(
            f"MultiTaskCallbacks needs an env of mtrl.rllib.register_suite_env ('mtrl/<suite>'), got {env!r}"
        )
    return get_suite(name[len(ENV_PREFIX) :])


def push_task_probs(probs: np.ndarray):  # noqa: ANN201 - a function for foreach_env_runner
    """A function for `foreach_env_runner` that sets every sub-env's task probabilities. It never
    raises: it returns None, or the error's text."""
    probs = np.asarray(probs, np.float64)

    def push(runner: Any) -> str | None:
        try:
            if getattr(runner, "env", None) is None:  # a local runner without envs of its own
                return None
            runner.env.unwrapped.call("set_task_probs", probs)
            return None
        except Exception as exc:  # noqa: BLE001 - an exception here would kill the env runner
            return f"{type(exc).__name__}: {exc}"

    return push


class MultiTaskCallbacks(RLlibCallback):
    """Per-task metrics and the curriculum; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.suite: TaskSuite | None = None
        self.curriculum: Any = None
        self.cur_name = ""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        try:
            info = episode.get_infos(-1)
            ep = info.get(EPISODE_INFO) if isinstance(info, dict) else None
            if ep is None or metrics_logger is None:
                return
            name = ep["name"]
            for key, value in (("return", ep["return"]), ("success", ep["success"])):
                if value != value:  # NaN: the suite reports no success
                    continue
                metrics_logger.log_value(("mtrl", name, key), value, reduce="mean", window=1000)
                metrics_logger.log_value(("mtrl", name, f"{key}_sum"), value, reduce="sum")
            metrics_logger.log_value(("mtrl", name, "episodes"), 1, reduce="sum")
        except Exception as exc:  # noqa: BLE001 - never let the metrics kill an env runner
            log.warning("mtrl: per-task episode metrics failed: %s: %s", type(exc).__name__, exc)

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        self.suite = suite = suite_of(algorithm.config.env)
        cur = (algorithm.config.env_config or {}).get("curriculum")
        sub_envs = max(int(algorithm.config.num_env_runners), 1) * int(algorithm.config.num_envs_per_env_runner)
        if not cur and sub_envs < suite.num_tasks:  # sub-env i runs task i mod K: some tasks would never run
            raise MtrlError(
                f"{sub_envs} sub-env(s) for the {suite.num_tasks} tasks of '{suite.name}': "
                f"{', '.join(suite.tasks[sub_envs:])} would never run; give the env runners at least "
                f"{suite.num_tasks} sub-envs in all (num_envs_per_env_runner) or use a curriculum"
            )
        if cur:
            cfg = curriculum_from_settings(cur)
            self.curriculum, self.cur_name = make_curriculum(suite.tasks, cfg), str(cfg.name)
            self._push(algorithm, checked_probs(self.curriculum, self.cur_name, suite.num_tasks))

    def on_train_result(self, *, algorithm: Any, result: dict, **kwargs: Any) -> None:
        suite = self.suite or suite_of(algorithm.config.env)
        stats = self.task_stats(result, suite, int(algorithm.iteration))
        summary: dict[str, dict[str, float]] = {
            task: {
                "return_mean": float(stats.returns[k]),
                "success_mean": float(stats.success[k]),
                "episodes": int(stats.episodes[k]),
            }
            for k, task in enumerate(suite.tasks)
        }
        if self.curriculum is not None:
            call_plugin("curriculum", self.cur_name, "update()", self.curriculum.update, stats)
            probs = checked_probs(self.curriculum, self.cur_name, suite.num_tasks)
            self._push(algorithm, probs)
            for k, task in enumerate(suite.tasks):
                summary[task]["task_prob"] = float(probs[k])
        result["mtrl"] = summary

    @staticmethod
    def task_stats(result: dict, suite: TaskSuite, iteration: int) -> TaskStats:
        """This iteration's per-task statistics from the env runners' (and the learner's) metrics."""
        per_task = result.get("env_runners", {}).get("mtrl", {})
        K = suite.num_tasks
        episodes, returns, success, abs_adv = np.zeros(K), np.full(K, np.nan), np.full(K, np.nan), np.full(K, np.nan)
        for k, task in enumerate(suite.tasks):
            m = per_task.get(task, {})
            n = float(np.nan_to_num(m.get("episodes", 0.0)))
            if n > 0:
                episodes[k] = n
                returns[k] = float(m["return_sum"]) / n
                success[k] = float(m["success_sum"]) / n if suite.reports_success else np.nan
        for k, value in result.get("learners", {}).get("mtrl", {}).get("abs_advantage", {}).items():
            abs_adv[int(k)] = float(value)  # TaskAdvantageNormalization's mean |A| per task
        return TaskStats(iteration, returns, success, abs_adv, episodes.astype(np.int64))

    def _push(self, algorithm: Any, probs: np.ndarray) -> None:
        errors = algorithm.env_runner_group.foreach_env_runner(push_task_probs(probs), local_env_runner=True)
        for err in (e for e in errors if e):
            log.warning("mtrl: an env runner did not take the task probabilities: %s", err)
