"""Evaluating trained policies: `mtrl eval` on checkpoints (tables, reports, videos), and the
comparison of a sweep's finished runs from their own final evaluations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtrl.collect.ray import init_ray
from mtrl.config.schema import RayConfig
from mtrl.env.suite import TaskSuite, get_suite
from mtrl.errors import MtrlError
from mtrl.eval.evaluate import EvalResult, default_episodes, evaluate, ray_runner
from mtrl.eval.report import Report, RunEval, build_report, expand_targets, method_label
from mtrl.nn.policy import Policy
from mtrl.registry import ALGOS
from mtrl.run.checkpoint import checkpoint_steps, list_checkpoints, load_latest, policy_from_checkpoint
from mtrl.run.training import resolve_device


def evaluate_runs(
    targets: list[str],
    *,
    episodes: int | None = None,
    seed: int = 0,
    greedy: bool = False,
    device: str = "auto",
    workers: int = 0,
    metric: str = "auto",
    reps: int = 2000,
    video: Path | None = None,
    fps: int = 15,
    verbose: bool = False,
) -> Report:
    """Evaluate the newest checkpoint of each `[NAME=]PATH` target (globs allowed) on every task of
    its suite, and compare them per method (`Report`). `verbose` prints each run's table."""
    _check_options(episodes, reps, fps, workers)
    if video:
        from mtrl.eval.video import choose_mujoco_gl

        choose_mujoco_gl()  # before any MuJoCo env is imported
    loaded = [(name, *load_latest(path)) for name, path in expand_targets(targets)]  # every file checked first
    suites = {json.loads(ckpt["config"])["env"]["suite"] for _, _, ckpt in loaded}
    if len(suites) > 1:
        raise MtrlError(
            f"the checkpoints come from different suites ({', '.join(sorted(suites))}); compare runs of one suite"
        )
    torch_device = resolve_device(device)
    ray_started = _start_ray(workers)
    runner = ray_runner(workers) if workers else None
    runs, suite = [], None
    try:
        for name, path, ckpt in loaded:
            policy, suite, cfg = policy_from_checkpoint(ckpt, torch_device)
            n = default_episodes(suite, episodes)
            if verbose:
                print(
                    f"mtrl: evaluating {path} ({int(ckpt['env_steps'])} env steps) on {suite.name}, {n} episodes per task"
                )
            mean_action = greedy or ALGOS.get(cfg["algo"]).greedy_eval  # SAC: its mean action
            result = evaluate(policy, suite, n, seed, mean_action, cfg["env"]["max_episode_steps"], runner)
            if verbose:
                print(result.table())
            label = name or method_label(cfg, ckpt.get("source"))
            runs.append(RunEval(label, str(path), int(ckpt["env_steps"]), result))
            if video:
                where = video if len(loaded) == 1 else video / _slug(path)
                _write_videos(policy, suite, where, seed, mean_action, cfg["env"]["max_episode_steps"], fps)
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    assert suite is not None  # expand_targets gives at least one run or raises
    return build_report(runs, metric, suite.return_range, reps, seed)


def _check_options(episodes: int | None, reps: int, fps: int, workers: int) -> None:
    """One line for an option out of range, before anything is loaded."""
    for flag, value in (("episodes", 1 if episodes is None else episodes), ("reps", reps), ("fps", fps)):
        if value < 1:
            raise MtrlError(f"--{flag} must be >= 1, got {value}")
    if workers < 0:
        raise MtrlError(f"--workers must be >= 0, got {workers}")


def _write_videos(
    policy: Policy, suite: TaskSuite, where: Path, seed: int, mean_action: bool, horizon: int, fps: int
) -> None:
    """One GIF per task of the policy's episodes (`mtrl eval --video`)."""
    from mtrl.eval.video import record_videos

    for gif, frames in record_videos(policy, suite, where, seed, mean_action, horizon, fps):
        print(f"mtrl: wrote {gif} ({frames} frames)")


def evaluate_checkpoints(args: argparse.Namespace) -> None:
    """`mtrl eval`: evaluate each checkpoint, print its table, then compare the runs (see its --help)."""
    report = evaluate_runs(
        args.targets,
        episodes=args.episodes,
        seed=args.seed,
        greedy=args.greedy,
        device=args.device,
        workers=args.workers,
        metric=args.metric,
        reps=args.reps,
        video=args.video,
        fps=args.fps,
        verbose=True,
    )
    if len(report.runs) > 1:
        print("\n" + report.markdown())
    if args.json:
        report.write_json(args.json)
    if args.out:
        print("mtrl: wrote " + ", ".join(str(p) for p in report.write(args.out)))


def _start_ray(workers: int) -> bool:
    """Start an embedded local Ray (no dashboard) for `--workers`; True if this call started it."""
    if not workers:
        return False
    return init_ray(RayConfig(), workers)[1]


def _slug(path: Path) -> str:
    """A directory name for a run's videos: its run directory's path, flattened."""
    run = path.parent.parent if path.is_file() and path.parent.name == "checkpoints" else path
    return "_".join(p for p in run.parts if p not in ("/", ".", "..")) or "run"


def report_from_runs(runs: list[tuple[str, Path]], metric: str, reps: int) -> Report | None:
    """The comparison of finished runs, (method, run directory), from each run's final evaluation
    (eval.json: the run's own protocol and seed) rather than new episodes; None without runs."""
    evals = []
    for method, run_dir in runs:
        try:
            result = EvalResult.from_json(json.loads((run_dir / "eval.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MtrlError(f"{run_dir / 'eval.json'} is not a readable evaluation ({exc})") from None
        ckpts = list_checkpoints(run_dir)
        evals.append(RunEval(method, str(run_dir), checkpoint_steps(ckpts[-1]) if ckpts else 0, result))
    if not evals:
        return None
    return build_report(evals, metric, get_suite(evals[0].result.suite).return_range, reps, 0)
