"""User modules that register plug-ins (`plugins: [module, ...]` in a config, or `mtrl train
--import MODULE`): imported before any suite, algorithm or architecture name is resolved.

A plug-in module registers what it defines when imported (`mtrl.register_suite(...)`, ...). A
name is imported as a module (the working directory is searched first, as `python -m` does); a
path ending in `.py` is imported from its directory under its file name. The directories are also
put on PYTHONPATH, so that the processes mtrl starts (Ray rollout workers of an embedded Ray, the
runs of `mtrl sweep`) import the same modules; on a Ray cluster the modules must be importable on
every node (an installed package, or a shared filesystem).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from mtrl.errors import ConfigError


def _search_path(directory: str) -> None:
    """Put `directory` first on sys.path and on PYTHONPATH (for the processes started from here)."""
    if directory not in sys.path:
        sys.path.insert(0, directory)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if directory not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([directory, *parts])


def import_plugins(modules: list[str]) -> None:
    """Import each plug-in module once; an unknown one, or one that raises, is one ConfigError
    naming it (the module's own exception is its cause: `mtrl --debug` shows its traceback)."""
    for spec in modules:
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"plugins: expected module names or .py paths, got {spec!r}")
        name = spec
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            if not path.is_file():
                raise ConfigError(f"plugins: no such file {spec}")
            _search_path(str(path.parent))
            name = path.stem
        else:
            _search_path(os.getcwd())
        loaded = sys.modules.get(name)
        if loaded is not None:
            where = getattr(loaded, "__file__", None)
            if spec.endswith(".py") and where is not None and Path(where).resolve() != Path(spec).resolve():
                raise ConfigError(
                    f"plugins: {spec} is imported as the module '{name}', but a module of that name "
                    f"is already imported from {where}; rename one of them"
                )
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # the module itself (or its package) is missing
                raise ConfigError(
                    f"plugins: no module named '{name}' (searched the working directory and sys.path)"
                ) from exc
            raise ConfigError(f"plugins: importing '{name}' raised ModuleNotFoundError: {exc}") from exc
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ConfigError(f"plugins: importing '{name}' raised {type(exc).__name__}: {first}") from exc
