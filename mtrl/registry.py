"""Named registries for plug-ins: suites and curricula.

Built-in and third-party packages use the same two routes: call `register_suite` directly, or
expose a zero-argument callable in the entry-point group `mtrl.suites` that calls it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mtrl.errors import MtrlError, UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map that pulls in its entry-point group on first lookup."""

    def __init__(self, kind: str, group: str, plural: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self.plural = plural or kind + "s"
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str, item: T, *, overwrite: bool = False) -> None:
        """Add `item` under `name`; re-registering a taken name needs overwrite=True."""
        if not isinstance(name, str) or not name:
            raise MtrlError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items and not overwrite and self._items[name] is not item:
            raise MtrlError(f"{self.kind} '{name}' is already registered; pass overwrite=True to replace it")
        self._items[name] = item

    def get(self, name: str) -> T:
        """Look up `name`, raising UnknownNameError with the closest match."""
        self._load_entry_points()
        if name not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}; "
                f"run 'mtrl {self.plural}' to list them"
            )
        return self._items[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def _load_entry_points(self) -> None:
        # Set the flag first: a plug-in's register() calls back into this registry.
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            try:
                ep.load()()
            except Exception as exc:  # a broken plug-in must not take the others down
                warnings.warn(f"mtrl: skipping {self.group} plug-in '{ep.name}' ({ep.value}): {exc}", stacklevel=2)


def call_plugin(kind: str, name: str, what: str, fn: Callable[..., T], *args: object) -> T:
    """Call a plug-in's code; anything it raises other than MtrlError becomes one MtrlError line
    that names the plug-in and the call, instead of a traceback mid-run."""
    try:
        return fn(*args)
    except MtrlError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise MtrlError(f"{kind} '{name}': {what} raised {type(exc).__name__}: {first}") from None


SUITES: Registry[Callable[[], object]] = Registry("suite", "mtrl.suites")
CURRICULA: Registry[Callable[..., object]] = Registry("curriculum", "mtrl.curricula", plural="curricula")


def register_suite(name: str, factory: Callable[[], object], *, overwrite: bool = False) -> None:
    """Register a suite: `factory()` returns a `mtrl.suite.TaskSuite` and is called lazily."""
    if not callable(factory):
        raise MtrlError(f"register_suite('{name}', ...) needs a callable factory, got {type(factory).__name__}")
    SUITES.register(name, factory, overwrite=overwrite)
