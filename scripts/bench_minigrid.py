"""Train methods x seeds on a MiniGrid suite and print the results tables.

A method is a policy architecture under one config (`--archs`, run as
`mtrl train <config> policy.arch=<arch>`), an override of that config (`--variants
name=key=value`) or a whole config (`--methods name=config.yaml`). The runs are an `mtrl sweep`
(`mtrl.run.sweep`: each run `mtrl train ... seed=<s> run_dir=<out>/<method>/s<s> rollout.workers=0
learner.threads=1` in a one-CPU Ray task, `--parallel` at a time); the tables read each run's
eval.json (final evaluation, 16 stochastic episodes per task, MOORE's protocol). Runs that already
have an eval.json are skipped, runs with checkpoints are resumed and runs whose process died are
retried, so an interrupted benchmark continues where it stopped. Reported per method, as the IQM (25% trimmed mean, as rliable) over
seeds: the final mean return over tasks and the worst task's return, with the per-task returns;
with `--target X` also the env steps each run took to reach a mean training return of X over
tasks (each task's return averaged over its last 5 logged iterations, read from TensorBoard).

  python scripts/bench_minigrid.py --archs moore moe multihead mlp --seeds 0 1 2 --parallel 2
  python scripts/bench_minigrid.py --methods ppo=configs/minigrid_mt3_mtppo.yaml \\
      grpo=configs/minigrid_mt3_grpo.yaml mt_grpo=configs/minigrid_mt3_mt_grpo.yaml \\
      --seeds 0 1 2 --out runs/bench_grpo
  python scripts/bench_minigrid.py --config configs/minigrid_mt5_curriculum.yaml --variants \\
      uniform=curriculum.name=uniform plr=curriculum.name=plr --seeds 0 1 2 --target 0.5
  python scripts/bench_minigrid.py --aggregate-only --archs moore moe multihead mlp --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean


def steps_to(run: Path, tasks: list[str], target: float, window: int = 5) -> float:
    """The first env step at which the mean over tasks of each task's last `window` logged
    training returns reaches `target` (NaN if never; no task may have fewer than `window`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    events = sorted((e.step, k, e.value) for k, t in enumerate(tasks) for e in acc.Scalars(f"task/{t}/return"))
    recent: list[list[float]] = [[] for _ in tasks]
    for step, k, value in events:
        recent[k] = (recent[k] + [value])[-window:]
        if all(len(r) == window for r in recent) and np.mean([np.mean(r) for r in recent]) >= target:
            return float(step)
    return float("nan")


def step_shares(run: Path, tasks: list[str]) -> np.ndarray | None:
    """Each task's share of the run's env steps (TensorBoard task/<name>/env_steps), if logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    if f"task/{tasks[0]}/env_steps" not in acc.Tags()["scalars"]:
        return None
    steps = np.array([acc.Scalars(f"task/{t}/env_steps")[-1].value for t in tasks])
    return steps / steps.sum()


def report(names: list[str], seeds: list[int], out: Path, target: float | None = None) -> None:
    rows, tasks = {}, None
    for name in names:
        found = [s for s in seeds if (out / name / f"s{s}" / "eval.json").exists()]
        if not found:
            print(f"{name}: no finished runs under {out / name}")
            continue
        evals = [json.loads((out / name / f"s{s}" / "eval.json").read_text()) for s in found]
        tasks = [t["task"] for t in evals[0]["tasks"]]
        rows[name] = (found, np.array([[t["mean_return"] for t in e["tasks"]] for e in evals]))  # [seeds, tasks]
    if not rows or tasks is None:
        return
    print(
        "\n| method | seeds | IQM mean return over tasks | IQM worst-task return | mean (min - max) over seeds | "
        + " | ".join(tasks)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(tasks))
    for name, (found, ret) in rows.items():
        per_run, worst = ret.mean(axis=1), ret.min(axis=1)
        cells = " | ".join(f"{m:.3f}" for m in ret.mean(axis=0))
        print(
            f"| {name} | {len(found)} | {trim_mean(per_run, 0.25):.3f} | {trim_mean(worst, 0.25):.3f} | "
            f"{per_run.mean():.3f} ({per_run.min():.3f} - {per_run.max():.3f}) | {cells} |"
        )
    if target is not None:
        print(f"\nEnv steps to a mean training return of {target} over tasks (per seed; '-' never reached):")
        for name, (found, _) in rows.items():
            steps = [steps_to(out / name / f"s{s}", tasks, target) for s in found]
            reached = [x for x in steps if np.isfinite(x)]
            median = np.median(np.where(np.isfinite(steps), steps, np.inf))  # a run that never reached counts as last
            med = f"median {median:.0f}" if np.isfinite(median) else "median not reached"
            print(
                f"  {name}: "
                + ", ".join(f"s{s}={x:.0f}" if np.isfinite(x) else f"s{s}=-" for s, x in zip(found, steps))
                + f"  ({len(reached)}/{len(steps)} reached, {med})"
            )
    shares = {name: [step_shares(out / name / f"s{s}", tasks) for s in found] for name, (found, _) in rows.items()}
    if any(x is not None for runs in shares.values() for x in runs):
        print("\nShare of env steps per task (mean over seeds):")
        for name, runs in shares.items():
            known = [x for x in runs if x is not None]
            if known:
                print(
                    f"  {name}: "
                    + ", ".join(f"{t.removeprefix('MiniGrid-')} {v:.2f}" for t, v in zip(tasks, np.mean(known, 0)))
                )
    print("\nPer run (mean return over tasks / worst task):")
    for name, (found, ret) in rows.items():
        print(f"  {name}: " + ", ".join(f"s{s}={r.mean():.3f}/{r.min():.3f}" for s, r in zip(found, ret)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/minigrid_mt3_mtppo.yaml", help="training config for --archs")
    p.add_argument("--archs", nargs="+", default=[], help="policy.arch values, each run with --config")
    p.add_argument("--variants", nargs="+", default=[], metavar="NAME=KEY=VALUE", help="named overrides of --config")
    p.add_argument("--methods", nargs="+", default=[], metavar="NAME=CONFIG", help="named configs to compare")
    p.add_argument("--target", type=float, help="also report the env steps to reach this mean training return")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    p.add_argument(
        "--out", type=Path, default=Path("runs/bench_minigrid"), help="parent folder: <out>/<method>/s<seed>"
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at once, one CPU each (the embedded Ray's CPUs)")
    p.add_argument("--aggregate-only", action="store_true", help="skip training; only read finished runs")
    p.add_argument(
        "overrides", nargs="*", help="extra key=value overrides for every run, e.g. train.total_steps=300000"
    )
    args = p.parse_args()
    methods: dict[str, tuple[str, list[str]]] = {a: (args.config, [f"policy.arch={a}"]) for a in args.archs}
    for item in args.variants:
        name, sep, override = item.partition("=")
        if not sep or not name or "=" not in override:
            p.error(f"--variants {item!r}: expected NAME=KEY=VALUE, e.g. plr=curriculum.name=plr")
        methods[name] = (args.config, [override])
    for item in args.methods:
        name, sep, config = item.partition("=")
        if not sep or not name or not Path(config).is_file():
            p.error(f"--methods {item!r}: expected NAME=CONFIG with an existing config file")
        methods[name] = (config, [])
    if not methods:
        p.error("give --archs, --variants or --methods")
    if not args.aggregate_only:
        from tqdm import tqdm

        from mtrl.collect.ray import init_ray
        from mtrl.config.schema import RayConfig
        from mtrl.run.sweep import Sweep

        ray, _ = init_ray(RayConfig(num_cpus=max(1, args.parallel)), 1)
        sweep = Sweep(methods, sorted(set(args.seeds)), args.out, args.overrides)
        with tqdm(total=len(sweep.runs), unit="run", desc="bench", file=sys.stderr) as bar:
            for r in sweep.run(ray, bar):
                print(f"{r.name}: {r.status} {r.note}".rstrip(), flush=True)
        ray.shutdown()
    report(list(methods), args.seeds, args.out, args.target)


if __name__ == "__main__":
    main()
