"""The `mtrl` command's arguments: every subcommand, its options and help texts (`mtrl.run.cli`
runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.version import __version__

TRAIN_EPILOG = """\
Overrides are dotted key=value pairs applied on top of CONFIG, values parsed as YAML scalars,
e.g. `mtrl train configs/minigrid_mt3_mtppo.yaml seed=1 train.total_steps=60000 rollout.workers=0`.
To continue a run: `mtrl train resume=runs/NAME` (CONFIG then defaults to runs/NAME/config.yaml).

Config keys:
"""

EVAL_DESCRIPTION = """\
Evaluate each checkpoint on every task of its suite and print its per-task table. With several
runs, also aggregate them per method (runs sharing a NAME=, else the same algo and arch): mean,
median and IQM over runs x tasks with 95% stratified-bootstrap CIs, and a per-task comparison.

  mtrl eval runs/a
  mtrl eval ppo=runs/ppo/s0 ppo=runs/ppo/s1 grpo=runs/grpo/s0 grpo=runs/grpo/s1 --out report/
  mtrl eval runs/a --video videos/ --episodes 4
"""

SWEEP_DESCRIPTION = """\
Train a grid of methods x seeds. Each run is `mtrl train CONFIG seed=S run_dir=OUT/<method>/s<S>
rollout.workers=0 learner.threads=C [overrides]` in a Ray task that reserves C = --cpus-per-run
CPUs, so the same command fills a laptop (an embedded local Ray) or a cluster (--address auto).
Runs with an eval.json are skipped, runs with checkpoints resume from the newest, and a run whose
process dies is resumed up to --retries times (counted in OUT/sweep.json). Ctrl-C stops the sweep;
every running run saves a checkpoint first, and the same command continues it. At the end the
runs are compared as by `mtrl eval` (from each run's final evaluation) and written to OUT/report/.

  mtrl sweep moore=configs/moore_paper/minigrid_mt3_moore.yaml moe=configs/moore_paper/minigrid_mt3_moe.yaml \\
      --seeds 0-9 --out runs/moore_mt3
  mtrl sweep ppo=configs/toy_mtppo.yaml --seeds 0-3 --out runs/toy -- train.total_steps=20000
  mtrl plot --source eval --metric return 'moore=runs/moore_mt3/moore/s*' 'moe=runs/moore_mt3/moe/s*'
"""


VERIFY_DESCRIPTION = """\
Check a run directory without changing it (no lock is taken: a read-only run, or one that is
training, can be checked). Prints one line per problem and exits 1, or one "ok" line and exits 0.

- checkpoints/ckpt_*.pt: every zip CRC-32 matches (the check every load makes), the file is a
  complete mtrl checkpoint, it was trained with this run's policy on this run's tasks, and it
  holds the env steps its name says. (checkpoints/damaged/ holds the files a resume set aside.)
- config.yaml: loads with mtrl's strict config loader (safe YAML, known keys).
- eval_curve.csv: a header with env_steps, rows of its width, ordered by step, no step twice.
- tb/: TensorBoard starts a new event file for every writer, and mtrl opens one per start or
  resume of the run; every record must pass its CRC-32C, and no two files' wall-clock spans may
  overlap (that would be two processes writing the run at once). A last record cut short by a
  kill is not a problem.

  mtrl verify runs/toy-mt3-ppo-s0-20261207-120000
"""


def add_import(command: argparse.ArgumentParser) -> None:
    """`--import MODULE` on a subcommand: user modules that register plug-ins, imported first."""
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module (a name, or a .py file) first, so that the suites and methods it registers can be "
        "named; repeatable; a training run records it in its config (plugins)",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `mtrl` command."""
    from mtrl.config import describe

    p = argparse.ArgumentParser(prog="mtrl", description="Multi-task reinforcement learning.")
    p.add_argument(
        "--debug", action="store_true", help="show full tracebacks for errors (a plug-in's own line included)"
    )
    p.add_argument("--version", action="version", version=f"mtrl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train a policy on a suite",
        epilog=TRAIN_EPILOG + "\n".join(describe()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_import(t)
    t.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]", help="a YAML config, then overrides")

    e = sub.add_parser(
        "eval",
        help="evaluate checkpoints on every task of their suite, compare runs and methods",
        description=EVAL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_import(e)
    e.add_argument(
        "targets",
        nargs="+",
        metavar="[NAME=]RUN",
        help="checkpoint files or run directories (their newest checkpoint), globs allowed "
        "(quote them: 'moore=runs/mt3/moore/s*'); NAME= labels the method",
    )
    e.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the suite's protocol)")
    e.add_argument(
        "--seed", type=int, default=0, help="evaluation seed (results are deterministic given it; default 0)"
    )
    e.add_argument(
        "--greedy",
        action="store_true",
        help="take the most likely action instead of sampling "
        "(always on for SAC policies, which are evaluated with their mean action)",
    )
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the policy")
    e.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the episodes as Ray tasks on this many CPUs (embedded local Ray; same results as 0, in-process)",
    )
    e.add_argument(
        "--metric",
        default="auto",
        choices=["auto", "success", "return"],
        help="score per task for the aggregates (auto: success rate where the suite reports it)",
    )
    e.add_argument("--reps", type=int, default=2000, help="bootstrap replicates for the 95%% CIs (default 2000)")
    e.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write report.md, report.json, summary.csv (per method) and runs.csv (per run and task)",
    )
    e.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report as JSON")
    e.add_argument(
        "--video",
        type=Path,
        default=None,
        metavar="DIR",
        help="write one GIF per task of each policy acting (DIR/<task>.gif; DIR/<run>/ for several runs)",
    )
    e.add_argument("--fps", type=int, default=15, help="frames per second of the --video GIFs (default 15)")

    pl = sub.add_parser(
        "plot",
        help="plot learning curves of runs from their TensorBoard events",
        description="Plot the mean over tasks (or each task) of the training (or evaluation) "
        "success or return against env steps, per method, with 95% bootstrap bands "
        "over runs.",
    )
    pl.add_argument(
        "runs",
        nargs="+",
        metavar="[NAME=]RUN",
        help="run directories, globs allowed (quote them: 'moore=runs/mt3/moore/s*'); NAME= labels the method",
    )
    pl.add_argument(
        "--source",
        default="train",
        choices=["train", "eval"],
        help="train: episodes of the training rollouts; eval: the train.eval_every evaluations",
    )
    pl.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=CSV",
        help="also draw a reference curve from a CSV with an env_steps column and a 'mean' (or "
        "mean_return) column, per task '<task>' (or '<task>/return'), e.g. an official run's; "
        "repeatable",
    )
    pl.add_argument(
        "--out", type=Path, default=Path("curves.png"), help="image file (.png, .pdf, .svg; default curves.png)"
    )
    pl.add_argument("--per-task", action="store_true", help="one panel per task")
    pl.add_argument(
        "--metric",
        default="auto",
        choices=["auto", "success", "return"],
        help="auto: success where every run logs it, else return",
    )
    pl.add_argument(
        "--smooth",
        type=int,
        default=None,
        help="moving-average window, in logged points (default 5 for --source train, 1 for eval)",
    )
    pl.add_argument("--title", default=None, help="figure title")

    sw = sub.add_parser(
        "sweep",
        help="train methods x seeds as Ray tasks (skips finished runs, resumes the rest)",
        description=SWEEP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="mtrl sweep NAME=CONFIG [NAME=CONFIG ...] --out DIR [options] [-- key=value ...]",
    )
    add_import(sw)
    sw.add_argument("methods", nargs="+", metavar="NAME=CONFIG", help="a method label and its training config")
    sw.add_argument(
        "--seeds",
        nargs="+",
        default=["0"],
        metavar="SEEDS",
        help="seeds as 0-9, 3 or 0,2,4 (several allowed; default 0)",
    )
    sw.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="runs go to DIR/<method>/s<seed> (the layout mtrl eval and mtrl plot read)",
    )
    sw.add_argument(
        "--cpus-per-run", type=int, default=1, metavar="C", help="CPUs each run reserves and uses (default 1)"
    )
    sw.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs of the embedded local Ray, i.e. N / C runs at once (default: all of this machine's)",
    )
    sw.add_argument(
        "--address",
        default=None,
        help="run on this Ray cluster ('auto' or host:port) instead of an "
        "embedded local Ray; OUT must then be on a filesystem every node sees",
    )
    sw.add_argument("--retries", type=int, default=2, help="times a run whose process died is resumed (default 2)")
    sw.add_argument(
        "--metric",
        default="auto",
        choices=["auto", "success", "return"],
        help="score per task in the final table (auto: success rate where the suite reports it)",
    )
    sw.add_argument("--reps", type=int, default=2000, help="bootstrap replicates for the final table's 95%% CIs")

    v = sub.add_parser(
        "verify",
        help="check a run directory: checkpoints, config, evaluation curve, TensorBoard streams",
        description=VERIFY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_import(v)
    v.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory to check")

    c = sub.add_parser(
        "configs",
        help="list the configs that ship with mtrl (train one by name: mtrl train moore_paper/minigrid_mt3_moore)",
    )
    c.add_argument("--names", action="store_true", help="print config names only")
    s = sub.add_parser("suites", help="list every registered suite and its tasks")
    add_import(s)
    s.add_argument("--names", action="store_true", help="print suite names only")
    add_import(sub.add_parser("curricula", help="list every registered curriculum (task sampler) for curriculum.name"))
    add_import(sub.add_parser("algos", help="list every registered algorithm for algo=NAME, with what it declares"))
    add_import(
        sub.add_parser("archs", help="list every registered architecture for policy.arch=NAME, with its options")
    )
    add_import(
        sub.add_parser("aggregators", help="list every registered gradient aggregator for learner.aggregator=NAME")
    )
    add_import(sub.add_parser("weightings", help="list every registered task weighting for learner.weighting=NAME"))
    add_import(
        sub.add_parser("policy-kinds", help="list every registered policy kind, what an algorithm's policy_kind names")
    )
    return p
