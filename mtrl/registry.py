"""Named registries for plug-ins: suites, curricula, algorithms and architectures.

Built-in and third-party packages use the same two routes: call `register_suite` (`register_algo`,
`register_arch`, ...) directly, or expose a zero-argument callable in the entry-point group
(`mtrl.suites`, `mtrl.curricula`, `mtrl.algos`, `mtrl.archs`, `mtrl.aggregators`,
`mtrl.weightings`, `mtrl.policy_kinds`) that calls it. The contract of each
plug-in kind is in docs/architecture.md; what a plug-in returns is checked where mtrl receives it.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast

from mtrl.errors import ConfigError, MtrlError, UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map that pulls in its entry-point group on first lookup."""

    def __init__(self, kind: str, group: str, plural: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self.plural = plural or kind + "s"
        self._items: dict[str, T] = {}
        self.tags: dict[str, set[str]] = {}  # a declared property -> the names that have it
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
            raise UnknownNameError(  # repr: a name holding a newline still gives a one-line message
                f"unknown {self.kind} {str(name)!r}{did_you_mean(str(name), self._items)}; "
                f"run 'mtrl {self.plural}' to list them"
            )
        return self._items[name]

    def tagged(self, tag: str) -> set[str]:
        """The names registered with the property `tag` (e.g. aggregators' "scale_invariant")."""
        self._load_entry_points()
        return set(self.tags.get(tag, ()))

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


class AlgoClass(Protocol):
    """An algorithm class as `register_algo` has checked it: the class attributes that the config,
    the trainer and `mtrl algos` read before building one (what it builds is the protocol
    `mtrl.algos.base.Algorithm`, a layer above)."""

    section: str | None
    collector: str
    policy_kind: str
    greedy_eval: bool

    def __call__(self, *args: Any) -> Any: ...


def call_plugin(kind: str, name: str, what: str, fn: Callable[..., T], *args: object) -> T:
    """Call a plug-in's code; anything it raises other than MtrlError becomes one MtrlError line
    that names the plug-in and the call, instead of a traceback mid-run."""
    try:
        return fn(*args)
    except MtrlError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        # chained: `mtrl --debug` shows the plug-in's own traceback, down to its failing line
        raise MtrlError(f"{kind} '{name}': {what} raised {type(exc).__name__}: {first}") from exc


def build_with_options(
    kind: str, name: str, options_key: str, factory: Callable[..., T], num_tasks: int, options: dict[str, Any]
) -> T:
    """`factory(num_tasks, **options)` for the plug-in `name` of `kind` (an aggregator, a weighting):
    options it does not take are one ConfigError naming `options_key`, anything else it raises one
    MtrlError naming the plug-in (`call_plugin`)."""

    def build() -> T:
        try:
            return factory(num_tasks, **options)
        except TypeError as exc:
            raise ConfigError(f"{options_key} {options}: {kind} '{name}' does not take them ({exc})") from None

    return call_plugin(kind, name, "its factory", build)


SUITES: Registry[Callable[[], object]] = Registry("suite", "mtrl.suites")
CURRICULA: Registry[CurriculumEntry] = Registry("curriculum", "mtrl.curricula", plural="curricula")
ALGOS: Registry[AlgoClass] = Registry("algorithm", "mtrl.algos", plural="algos")
ARCHS: Registry[ArchEntry] = Registry("architecture", "mtrl.archs", plural="archs")
AGGREGATORS: Registry[Callable[..., Any]] = Registry("aggregator", "mtrl.aggregators")
WEIGHTINGS: Registry[Callable[..., Any]] = Registry("weighting", "mtrl.weightings")
POLICY_KINDS: Registry[Callable[..., Any]] = Registry("policy kind", "mtrl.policy_kinds", plural="policy-kinds")

# what every registered algorithm class declares (mtrl.algos.base.Algorithm)
ALGO_ATTRIBUTES: dict[str, type | tuple[type, ...]] = {
    "section": (str, type(None)),
    "collector": str,
    "policy_kind": str,
    "greedy_eval": bool,
}
ALGO_METHODS = ("check_config", "requests", "learn", "set_progress", "task_weights", "state_dict", "load_state_dict")


def register_suite(name: str, factory: Callable[[], object], *, overwrite: bool = False) -> None:
    """Register a suite: `factory()` returns a `mtrl.env.suite.TaskSuite` and is called lazily."""
    if not callable(factory):
        raise MtrlError(f"register_suite('{name}', ...) needs a callable factory, got {type(factory).__name__}")
    SUITES.register(name, factory, overwrite=overwrite)


def register_algo(name: str, cls: type, *, overwrite: bool = False) -> None:
    """Register an algorithm class (the `mtrl.algos.base.Algorithm` protocol), for `algo: NAME`."""
    missing = [f"method {a}()" for a in ALGO_METHODS if not callable(getattr(cls, a, None))]
    missing += [
        f"attribute {a} ({' or '.join(t.__name__ for t in (kinds if isinstance(kinds, tuple) else (kinds,)))})"
        for a, kinds in ALGO_ATTRIBUTES.items()
        if not hasattr(cls, a) or not isinstance(getattr(cls, a), kinds)
    ]
    if not isinstance(cls, type) or missing:
        raise MtrlError(
            f"register_algo('{name}', {getattr(cls, '__name__', cls)!r}): an algorithm class needs "
            f"{', '.join(missing) or 'to be a class'} (see mtrl.algos.base.Algorithm)"
        )
    ALGOS.register(name, cast(AlgoClass, cls), overwrite=overwrite)  # its attributes were checked above


class CurriculumEntry(NamedTuple):
    """A registered curriculum: `factory(tasks, curriculum_config)` returns a
    `mtrl.curriculum.Curriculum`; `options`: a dataclass of its own settings, the config section
    curriculum.<name> (None: it has none)."""

    factory: Callable[..., object]
    options: type | None = None


class ArchEntry(NamedTuple):
    """A registered architecture: `build(spec, out_dim, out_gain)` -> a torch module mapping
    (obs [B, *obs_shape], task_id [B]) to [B, out_dim]; `options`: a dataclass of its own
    hyperparameters, the config section policy.<name> (None: it has none); `features(net)`: the
    submodule whose output is the last representation shared by all tasks (gradient aggregators
    act on everything upstream of it; None: the whole network, i.e. every parameter is shared).
    When that submodule holds every shared parameter (its inputs do not depend on parameters),
    the task Jacobian takes one backward pass instead of about K (`mtrl.algos.task_jacobian`).
    `loss_guard`: the network guards its per-task losses (PaCo): it has `extreme_tasks(task_losses)
    -> [K] bool`, the tasks to mask out of a SAC step, and `reset_tasks(mask) -> int`, which SAC's
    learner calls after the step (checked when the network is built)."""

    build: Callable[..., Any]
    options: type | None = None
    features: Callable[[Any], Any] | None = None
    loss_guard: bool = False


def register_arch(
    name: str,
    build: Callable[..., Any],
    options: type | None = None,
    features: Callable[[Any], Any] | None = None,
    *,
    loss_guard: bool = False,
    overwrite: bool = False,
) -> None:
    """Register an architecture for `policy.arch: NAME` (see `ArchEntry`; docs/tutorials/add-an-architecture.md)."""
    if not callable(build):
        raise MtrlError(f"register_arch('{name}', ...) needs a callable builder, got {type(build).__name__}")
    if options is not None and not dataclasses.is_dataclass(options):
        raise MtrlError(
            f"register_arch('{name}', ..., options={options!r}): options must be a dataclass (its fields "
            f"become the config keys policy.{name}.*)"
        )
    ARCHS.register(name, ArchEntry(build, options, features, bool(loss_guard)), overwrite=overwrite)


def register_weighting(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Register a task weighting for `learner.weighting: NAME`: `factory(num_tasks, **options)`
    (options from learner.weighting_options) returns a `mtrl.algos.weighting.TaskWeighting`."""
    if not callable(factory):
        raise MtrlError(f"register_weighting('{name}', ...) needs a callable factory, got {type(factory).__name__}")
    WEIGHTINGS.register(name, factory, overwrite=overwrite)


def register_aggregator(
    name: str, factory: Callable[..., Any], *, scale_invariant: bool = False, overwrite: bool = False
) -> None:
    """Register a gradient aggregator for `learner.aggregator: NAME`: `factory(num_tasks, **options)`
    (options from learner.aggregator_options) returns a callable that maps a Jacobian [K, n] (one
    row per task) to a gradient [n], such as a torchjd Aggregator. `scale_invariant`: its
    direction does not change when a task's row is scaled (Nash-MTL, IMTL-G, ...), so a task
    weighting would do nothing through it and the config refuses the pair."""
    if not callable(factory):
        raise MtrlError(f"register_aggregator('{name}', ...) needs a callable factory, got {type(factory).__name__}")
    AGGREGATORS.register(name, factory, overwrite=overwrite)
    if scale_invariant:
        AGGREGATORS.tags.setdefault("scale_invariant", set()).add(name)
    else:
        AGGREGATORS.tags.get("scale_invariant", set()).discard(name)


def register_policy_kind(name: str, build: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Register a policy kind, what an algorithm's `policy_kind` names: `build(spec)` returns a
    torch module with `actor` and `critic` parts and `act(obs, task_id, greedy) -> (action,
    log-prob)` (the built-ins: actor_critic and sac, `mtrl.nn.policy`)."""
    if not callable(build):
        raise MtrlError(f"register_policy_kind('{name}', ...) needs a callable builder, got {type(build).__name__}")
    POLICY_KINDS.register(name, build, overwrite=overwrite)
