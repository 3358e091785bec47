"""Compare two methods over seeds: train them, evaluate them side by side, and plot their curves.

The methods are two policy architectures under PPO on the toy suite (`multihead`: one output head
per task; `mlp`: one network on the observation and the task's one-hot). `mtrl.evaluate` scores
every run on every task and aggregates each method over runs x tasks (mean, median and IQM with
95% stratified-bootstrap CIs); `mtrl plot` draws the training curves and the evaluation curves.

    python examples/evaluate_and_plot.py                               # quick: 1 seed, 3k steps each
    python examples/evaluate_and_plot.py results/ --seeds 5 --steps 40000    # a real comparison

Everything goes into the output directory (default: a new temporary one): runs/<method>/s<seed>
(the layout `mtrl eval` and `mtrl plot` read), report/ (report.md, report.json, summary.csv,
runs.csv), curves.png and eval_curves.png. The same from the shell:

    mtrl eval 'multihead=OUT/runs/multihead/s*' 'mlp=OUT/runs/mlp/s*' --out OUT/report
    mtrl plot 'multihead=OUT/runs/multihead/s*' 'mlp=OUT/runs/mlp/s*' --out OUT/curves.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mtrl
from mtrl.cli import main as mtrl_command

METHODS = {"multihead": {"policy__arch": "multihead"}, "mlp": {"policy__arch": "mlp"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="output directory (default: a new temporary one)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per method (default 1)")
    parser.add_argument("--steps", type=int, default=3_000, help="env steps per run (default 3000)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mtrl-compare-"))

    runs: dict[str, list[Path]] = {}
    for method, options in METHODS.items():
        for seed in range(args.seeds):
            runs.setdefault(method, []).append(
                mtrl.train(
                    "toy_mtppo",
                    seed=seed,
                    run_dir=str(out / "runs" / method / f"s{seed}"),
                    rollout__workers=0,
                    train__total_steps=args.steps,
                    # also evaluate before training and every quarter of it: eval_curve.csv, for the eval plot
                    train__eval_every=max(args.steps // 4, 1),
                    train__eval_episodes=4,
                    **options,
                )
            )

    # a mapping method -> runs labels the methods; each run's newest checkpoint is evaluated afresh;
    # metric="return": the toy tasks' success needs more training than the quick check gives
    report = mtrl.evaluate(runs, episodes=8, metric="return")
    print(report.markdown())
    for path in report.write(out / "report"):
        print(f"wrote {path}")

    # `mtrl plot` from Python: the same arguments as on the command line, NAME=RUN labels a method
    labelled = [f"{method}={run}" for method, paths in runs.items() for run in paths]
    for extra, image in (([], "curves.png"), (["--source", "eval"], "eval_curves.png")):
        if mtrl_command(["plot", *labelled, *extra, "--metric", "return", "--out", str(out / image)]) != 0:
            raise SystemExit(f"mtrl plot failed for {image}")


if __name__ == "__main__":
    main()
