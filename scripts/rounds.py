"""Alternated rounds for the side-by-side benchmarks (scripts/bench_*.py).

This machine's speed can change twofold within minutes, so a one-pass ratio of two cells timed
minutes apart says little. Each round times every cell once (A B A B ...), and a comparison is
the median over rounds of the per-round ratio, with its min-max: a slow spell hits both cells of
the round it falls in.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable
from typing import TypeVar

from tqdm import tqdm

K = TypeVar("K", bound=Hashable)


def alternate(cells: dict[K, Callable[[], float]], rounds: int, desc: str = "rounds") -> dict[K, list[float]]:
    """Call every cell once per round, in order, `rounds` times; each returns its measurement."""
    out: dict[K, list[float]] = {name: [] for name in cells}
    for _ in tqdm(range(rounds), desc=desc, unit="round", leave=False):
        for name, cell in cells.items():
            out[name].append(cell())
    return out


def ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """(median, min, max) over rounds of num[r] / den[r]."""
    per_round = [a / b for a, b in zip(num, den, strict=True)]
    return statistics.median(per_round), min(per_round), max(per_round)


def show_ratio(num: list[float], den: list[float]) -> str:
    """'1.93x (1.85-2.01)': the median ratio over rounds and its min-max."""
    mid, lo, hi = ratio(num, den)
    return f"{mid:.2f}x ({lo:.2f}-{hi:.2f})"
