"""A sweep's grid: seeds like 0-9 or 0,2,4 and NAME=CONFIG methods from the command line, its
cells (`Run`), and the `mtrl train` command line of each."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrl.errors import MtrlError


def parse_seeds(specs: list[str]) -> list[int]:
    """'0-9', '3', '0,2,4' (and several of them) -> a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for spec in specs:
        for part in spec.split(","):
            lo, sep, hi = part.strip().partition("-")
            try:
                a, b = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise MtrlError(f"--seeds {spec!r}: expected seeds like 0-9, 3 or 0,2,4") from None
            if a < 0 or b < a:
                raise MtrlError(f"--seeds {spec!r}: expected a range lo-hi with 0 <= lo <= hi")
            seeds.update(range(a, b + 1))
    return sorted(seeds)


def parse_methods(items: list[str]) -> dict[str, tuple[str, list[str]]]:
    """NAME=CONFIG arguments -> {name: (config path, no overrides)}; every config is validated now."""
    from mtrl.config import load_config
    from mtrl.config.packaged import resolve_config

    methods: dict[str, tuple[str, list[str]]] = {}
    for item in items:
        name, sep, config = item.partition("=")
        if not sep or not name or "/" in name or not config:
            raise MtrlError(
                f"sweep method {item!r}: expected NAME=CONFIG, e.g. moore=configs/moore_paper/minigrid_mt3_moore.yaml"
            )
        if name in methods:
            raise MtrlError(f"sweep method name {name!r} is given twice")
        load_config(config)  # a bad config stops the sweep before any run starts
        methods[name] = (str(resolve_config(config)), [])  # a packaged name becomes its file
    return methods


@dataclass
class Run:
    """One (method, seed) cell of the grid and what happened to it."""

    method: str
    config: str
    seed: int
    run_dir: Path
    overrides: list[str] = field(default_factory=list)  # the method's own, before the sweep's
    retries: int = 0
    status: str = "pending"  # pending | skipped | done | failed
    minutes: float | None = None
    node: str | None = None  # the Ray node that ran it last
    note: str = ""
    pending: Any = field(default=None, repr=False)  # the Ray object ref while it runs

    @property
    def name(self) -> str:
        return f"{self.method}/s{self.seed}"


def train_command(run: Run, overrides: list[str], cpus: int, imports: Sequence[str] = ()) -> list[str]:
    """The `mtrl train` command line of a run: its plug-in modules (`--import`), resumed when it
    has checkpoints; the method's overrides, then the sweep's, then the in-process collection on
    the reserved CPUs."""
    from mtrl.run.checkpoint import list_checkpoints

    run_dir = run.run_dir.resolve()  # absolute: a Ray worker on another node has another working directory
    resume = [f"resume={run_dir}"] if list_checkpoints(run_dir) else []
    return [
        sys.executable,
        "-m",
        "mtrl",
        "train",
        *[f"--import={module}" for module in imports],
        str(Path(run.config).resolve()),
        f"seed={run.seed}",
        f"run_dir={run_dir}",
        *resume,
        *run.overrides,
        *overrides,
        "rollout.workers=0",
        f"learner.threads={cpus}",
    ]
