"""The `mtrl` command: train, eval, verify, plot, suites, curricula. User errors exit with code 2 and one line."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from mtrl.errors import MtrlError
from mtrl.run.cli_args import parser


def _train(args: argparse.Namespace) -> None:
    from mtrl.config import load_config
    from mtrl.run.trainer import train

    config, overrides = None, list(args.args)
    if overrides and "=" not in overrides[0]:
        config = overrides.pop(0)
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if resume and not Path(resume).is_dir():
        raise MtrlError(f"resume={resume}: no such run directory")
    if config is None and resume:
        config = str(Path(resume) / "config.yaml")
    if config is None:
        raise MtrlError("mtrl train needs a config file (e.g. configs/toy_mtppo.yaml) or resume=RUN_DIR")
    train(load_config(config, overrides, args.imports))


def _eval(args: argparse.Namespace) -> None:
    from mtrl.run.evaluation import evaluate_checkpoints

    evaluate_checkpoints(args)


def _plot(args: argparse.Namespace) -> None:
    from mtrl.eval.curve import read_references
    from mtrl.eval.plot import plot, read_run
    from mtrl.eval.report import expand_targets, run_label

    smooth = args.smooth if args.smooth is not None else (5 if args.source == "train" else 1)
    if smooth < 1:
        raise MtrlError(f"--smooth must be >= 1, got {smooth}")
    references = read_references(args.reference)
    runs = [read_run(Path(path), name or run_label(Path(path))) for name, path in expand_targets(args.runs)]
    out = plot(runs, args.out, args.metric, args.per_task, smooth, args.title, args.source, references)
    print(f"mtrl: wrote {out}")


def _verify(args: argparse.Namespace) -> int:
    from mtrl.run.verify import main as verify

    return verify(args.run_dir)


def _sweep(args: argparse.Namespace) -> None:
    from mtrl.run.sweep import main as sweep

    sweep(args)


def _suites(args: argparse.Namespace) -> None:
    from mtrl.env.suite import get_suite, list_suites

    for name in list_suites():
        if args.names:
            print(name)
            continue
        suite = get_suite(name)
        print(f"{name} ({suite.num_tasks} tasks): {', '.join(suite.tasks)}")


def _configs(args: argparse.Namespace) -> None:
    from mtrl.run.api import list_configs

    configs = list_configs()
    if not configs:
        raise MtrlError("no packaged configs: this mtrl was installed without its configs (package data mtrl_configs)")
    width = max(map(len, configs))
    for name, summary in configs.items():
        print(name if args.names else f"{name:<{width}}  {summary}")


def _first_line(obj: object) -> str:
    """The first sentence of a plug-in's docstring, for the listings: up to the first full stop
    followed by a capital letter, a backtick or a parenthesis (so "et al. 2017" does not end it)."""
    doc = " ".join((getattr(obj, "__doc__", None) or "").split())
    return re.split(r"\. (?=[A-Z`(])", doc)[0].rstrip(".")


def _curricula(args: argparse.Namespace) -> None:
    from mtrl.registry import CURRICULA

    for name in CURRICULA.names():
        entry = CURRICULA.get(name)
        print(f"{name}: {_first_line(entry.factory)} [options: {_option_keys(f'curriculum.{name}', entry.options)}]")


def _option_keys(section: str, options: type | None) -> str:
    """The config keys of a plug-in's own section, for the listings."""
    from dataclasses import fields

    return ", ".join(f"{section}.{f.name}" for f in fields(options)) if options else "none"


def _algos(args: argparse.Namespace) -> None:
    from mtrl.registry import ALGOS

    for name in ALGOS.names():
        cls = ALGOS.get(name)
        print(
            f"{name}: {_first_line(cls)} [config section {cls.section or '-'}; collects {cls.collector}; "
            f"{cls.policy_kind} policy; evaluated with {'greedy' if cls.greedy_eval else 'sampled'} actions]"
        )


def _archs(args: argparse.Namespace) -> None:
    from mtrl.registry import ARCHS

    for name in ARCHS.names():
        entry = ARCHS.get(name)
        print(f"{name}: {_first_line(entry.build)} [options: {_option_keys(f'policy.{name}', entry.options)}]")


def _policy_kinds(args: argparse.Namespace) -> None:
    from mtrl.registry import POLICY_KINDS

    for name in POLICY_KINDS.names():
        print(f"{name}: {_first_line(POLICY_KINDS.get(name))}")


def _aggregators(args: argparse.Namespace) -> None:
    from mtrl.registry import AGGREGATORS

    print("none: one loss averaged over all samples, no per-task gradients (the default)")
    for name in AGGREGATORS.names():
        print(f"{name}: {_first_line(AGGREGATORS.get(name))}")


def _weightings(args: argparse.Namespace) -> None:
    from mtrl.registry import WEIGHTINGS

    print("none: every task loss weighs the same (the default)")
    for name in WEIGHTINGS.names():
        print(f"{name}: {_first_line(WEIGHTINGS.get(name))}")


def _interruptible() -> None:
    """Ctrl-C and SIGTERM (a scheduler's stop) end `mtrl train` and `mtrl sweep` through
    KeyboardInterrupt, so that a run saves its checkpoint first; also where the process started
    with SIGINT ignored (a background job of a shell script) or blocked (a child of a Ray worker)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mtrl` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides: list[str] = []
    if "--" in argv and "sweep" in argv[: argv.index("--")]:  # mtrl sweep ... -- key=value ...: every run's overrides
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    args.overrides = overrides
    if args.command in ("train", "sweep"):
        from mtrl.run.sweep import bind_to_parent

        _interruptible()
        bind_to_parent()  # a run that a sweep started stops (and saves) when its Ray worker dies
    commands: dict[str, Callable[[argparse.Namespace], int | None]] = {
        "train": _train,
        "verify": _verify,
        "eval": _eval,
        "plot": _plot,
        "sweep": _sweep,
        "configs": _configs,
        "suites": _suites,
        "curricula": _curricula,
        "algos": _algos,
        "archs": _archs,
        "aggregators": _aggregators,
        "weightings": _weightings,
        "policy-kinds": _policy_kinds,
    }
    try:
        if getattr(args, "imports", None):  # train and sweep also record them; the rest only need them loaded
            from mtrl.config.plugins import import_plugins

            import_plugins(args.imports)
        rc = commands[args.command](args)  # None: success; `mtrl verify` returns 1 when it found problems
    except MtrlError as exc:
        if args.debug:
            raise
        print("mtrl: error: " + str(exc).replace("\n", "\\n"), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `mtrl suites | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # (after its subclass above) a file mtrl had to read or write: one line
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mtrl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
