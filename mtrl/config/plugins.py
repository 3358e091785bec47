"""User modules that register plug-ins (`plugins: [module, ...]` in a config, or `mtrl train
--import MODULE`): imported before any suite, algorithm or architecture name is resolved.

A plug-in module registers what it defines when imported (`mtrl.register_suite(...)`, ...). A
name is imported as a module, the working directory searched first (as `python -m` does); a path
ending in `.py` is imported from that file, under its file name. The processes mtrl starts (Ray
rollout workers and evaluation tasks of an embedded Ray, the runs of `mtrl sweep`) must import the
same modules, e.g. to unpickle a suite's env builder: the plug-ins' directories travel to them in
the environment variable MTRL_PLUGIN_PATH, which `import mtrl` appends to `sys.path` (at the end,
so that a plug-in's directory never shadows the standard library or an installed package, as
PYTHONPATH would). On a Ray cluster the modules must be importable on every node (an installed
package, or a shared filesystem at the same path).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from mtrl.errors import ConfigError

PATH_ENV = "MTRL_PLUGIN_PATH"


def extend_search_path() -> None:
    """Append the plug-in directories of MTRL_PLUGIN_PATH to sys.path (`import mtrl` does this)."""
    for directory in os.environ.get(PATH_ENV, "").split(os.pathsep):
        if directory and directory not in sys.path:
            sys.path.append(directory)


def _share(directory: str) -> None:
    """Make `directory` importable here and in every process started from here (MTRL_PLUGIN_PATH)."""
    parts = [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    if directory not in parts:
        os.environ[PATH_ENV] = os.pathsep.join([*parts, directory])
    extend_search_path()


def _import_file(path: Path) -> None:
    """Import the .py file `path` as the module named after it."""
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        where = getattr(loaded, "__file__", None)
        if where is None or Path(where).resolve() != path:
            raise ConfigError(
                f"plugins: {path} is imported as the module '{name}', but a module of that name is already "
                f"imported from {where or 'elsewhere'}; rename one of them"
            )
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # a .py file always gets a source loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as importlib does: the module may import itself while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _import_name(name: str) -> None:
    """Import the module `name`, looking in the working directory first."""
    if name in sys.modules:
        return
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        importlib.import_module(name)
    finally:
        sys.path.remove(cwd)
    origin = getattr(sys.modules[name], "__file__", None)
    if origin is not None and Path(origin).resolve().is_relative_to(Path(cwd).resolve()):
        _share(cwd)  # found in the working directory: the processes started from here need it too


def import_plugins(modules: list[str]) -> None:
    """Import each plug-in module once; an unknown one, or one that raises, is one ConfigError
    naming it (the module's own exception is its cause: `mtrl --debug` shows its traceback)."""
    for spec in modules:
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"plugins: expected module names or .py paths, got {spec!r}")
        is_file = spec.endswith(".py")
        name = Path(spec).stem if is_file else spec
        try:
            if is_file:
                path = Path(spec).resolve()
                if not path.is_file():
                    raise ConfigError(f"plugins: no such file {spec}")
                _share(str(path.parent))
                _import_file(path)
            else:
                _import_name(name)
        except ConfigError:
            raise
        except ModuleNotFoundError as exc:
            if not is_file and exc.name and name.startswith(exc.name):  # the module itself (or its package) is missing
                raise ConfigError(
                    f"plugins: no module named '{name}' (searched the working directory and sys.path)"
                ) from exc
            raise ConfigError(f"plugins: importing '{name}' raised ModuleNotFoundError: {exc}") from exc
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ConfigError(f"plugins: importing '{name}' raised {type(exc).__name__}: {first}") from exc
