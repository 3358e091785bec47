"""The public Python API (`mtrl.train`, `mtrl.load_config`, `mtrl.evaluate`, `mtrl.list_configs`):
the same training and evaluation as the `mtrl` command, called from a script or a notebook.

    import mtrl

    run_dir = mtrl.train("toy_mtppo", "seed=1", rollout__workers=0, train__total_steps=20_000)
    report = mtrl.evaluate([run_dir], episodes=16)
    print(report.markdown())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import yaml

from mtrl.config import Config
from mtrl.config import load_config as load_config_file
from mtrl.config.packaged import first_comment, packaged_configs
from mtrl.errors import ConfigError
from mtrl.eval.report import Report
from mtrl.run.evaluation import evaluate_runs
from mtrl.run.trainer import train as train_config


def _keyword_overrides(options: Mapping[str, Any]) -> list[str]:
    """Keyword options as `key=value` overrides: `train__total_steps=20000` is `train.total_steps=20000`."""
    out = []
    for key, value in options.items():
        if not key or key.startswith("_") or key.endswith("_"):
            raise ConfigError(f"option {key!r}: write a config key with '__' between sections, e.g. train__total_steps")
        if isinstance(value, PurePath):  # e.g. run_dir=Path(...)
            value = str(value)
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        out.append(f"{key.replace('__', '.')}={text}")
    return out


def load_config(config: str | Path | None = None, *overrides: str, **options: Any) -> Config:
    """A validated config: `config` is a YAML file or a packaged config's name (`mtrl configs`;
    None: the defaults), then `key=value` overrides, then keyword options (`train__total_steps=
    20000` for train.total_steps). Bad input is one `mtrl.MtrlError` naming the key."""
    return load_config_file(config, [*overrides, *_keyword_overrides(options)])


def train(config: str | Path | Config | None = None, *overrides: str, **options: Any) -> Path:
    """Train as `mtrl train` does and return the run directory (config.yaml, checkpoints/, tb/,
    eval.json). `config`: a YAML file, a packaged config's name, a `Config` (then no overrides),
    or None for the defaults; `overrides` and `options` as for `load_config`. Suites and methods
    registered in this process (e.g. by `mtrl.register_suite` above the call) can be named."""
    if isinstance(config, Config):
        if overrides or options:
            raise ConfigError("mtrl.train: give overrides with a config file or name, not with a Config object")
        return train_config(config)
    return train_config(load_config(config, *overrides, **options))


def evaluate(
    runs: str | Path | Sequence[str | Path] | Mapping[str, str | Path | Sequence[str | Path]],
    *,
    episodes: int | None = None,
    seed: int = 0,
    greedy: bool = False,
    device: str = "auto",
    workers: int = 0,
    metric: str = "auto",
    reps: int = 2000,
) -> Report:
    """Evaluate the newest checkpoint of each run on every task of its suite and compare them, as
    `mtrl eval` does. `runs`: one run directory (or checkpoint file), a list of them (globs
    allowed), or a mapping method name -> run(s). Returns a `Report`: `.runs` (each run's
    `EvalResult`, per task and per episode), `.methods` (IQM, mean, median with 95% CIs),
    `.markdown()`, `.write(dir)`. `workers` > 0 runs the episodes on that many Ray workers."""
    if isinstance(runs, (str, Path)):
        targets = [str(runs)]
    elif isinstance(runs, Mapping):
        targets = [
            f"{name}={path}"
            for name, paths in runs.items()
            for path in ([paths] if isinstance(paths, (str, Path)) else paths)
        ]
    else:
        targets = [str(path) for path in runs]
    if not targets:
        raise ConfigError("mtrl.evaluate: no runs given")
    return evaluate_runs(
        targets, episodes=episodes, seed=seed, greedy=greedy, device=device, workers=workers, metric=metric, reps=reps
    )


def list_configs() -> dict[str, str]:
    """The packaged configs: name (for `mtrl.train(name)` and `mtrl train NAME`) -> its first comment line."""
    return {name: first_comment(path) for name, path in packaged_configs().items()}
