"""One training run's state and steps: built (and resumed) from a config, then iterated by
`mtrl.run.trainer.train`. The data flow of an iteration: curriculum -> requests -> rollout
workers -> algorithm -> logs and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mtrl.algos.base import NonFiniteGuard, checked_iteration
from mtrl.collect.pool import WorkerPool
from mtrl.config import Config, save_config, to_dict
from mtrl.curriculum import checked_probs, checked_scores, make_curriculum, task_stats
from mtrl.env.envpool import check_fast_backend
from mtrl.env.suite import TaskSuite, get_suite
from mtrl.errors import MtrlError
from mtrl.eval.curve import EvalCurve
from mtrl.eval.evaluate import EvalResult, default_episodes, evaluate
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy, compile_networks, spec_from_config
from mtrl.nn.routing import take_routing
from mtrl.registry import ALGOS, call_plugin
from mtrl.run.checkpoint import (
    checkpoint_steps,
    foreign,
    list_checkpoints,
    load_state,
    newest_intact,
    remove_partial_writes,
    save_checkpoint,
    saved_spec,
    set_aside,
)
from mtrl.run.lock import make_run_dir
from mtrl.run.logger import FailureNotice, Logger


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise MtrlError("learner.device=cuda but no CUDA GPU is available; use learner.device=auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def policy_spec(cfg: Config, suite: TaskSuite) -> PolicySpec:
    """The policy `cfg` asks for on `suite`, of the kind its algorithm trains."""
    return spec_from_config(
        suite.observation_space.shape,
        suite.action_space,
        suite.num_tasks,
        cfg.policy,
        ALGOS.get(cfg.algo).policy_kind,
        suite.task_metadata,
    )


def _prefixed(path: Path, why: str | None) -> str | None:
    return None if why is None else f"checkpoint {path} {why}"


class Training:
    """Everything one run holds: suite, policy, algorithm, curriculum, rollout workers, counters,
    logger and evaluation curve. Built in a fixed order (it fixes the RNG streams, so that a run
    and its resume are bit-identical); nothing is written before the config has been checked."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        suite = self.suite = get_suite(cfg.env.suite, cfg.env.reward_version)
        suite.check_horizon(cfg.env.max_episode_steps)
        check_fast_backend(suite, cfg.env.backend, cfg.rollout.autoreset_mode, cfg.env.max_episode_steps)
        algo_cls = ALGOS.get(cfg.algo)
        device = resolve_device(cfg.learner.device)
        if cfg.learner.threads:
            torch.set_num_threads(cfg.learner.threads)
        torch.manual_seed(cfg.seed)
        self.spec = policy_spec(cfg, suite)
        self.policy = build_policy(self.spec).to(device)
        if cfg.learner.compile:
            compile_networks(self.policy, cfg.learner)
        self.guard = NonFiniteGuard(cfg.train.max_nonfinite_updates)
        self.algo = call_plugin(
            "algorithm", cfg.algo, "its constructor", algo_cls, self.policy, cfg, suite, device, self.guard
        )
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.cur_name = cfg.curriculum.name or ""
        self.curriculum = make_curriculum(suite.tasks, cfg.curriculum) if cfg.curriculum.name else None
        self.run_dir, self.lock = make_run_dir(cfg)  # only now, so that a bad config leaves nothing behind
        try:
            self._start(cfg, suite, algo_cls, device)
        except BaseException:  # an in-process caller may train this directory again
            self.lock.release()
            raise

    def _start(self, cfg: Config, suite: TaskSuite, algo_cls: Any, device: torch.device) -> None:
        """Resume (when asked), write the config, start the rollout workers, logger and curve."""
        self.env_steps = self.iteration = 0
        # cumulative fault counters, kept across resumes (damaged_checkpoints: those a resume passed over)
        self.faults = {"worker_restarts": 0, "env_errors": 0, "nonfinite_updates": 0, "damaged_checkpoints": 0}
        self.task_steps = torch.zeros(suite.num_tasks, dtype=torch.int64)  # env steps per task, ditto
        ckpt = self._resume() if cfg.resume else None
        try:
            save_config(dataclasses.replace(cfg, resume=None, run_dir=str(self.run_dir)), self.run_dir / "config.yaml")
        except OSError as exc:  # an unwritable run directory: stop before training, nothing lost
            raise MtrlError(f"cannot write {self.run_dir / 'config.yaml'}: {exc.strerror or exc}") from None
        workers = f"{cfg.rollout.workers} Ray workers" if cfg.rollout.workers else "in-process rollouts"
        print(
            f"mtrl: {cfg.algo}/{cfg.policy.arch} on {suite.name} ({suite.num_tasks} tasks), learner on {device}, "
            f"{workers} x {cfg.rollout.num_envs} envs; run dir {self.run_dir}"
        )
        self.pool = WorkerPool(suite, self.spec, cfg, cfg.seed + 1_000_003 * self.iteration, algo_cls.collector)
        if ckpt is not None:
            self._restore_rollouts(ckpt)
        if cfg.rollout.workers:
            print(f"mtrl: {cfg.rollout.workers} rollout workers on {len(set(self.pool.start_nodes))} Ray node(s)")
        self.logger = Logger(self.run_dir, suite.tasks, cfg.train.total_steps, self.env_steps)
        self.episodes = default_episodes(suite, cfg.train.eval_episodes)
        # with Ray workers the evaluation episodes run on them, with the same result as in-process
        self.greedy = algo_cls.greedy_eval if cfg.train.eval_greedy is None else cfg.train.eval_greedy
        self.curve = None
        if cfg.train.eval_every and self.episodes:
            done = ckpt.get("eval_done") if ckpt is not None else None
            self.curve = EvalCurve(
                self.run_dir,
                suite,
                cfg.train.eval_every,
                self.episodes,
                self.greedy,
                cfg.seed,
                cfg.env.max_episode_steps,
                self.env_steps,
                done,
            )
        self.last_saved, self._restarts_seen = -1, 0
        # where a stop lands (see save_on_stop): "boundary" between iterations, "collect" before the
        # update (the policy and optimiser still at the last boundary), "update" mid-update
        self.phase, self.writing = "boundary", False
        self.env_error_notice = FailureNotice()
        self.rng_at_boundary: tuple[torch.Tensor, torch.Tensor] | None = None  # taken as each collection starts

    def _resume(self) -> dict[str, Any] | None:
        """Load the newest checkpoint of the run directory into every part; None when there is none."""
        run_dir, suite = self.run_dir, self.suite
        if remove_partial_writes(run_dir):
            print(f"mtrl: removed a checkpoint that a crash left half-written in {run_dir}")
        if not list_checkpoints(run_dir):  # killed before its first checkpoint: start it over
            print(f"mtrl: {run_dir} has no checkpoint yet; starting it from step 0")
            return None
        path, ckpt, passed = newest_intact(run_dir, lambda c, ck: _prefixed(c, foreign(ck, self.spec, suite.tasks)))
        for bad, why in passed:  # a damaged or foreign file is never loaded, and never lost
            lost = checkpoint_steps(bad) - int(ckpt["env_steps"])
            print(
                f"mtrl: warning: {why}; moved it to {set_aside(bad)}, resuming from {path.name}: {lost} env steps lost",
                file=sys.stderr,
            )
        if saved_spec(ckpt).critic_ensemble != self.spec.critic_ensemble:
            layout = "one ensemble" if self.spec.critic_ensemble else "two modules"
            print(f"mtrl: converting the twin critics of {path.name} to {layout} (policy.critic_ensemble)")
        load_state(self.policy, ckpt["policy"], "policy")
        load_state(self.algo, ckpt["optimizer"], "optimizer")
        self.gen.set_state(ckpt["rng_learner"])
        self.env_steps, self.iteration = int(ckpt["env_steps"]), int(ckpt["iteration"])
        self.faults.update(ckpt.get("faults", {}))
        self.faults["damaged_checkpoints"] = self.faults.get("damaged_checkpoints", 0) + len(passed)
        self.guard.restore(self.faults["nonfinite_updates"])
        if self.curriculum is not None and ckpt.get("curriculum") is not None:
            load_state(self.curriculum, ckpt["curriculum"], "curriculum")
        self.task_steps = torch.as_tensor(ckpt.get("task_steps", self.task_steps))
        print(f"mtrl: resuming {run_dir} from {path.name} at {self.env_steps} env steps")
        return ckpt

    def _restore_rollouts(self, ckpt: dict[str, Any]) -> None:
        """Put the in-process envs back where the checkpoint left them, then torch's RNG (after the
        pool's own construction drew from it), so the run continues as if never stopped."""
        state = ckpt.get("collector")
        if state is not None and self.pool.restorable:
            try:
                self.pool.load_state_dict(state)
            except (ValueError, KeyError) as exc:  # e.g. resumed with another rollout.num_envs
                print(f"mtrl: env episodes restart on resume ({exc})")
        torch.set_rng_state(ckpt["rng_torch"])

    def iterate(self) -> None:
        """One iteration: the curriculum's task probabilities, the algorithm's requests answered
        by the rollout workers, its update, then the counters and logs."""
        cfg, suite, algo = self.cfg, self.suite, self.algo
        t0 = time.perf_counter()
        algo.set_progress(self.env_steps / cfg.train.total_steps)
        probs = checked_probs(self.curriculum, self.cur_name, suite.num_tasks) if self.curriculum is not None else None
        self.phase, self.rng_at_boundary = "collect", (torch.get_rng_state(), self.gen.get_state())
        data = self.pool.serve(algo.requests(self.env_steps, probs, self.gen), self.policy, self.env_steps, cfg.algo)
        collect_s = time.perf_counter() - t0
        self.phase = "update"
        it = checked_iteration(algo.learn(data, self.gen), cfg.algo, suite.num_tasks)
        self.task_steps += torch.as_tensor(it.task_steps)
        self.env_steps += it.env_steps
        self.iteration += 1
        self.faults["env_errors"] += it.env_errors
        self.env_error_notice.add(it.env_errors, self.faults["env_errors"])
        for key, n in it.faults.items():
            self.faults[key] = self.faults.get(key, 0) + int(n)
        self.faults["nonfinite_updates"] = self.guard.skipped
        routing, collapsed = take_routing(self.policy, suite.tasks)  # sparse gates' expert shares
        if routing:
            self.faults["collapsed_experts"] = self.faults.get("collapsed_experts", 0) + collapsed
        self._count_restarts()
        self.logger.log_task_steps(self.env_steps, self.task_steps.numpy())
        if self.curriculum is not None:
            stats = task_stats(
                self.iteration,
                it.episodes,
                it.task_abs_adv,
                suite.num_tasks,
                suite.reports_success,
                algo.task_weights(),
            )
            call_plugin("curriculum", self.cur_name, "update()", self.curriculum.update, stats)
            assert probs is not None  # drawn above whenever there is a curriculum
            self.logger.log_curriculum(
                self.env_steps, probs, checked_scores(self.curriculum, self.cur_name, suite.num_tasks)
            )
        self.phase = "boundary"  # every part has taken this iteration; what follows only reports it
        self.logger.log_iteration(
            self.env_steps,
            it.env_steps,
            it.episodes,
            it.losses,
            it.env_steps / (time.perf_counter() - t0),
            suite.reports_success,
            {"perf/collect_s": collect_s, **it.scalars, **routing},
        )

    def _count_restarts(self) -> None:
        """Add the rollout workers restarted since the last call (in collection or evaluation) to
        the fault counters, and log them."""
        self.faults["worker_restarts"] += self.pool.restarts - self._restarts_seen
        self._restarts_seen = self.pool.restarts
        self.logger.log_faults(self.env_steps, self.faults)

    def evaluate_on_schedule(self, final: bool = False) -> None:
        """The evaluation curve's next point, when it is due (or `final`)."""
        if self.curve is not None and (self.curve.due(self.env_steps) or final):
            t0 = time.perf_counter()
            result = self.curve.run(self.policy, self.env_steps, self.iteration, self.pool.run_eval)
            self.logger.log_eval(self.env_steps, result, time.perf_counter() - t0)
            self._count_restarts()  # a worker may have died during the evaluation

    def checkpoint(self, collector: bool = True) -> Path:
        """Write a checkpoint of every part (never one with non-finite parameters); `collector`:
        with the in-process envs' state (else a resume starts their episodes afresh)."""
        policy = self.policy
        bad = [
            name
            for name, p in policy.state_dict().items()
            if p.is_floating_point() and not bool(torch.isfinite(p).all())
        ]
        if bad:  # cannot happen through NonFiniteGuard; never let such a file replace a good one
            raise MtrlError(f"refusing to write a checkpoint with non-finite parameters ({', '.join(bad[:3])})")
        cur = self.curriculum
        payload = {
            "policy": policy.state_dict(),
            "optimizer": self.algo.state_dict(),
            "env_steps": self.env_steps,
            "iteration": self.iteration,
            "spec": dataclasses.asdict(self.spec),
            "tasks": list(self.suite.tasks),
            "config": json.dumps(to_dict(self.cfg)),
            "rng_torch": torch.get_rng_state(),
            "rng_learner": self.gen.get_state(),
            "faults": dict(self.faults),
            "task_steps": self.task_steps,
            "curriculum": call_plugin("curriculum", self.cur_name, "state_dict()", cur.state_dict) if cur else None,
            "collector": self.pool.state_dict() if collector else None,
            "eval_done": self.curve.done if self.curve is not None else None,
        }
        self.logger.flush()
        self.writing = True  # until the file is in place: a stop during the write saves nothing more
        path = save_checkpoint(self.run_dir, payload, self.env_steps, self.cfg.train.keep_checkpoints)
        self.writing, self.last_saved = False, self.iteration
        return path

    def finish(self) -> EvalResult | None:
        """The last checkpoint and the final evaluation (the curve's last point), written to eval.json."""
        if self.last_saved != self.iteration:
            self.checkpoint()
        self.logger.bar.close()
        result = None
        if self.curve is not None:
            if (
                self.curve.last is None or self.curve.last[0] != self.env_steps
            ):  # e.g. total_steps is no multiple of eval_every
                self.evaluate_on_schedule(final=True)
            result = self.curve.last[1]  # type: ignore[index]
        elif self.episodes:
            cfg = self.cfg
            result = evaluate(
                self.policy,
                self.suite,
                self.episodes,
                cfg.seed,
                self.greedy,
                cfg.env.max_episode_steps,
                self.pool.run_eval,
            )
            self.logger.log_eval(self.env_steps, result)
            self._count_restarts()
        if result is not None:
            result.write_json(self.run_dir / "eval.json")
            print(result.table())
        return result

    def close(self) -> None:
        self.logger.close()  # ends the progress bar's line before any error message
        self.pool.close()
        self.lock.release()
