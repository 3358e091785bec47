"""The configs that ship with mtrl (the repository's configs/, installed as the package data
`mtrl_configs`): list them, and resolve a config argument that is a path or a packaged name."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from mtrl.errors import ConfigError


def _root() -> Path | None:
    """The packaged configs' directory, or None where mtrl was installed without them."""
    try:
        root = resources.files("mtrl_configs")
    except ModuleNotFoundError:
        return None
    return Path(str(root)) if root.is_dir() else None


def packaged_configs() -> dict[str, Path]:
    """Every packaged config by name: its path under configs/ without '.yaml', e.g.
    'moore_paper/minigrid_mt3_moore'."""
    root = _root()
    if root is None:
        return {}
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.yaml"))}


def first_comment(path: Path) -> str:
    """The first comment line of a config file, without its '#' (the listing's summary)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def resolve_config(config: str | Path) -> Path:
    """A config argument as a file: an existing path, else a packaged name (with or without
    '.yaml', or only its file name where that is unique). Anything else is one ConfigError that
    lists the near matches."""
    path = Path(config)
    if path.is_file():
        return path
    name = str(config).removesuffix(".yaml").removeprefix("configs/")
    known = packaged_configs()
    if name in known:
        return known[name]
    by_file = [n for n in known if n.rsplit("/", 1)[-1] == name]
    if len(by_file) == 1:
        return known[by_file[0]]
    if len(by_file) > 1:
        raise ConfigError(f"config '{config}' is ambiguous: it names {', '.join(by_file)}; give the full name")
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    near += [n for n in known if name and name in n and n not in near][: 3 - len(near)]
    hint = f"; near matches: {', '.join(near)}" if near else ""
    raise ConfigError(f"config file not found: {config}, nor a packaged config of that name (`mtrl configs`){hint}")
