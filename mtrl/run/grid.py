"""A sweep's grid from the command line: seeds like 0-9 or 0,2,4, and NAME=CONFIG methods."""

from __future__ import annotations

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
        methods[name] = (config, [])
    return methods
