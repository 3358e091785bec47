"""The training loop: collect -> advantages -> PPO update -> log -> checkpoint, then evaluate."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtrl.algos import NonFiniteGuard
from mtrl.algos.mt_grpo import GRPOAlgorithm
from mtrl.algos.ppo import PPOAlgorithm
from mtrl.algos.sac import SACAlgorithm
from mtrl.checkpoint import list_checkpoints, load_latest, remove_partial_writes, save_checkpoint
from mtrl.config import Config, save_config, to_dict
from mtrl.curve import EvalCurve
from mtrl.curriculum import checked_probs, make_curriculum, task_stats
from mtrl.errors import CheckpointError, MtrlError
from mtrl.evaluate import default_episodes, evaluate
from mtrl.logger import Logger
from mtrl.nn.policy import PolicySpec, build_policy, spec_for
from mtrl.registry import call_plugin
from mtrl.suite import TaskSuite, get_suite
from mtrl.vector import check_fast_backend
from mtrl.workers import WorkerPool


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise MtrlError("learner.device=cuda but no CUDA GPU is available; use learner.device=auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def policy_spec(cfg: Config, suite: TaskSuite) -> PolicySpec:
    p = cfg.policy
    return spec_for(suite.observation_space.shape, suite.action_space, suite.num_tasks, p.arch, p.hidden, p.layers,
                    p.num_experts, p.head, "sac" if cfg.algo == "sac" else "actor_critic", p.init)  # fmt: skip


def saved_spec(ckpt: dict[str, Any]) -> PolicySpec:
    """The checkpoint's PolicySpec, with today's defaults for fields added since it was written."""
    try:
        return PolicySpec(**{**ckpt["spec"], "obs_shape": tuple(ckpt["spec"]["obs_shape"])})
    except (TypeError, KeyError):
        raise CheckpointError(f"checkpoint policy spec {ckpt['spec']!r} does not describe an mtrl policy") from None


def policy_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> tuple[nn.Module, TaskSuite, dict]:
    """Rebuild (policy, suite, config dict) from a loaded checkpoint."""
    cfg = json.loads(ckpt["config"])
    suite = get_suite(cfg["env"]["suite"])
    spec = saved_spec(ckpt)
    if list(suite.tasks) != list(ckpt["tasks"]):
        raise CheckpointError(f"checkpoint tasks {ckpt['tasks']} do not match suite '{suite.name}' tasks {list(suite.tasks)}")
    policy = build_policy(spec).to(device)
    _load_state(policy, ckpt["policy"], "policy")
    return policy, suite, cfg


def _load_state(module: Any, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {what} state does not fit this {what}: {first}") from None


def _restore_rollouts(pool: WorkerPool, ckpt: dict[str, Any]) -> None:
    """Put the in-process envs back where the checkpoint left them, then torch's RNG (after the
    pool's own construction drew from it), so the run continues as if never stopped."""
    state = ckpt.get("collector")
    if state is not None and pool.restorable:
        try:
            pool.load_state_dict(state)
        except (ValueError, KeyError) as exc:  # e.g. resumed with another rollout.num_envs
            print(f"mtrl: env episodes restart on resume ({exc})")
    torch.set_rng_state(ckpt["rng_torch"])


def _run_dir(cfg: Config) -> Path:
    if cfg.resume:
        path = Path(cfg.resume)
        if not path.is_dir():
            raise MtrlError(f"resume={cfg.resume}: no such run directory")
        return path
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        path = Path("runs") / f"{cfg.env.suite}-{cfg.algo}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    if list_checkpoints(path):
        raise MtrlError(f"run_dir {path} already holds checkpoints; pass resume={path} to continue it, or pick another run_dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def train(cfg: Config) -> Path:
    """Train as `cfg` says; returns the run directory (config, TensorBoard, checkpoints, eval.json)."""
    suite = get_suite(cfg.env.suite)
    suite.check_horizon(cfg.env.max_episode_steps)
    check_fast_backend(suite, cfg.env.backend, cfg.rollout.autoreset_mode, cfg.env.max_episode_steps)
    device = resolve_device(cfg.learner.device)
    if cfg.learner.threads:
        torch.set_num_threads(cfg.learner.threads)
    torch.manual_seed(cfg.seed)
    spec = policy_spec(cfg, suite)
    policy = build_policy(spec).to(device)
    guard = NonFiniteGuard(cfg.train.max_nonfinite_updates)
    algo: PPOAlgorithm | GRPOAlgorithm | SACAlgorithm
    if cfg.algo == "ppo":
        algo = PPOAlgorithm(policy, cfg.ppo, suite.num_tasks, device, cfg.rollout.pipeline, guard)
    elif cfg.algo == "sac":
        algo = SACAlgorithm(policy, cfg, suite, device, guard)
    else:
        algo = GRPOAlgorithm(policy, cfg, suite.tasks, suite.reports_success, device, guard)
    gen = torch.Generator().manual_seed(cfg.seed)
    cur_name = cfg.curriculum.name or ""
    curriculum = make_curriculum(suite.tasks, cfg.curriculum) if cfg.curriculum.name else None
    run_dir = _run_dir(cfg)  # only now, so that a bad config leaves nothing behind
    env_steps = iteration = 0
    faults = {"worker_restarts": 0, "env_errors": 0, "nonfinite_updates": 0}  # cumulative over the run, kept across resumes
    task_steps = torch.zeros(suite.num_tasks, dtype=torch.int64)  # env steps per task, ditto
    ckpt = None
    if cfg.resume and remove_partial_writes(run_dir):
        print(f"mtrl: removed a checkpoint that a crash left half-written in {run_dir}")
    if cfg.resume and not list_checkpoints(run_dir):  # killed before its first checkpoint: start it over
        print(f"mtrl: {run_dir} has no checkpoint yet; starting it from step 0")
    elif cfg.resume:
        path, ckpt = load_latest(run_dir)
        if saved_spec(ckpt) != spec or list(ckpt["tasks"]) != list(suite.tasks):
            raise CheckpointError(f"{path} was trained with policy {ckpt['spec']} on {ckpt['tasks']}; this config asks "
                                  f"for {dataclasses.asdict(spec)} on {list(suite.tasks)}")  # fmt: skip
        _load_state(policy, ckpt["policy"], "policy")
        _load_state(algo, ckpt["optimizer"], "optimizer")
        gen.set_state(ckpt["rng_learner"])
        env_steps, iteration = int(ckpt["env_steps"]), int(ckpt["iteration"])
        faults.update(ckpt.get("faults", {}))
        guard.skipped = faults["nonfinite_updates"]
        if curriculum is not None and ckpt.get("curriculum") is not None:
            _load_state(curriculum, ckpt["curriculum"], "curriculum")
        task_steps = torch.as_tensor(ckpt.get("task_steps", task_steps))
        print(f"mtrl: resuming {run_dir} from {path.name} at {env_steps} env steps")
    save_config(dataclasses.replace(cfg, resume=None, run_dir=str(run_dir)), run_dir / "config.yaml")

    def checkpoint() -> Path:
        bad = [name for name, p in policy.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
        if bad:  # cannot happen through NonFiniteGuard; never let such a file replace a good one
            raise MtrlError(f"refusing to write a checkpoint with non-finite parameters ({', '.join(bad[:3])})")
        payload = {"policy": policy.state_dict(), "optimizer": algo.state_dict(), "env_steps": env_steps,
                   "iteration": iteration, "spec": dataclasses.asdict(spec), "tasks": list(suite.tasks),
                   "config": json.dumps(to_dict(cfg)), "rng_torch": torch.get_rng_state(),
                   "rng_learner": gen.get_state(), "faults": dict(faults), "task_steps": task_steps,
                   "curriculum": call_plugin("curriculum", cur_name, "state_dict()", curriculum.state_dict)
                   if curriculum is not None else None,
                   "collector": pool.state_dict(), "eval_done": curve.done if curve is not None else None}  # fmt: skip
        logger.flush()
        return save_checkpoint(run_dir, payload, env_steps, cfg.train.keep_checkpoints)

    workers = f"{cfg.rollout.workers} Ray workers" if cfg.rollout.workers else "in-process rollouts"
    print(f"mtrl: {cfg.algo}/{cfg.policy.arch} on {suite.name} ({suite.num_tasks} tasks), learner on {device}, "
          f"{workers} x {cfg.rollout.num_envs} envs; run dir {run_dir}")  # fmt: skip
    pool = WorkerPool(suite, spec, cfg, seed=cfg.seed + 1_000_003 * iteration)
    if ckpt is not None:
        _restore_rollouts(pool, ckpt)
    if cfg.rollout.workers:
        print(f"mtrl: {cfg.rollout.workers} rollout workers on {len(set(pool.node_ids()))} Ray node(s)")
    logger = Logger(run_dir, suite.tasks, cfg.train.total_steps, env_steps)
    episodes = default_episodes(suite, cfg.train.eval_episodes)
    # SAC is evaluated with its deterministic (mean) action, as MOORE and Meta-World report it;
    # with Ray workers the episodes run on them, with the same result as in-process
    greedy = cfg.algo == "sac" if cfg.train.eval_greedy is None else cfg.train.eval_greedy
    curve = None
    if cfg.train.eval_every and episodes:
        done = ckpt.get("eval_done") if ckpt is not None else None
        curve = EvalCurve(run_dir, suite, cfg.train.eval_every, episodes, greedy, cfg.seed, cfg.env.max_episode_steps,
                          env_steps, done)  # fmt: skip

    def evaluate_on_schedule(final: bool = False) -> None:
        if curve is not None and (curve.due(env_steps) or final):
            t0 = time.perf_counter()
            logger.log_eval(env_steps, curve.run(policy, env_steps, iteration, pool.run_eval), time.perf_counter() - t0)

    last_saved, restarts_seen = -1, 0
    stop = GracefulStop()
    try:
        evaluate_on_schedule()
        while env_steps < cfg.train.total_steps:
            t0 = time.perf_counter()
            if cfg.ppo.anneal_lr:
                algo.set_lr_fraction(1.0 - env_steps / cfg.train.total_steps)
            if curriculum is not None:
                algo.task_probs = checked_probs(curriculum, cur_name, suite.num_tasks)
            it = algo.iterate(pool, gen)
            task_steps += torch.as_tensor(it.task_steps)
            env_steps += it.env_steps
            iteration += 1
            faults["env_errors"] += it.env_errors
            faults["nonfinite_updates"] = guard.skipped
            faults["worker_restarts"] += pool.restarts - restarts_seen
            restarts_seen = pool.restarts
            logger.log_faults(env_steps, faults)
            logger.log_task_steps(env_steps, task_steps.numpy())
            if curriculum is not None:
                stats = task_stats(iteration, it.episodes, it.task_abs_adv, suite.num_tasks, suite.reports_success,
                                   algo.task_weights())  # fmt: skip
                call_plugin("curriculum", cur_name, "update()", curriculum.update, stats)
                logger.log_curriculum(env_steps, algo.task_probs, call_plugin("curriculum", cur_name, "scores()", curriculum.scores))
            logger.log_iteration(env_steps, it.env_steps, it.episodes, it.losses,
                                 it.env_steps / (time.perf_counter() - t0), suite.reports_success, it.scalars)  # fmt: skip
            evaluate_on_schedule()
            if iteration % cfg.train.checkpoint_every == 0:
                checkpoint()
                last_saved = iteration
            if stop.requested:  # at an iteration boundary, so that the resume is exact
                raise KeyboardInterrupt
        if last_saved != iteration:
            checkpoint()
        logger.bar.close()
        if curve is not None:  # the final evaluation is the curve's last point
            if curve.last is None or curve.last[0] != env_steps:  # e.g. total_steps is no multiple of eval_every
                evaluate_on_schedule(final=True)
            result = curve.last[1]  # type: ignore[index]
        elif episodes:
            result = evaluate(policy, suite, episodes, cfg.seed, greedy, cfg.env.max_episode_steps, pool.run_eval)
            logger.log_eval(env_steps, result)
        if episodes:
            result.write_json(run_dir / "eval.json")
            print(result.table())
    except KeyboardInterrupt:
        logger.bar.close()
        if last_saved != iteration:
            print(f"\nmtrl: interrupted; saved {checkpoint()} (resume with resume={run_dir})")
        raise
    finally:
        stop.close()
        logger.close()  # ends the progress bar's line before any error message
        pool.close()
    return run_dir


class GracefulStop:
    """While training: the first SIGINT or SIGTERM asks the loop to stop at the end of the
    current iteration (`requested`), so the checkpoint it saves is at an iteration boundary and
    the resume is exact; a second one stops at once. Signal handlers live in the main thread
    only, so elsewhere (a training started from a thread) signals keep their usual effect."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nmtrl: stopping after this iteration, with a checkpoint (interrupt again to stop at once)", file=sys.stderr)

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
