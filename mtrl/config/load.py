"""Strict YAML loading, validation and dotted command-line overrides for the schema in
`mtrl.config.schema`, whose field metadata (help, type, range) drives both the validation errors and
`mtrl train --help`. YAML is read with `yaml.safe_load` only.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from mtrl.config.migrate import CURRENT, migrate
from mtrl.config.packaged import resolve_config
from mtrl.config.parse import from_dict, type_name
from mtrl.config.plugins import import_plugins
from mtrl.config.schema import Config, CurriculumConfig, LearnerConfig, PolicyConfig
from mtrl.config.sections import algo_options, algo_sections, named, own_options, pop_algo_sections, pop_sections
from mtrl.errors import ConfigError
from mtrl.registry import AGGREGATORS, ALGOS, ARCHS, CURRICULA, WEIGHTINGS, call_plugin


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML, checkpoints and TensorBoard); each
    architecture's options are the section policy.<arch>."""
    data = dataclasses.asdict(cfg)
    if isinstance(cfg, Config):
        data["policy"].update(data["policy"].pop("options"))
        data["curriculum"].update(data["curriculum"].pop("options"))
        data.update(data.pop("sections"))
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safely read a YAML config file into a dict; any problem becomes a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"{p}: invalid YAML: {msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    if data is None:
        raise ConfigError(f"{p}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as a YAML scalar."""
    key, sep, raw = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {override!r}: expected key=value, e.g. train.total_steps=10000")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"bad override {override!r}: {part!r} is not a section")
        node = child
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # Keep strings as typed, e.g. run_dir=2024 or ray.address=10.0.0.1:6379.
    node[leaf] = raw if isinstance(value, (int, float)) and _is_str_field(key) else value


def _is_str_field(dotted: str) -> bool:
    cls: Any = Config
    tp: Any = None
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return False
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return False
        tp = cls = hints[part]
    return tp is str or tp == (str | None)


def check_learner(learner: LearnerConfig) -> None:
    """The learner section's plug-in names, and no weighting with an aggregator that ignores it."""
    if learner.aggregator != "none":
        named("learner.aggregator", AGGREGATORS, learner.aggregator)
    if learner.weighting != "none":
        named("learner.weighting", WEIGHTINGS, learner.weighting)
        if learner.aggregator in AGGREGATORS.tagged("scale_invariant"):
            raise ConfigError(
                f"learner.weighting={learner.weighting} would do nothing with learner.aggregator="
                f"{learner.aggregator}, whose direction does not change when a task's gradient is scaled; "
                "use one of them, or a scale-sensitive aggregator (mean, pcgrad, upgrad, ...)"
            )


def load_config(path: str | Path | None, overrides: Sequence[str] = (), plugins: Sequence[str] = ()) -> Config:
    """Load a YAML config (a path, or a packaged config's name: `mtrl configs`; the defaults when
    None), apply overrides, add `plugins` (`mtrl train --import`) to its own, import them all,
    validate."""
    source = resolve_config(path) if path is not None else None
    data: dict[str, Any] = read_yaml(source) if source is not None else {"config_version": CURRENT}
    for ov in overrides:
        apply_override(data, ov)
    own = data.get("plugins", [])
    if not isinstance(own, list):
        raise ConfigError(f"plugins: expected a list of module names or .py paths, got {own!r}")
    if plugins:
        data["plugins"] = list(dict.fromkeys([*own, *plugins]))
    import_plugins(data.get("plugins", []))  # before any name below is looked up in a registry
    where = [str(source)] if source is not None else []
    migrate(data, " with ".join(where + (["its command-line overrides"] if overrides else [])) or "the defaults")
    arch_raw = pop_sections(data.get("policy"), PolicyConfig, ARCHS)
    curriculum_raw = pop_sections(data.get("curriculum"), CurriculumConfig, CURRICULA)
    algo_raw = pop_algo_sections(data)
    cfg = from_dict(Config, data)
    cfg.policy.options = own_options("policy", ARCHS, "policy.arch", cfg.policy.arch, arch_raw)
    cfg.curriculum.options = own_options(
        "curriculum", CURRICULA, "curriculum.name", cfg.curriculum.name, curriculum_raw
    )
    env = cfg.env
    if env.expected_suite is not None and env.suite != env.expected_suite:
        raise ConfigError(
            f"env.suite={env.suite}: this config's settings are a protocol for env.expected_suite="
            f"{env.expected_suite}; use that suite, or set env.expected_suite=null to run them anyway"
        )
    r = cfg.rollout
    if r.pipeline and not r.workers:
        raise ConfigError("rollout.pipeline=true overlaps Ray workers with the learner; it needs rollout.workers >= 1")
    name = cfg.curriculum.name
    if name is not None:
        if cfg.env.backend != "gymnasium":
            raise ConfigError(
                f"curriculum.name={name} switches a slot's task at reset, which needs env.backend=gymnasium"
            )
    if cfg.policy.layers == 0 and cfg.policy.arch != "multihead":
        raise ConfigError(f"policy.layers=0 (no shared trunk) is for policy.arch=multihead, got {cfg.policy.arch}")
    check_learner(cfg.learner)
    algo = named("algo", ALGOS, cfg.algo)
    cfg.sections = algo_sections(cfg, algo_raw)
    call_plugin("algorithm", cfg.algo, "check_config()", algo.check_config, cfg)
    if r.workers and r.num_envs % r.workers:
        raise ConfigError(f"rollout.num_envs={r.num_envs} must be a multiple of rollout.workers={r.workers}")
    if r.workers and cfg.ray.address is None and cfg.ray.num_cpus is not None and cfg.ray.num_cpus < r.workers:
        # each rollout actor reserves one CPU: the embedded Ray would wait for ever for the rest
        raise ConfigError(
            f"rollout.workers={r.workers} needs ray.num_cpus >= {r.workers} (one CPU per rollout worker), "
            f"got {cfg.ray.num_cpus}"
        )
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def describe(cls: type = Config, prefix: str = "") -> list[str]:
    """One line per config key: name, type, default and help (for --help)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.metadata.get("internal"):
            continue
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a hint is a class, not an instance
            lines += describe(tp, prefix + f.name + ".")
        else:
            # a field without a default has a default_factory: own_options and algo_sections build
            # an options dataclass from no arguments when its section is not given
            factory = typing.cast("Callable[[], Any]", f.default_factory)
            default = factory() if f.default is dataclasses.MISSING else f.default
            lines.append(f"  {prefix + f.name:<26} {f.metadata.get('help', '')} [{type_name(tp)}; default {default!r}]")
    if cls is Config:  # each architecture's, curriculum's and plug-in algorithm's own section
        for name in ARCHS.names():
            options = ARCHS.get(name).options
            lines += describe(options, f"policy.{name}.") if options is not None else []
        for name in CURRICULA.names():
            options = CURRICULA.get(name).options
            lines += describe(options, f"curriculum.{name}.") if options is not None else []
        for name in ALGOS.names():
            algo = ALGOS.get(name)
            options = algo_options(algo)
            lines += describe(options, f"{algo.section}.") if options else []
    return lines
