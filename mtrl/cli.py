"""The `mtrl` command: train, eval, suites, curricula. User errors exit with code 2 and one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mtrl.errors import MtrlError

TRAIN_EPILOG = """\
Overrides are dotted key=value pairs applied on top of CONFIG, values parsed as YAML scalars,
e.g. `mtrl train configs/minigrid_mt3_mtppo.yaml seed=1 train.total_steps=60000 rollout.workers=0`.
To continue a run: `mtrl train resume=runs/NAME` (CONFIG then defaults to runs/NAME/config.yaml).

Config keys:
"""


def _parser() -> argparse.ArgumentParser:
    from mtrl.config import describe

    p = argparse.ArgumentParser(prog="mtrl", description="Multi-task reinforcement learning.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a policy on a suite", epilog=TRAIN_EPILOG + "\n".join(describe()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    t.add_argument("args", nargs="*", metavar="[CONFIG] [key=value ...]", help="a YAML config, then overrides")

    e = sub.add_parser("eval", help="evaluate a checkpoint on every task of its suite")
    e.add_argument("target", help="a checkpoint file or a run directory (its newest checkpoint)")
    e.add_argument("--episodes", type=int, default=None, help="episodes per task (default: the suite's protocol)")
    e.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    e.add_argument("--seed", type=int, default=0, help="evaluation seed (results are deterministic given it)")
    e.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling "
                   "(always on for SAC policies, which are evaluated with their mean action)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the policy")

    s = sub.add_parser("suites", help="list every registered suite and its tasks")
    s.add_argument("--names", action="store_true", help="print suite names only")
    sub.add_parser("curricula", help="list every registered curriculum (task sampler) for curriculum.name")
    return p


def _train(args: argparse.Namespace) -> None:
    from mtrl.config import load_config
    from mtrl.trainer import train

    config, overrides = None, list(args.args)
    if overrides and "=" not in overrides[0]:
        config = overrides.pop(0)
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if config is None and resume:
        config = str(Path(resume) / "config.yaml")
    if config is None:
        raise MtrlError("mtrl train needs a config file (e.g. configs/toy_mtppo.yaml) or resume=RUN_DIR")
    train(load_config(config, overrides))


def _eval(args: argparse.Namespace) -> None:
    from mtrl.checkpoint import load_latest
    from mtrl.evaluate import default_episodes, evaluate
    from mtrl.trainer import policy_from_checkpoint, resolve_device

    if args.episodes is not None and args.episodes < 1:
        raise MtrlError(f"--episodes must be >= 1, got {args.episodes}")
    path, ckpt = load_latest(args.target)
    policy, suite, cfg = policy_from_checkpoint(ckpt, resolve_device(args.device))
    episodes = default_episodes(suite, args.episodes)
    print(f"mtrl: evaluating {path} ({int(ckpt['env_steps'])} env steps) on {suite.name}, {episodes} episodes per task")
    greedy = args.greedy or cfg["algo"] == "sac"
    result = evaluate(policy, suite, episodes, args.seed, greedy, cfg["env"]["max_episode_steps"])
    print(result.table())
    if args.json:
        result.write_json(args.json)


def _suites(args: argparse.Namespace) -> None:
    from mtrl.suite import get_suite, list_suites

    for name in list_suites():
        if args.names:
            print(name)
            continue
        suite = get_suite(name)
        print(f"{name} ({suite.num_tasks} tasks): {', '.join(suite.tasks)}")


def _curricula(args: argparse.Namespace) -> None:
    from mtrl.registry import CURRICULA

    for name in CURRICULA.names():
        doc = (CURRICULA.get(name).__doc__ or "").strip().split("\n")[0]
        print(f"{name}: {doc}" if doc else name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mtrl` console script."""
    args = _parser().parse_args(argv)
    try:
        {"train": _train, "eval": _eval, "suites": _suites, "curricula": _curricula}[args.command](args)
    except MtrlError as exc:
        if args.debug:
            raise
        print(f"mtrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `mtrl suites | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
