"""Strict YAML loading, validation and dotted command-line overrides for the schema in
`mtrl.schema`, whose field metadata (help, type, range) drives both the validation errors and
`mtrl train --help`. YAML is read with `yaml.safe_load` only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mtrl.errors import ConfigError, UnknownNameError, did_you_mean
from mtrl.registry import ALGOS, ARCHS, CURRICULA, Registry, call_plugin
from mtrl.config.schema import Config, PolicyConfig


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _check_value(path: str, tp: Any, value: Any) -> Any:
    """Return `value` converted to `tp`, or raise ConfigError naming `path`."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(path, inner[0], value) if len(inner) == 1 else value
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads '3e-4' (no dot) as a string; accept any float literal.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = (
        (origin is Literal and value in typing.get_args(tp))
        or (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _check_range(path: str, f: dataclasses.Field, value: Any) -> None:
    lo, hi, lo_open = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("lo_open")
    if value is None or isinstance(value, (bool, str)):
        return
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{path}: must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: must be <= {hi}, got {value!r}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys, wrong types and bad ranges."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown config key {prefix + str(key)!r}{did_you_mean(str(key), fields)}; valid keys under {where}: "
                + ", ".join(fields)
            )
    kwargs = {}
    for name, value in data.items():
        path, tp = prefix + name, hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, path + ".")
        else:
            kwargs[name] = _check_value(path, tp, value)
            _check_range(path, fields[name], kwargs[name])
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML, checkpoints and TensorBoard); each
    architecture's options are the section policy.<arch>."""
    data = dataclasses.asdict(cfg)
    if isinstance(cfg, Config):
        data["policy"].update(data["policy"].pop("options"))
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


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (or the defaults when path is None), apply overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    for ov in overrides:
        apply_override(data, ov)
    sections = _pop_arch_sections(data)
    cfg = from_dict(Config, data)
    cfg.policy.options = _arch_options(cfg.policy, sections)
    r = cfg.rollout
    if r.pipeline and not r.workers:
        raise ConfigError("rollout.pipeline=true overlaps Ray workers with the learner; it needs rollout.workers >= 1")
    name = cfg.curriculum.name
    if name is not None:
        CURRICULA.get(name)  # an unknown name stops here, with the closest match
        if cfg.env.backend != "gymnasium":
            raise ConfigError(f"curriculum.name={name} switches a slot's task at reset, which needs env.backend=gymnasium")
    if cfg.policy.layers == 0 and cfg.policy.arch != "multihead":
        raise ConfigError(f"policy.layers=0 (no shared trunk) is for policy.arch=multihead, got {cfg.policy.arch}")
    algo = named("algo", ALGOS, cfg.algo)
    call_plugin("algorithm", cfg.algo, "check_config()", algo.check_config, cfg)
    if r.workers and r.num_envs % r.workers:
        raise ConfigError(f"rollout.num_envs={r.num_envs} must be a multiple of rollout.workers={r.workers}")
    return cfg


def _pop_arch_sections(data: dict[str, Any]) -> dict[str, dict]:
    """Take the sections policy.<arch> (an architecture's own options) out of the raw config."""
    policy = data.get("policy")
    if not isinstance(policy, dict):
        return {}
    public = {f.name for f in dataclasses.fields(PolicyConfig) if not f.metadata.get("internal")}
    archs = set(ARCHS.names())
    return {key: policy.pop(key) for key in list(policy) if key not in public and key in archs}


def _arch_options(policy: PolicyConfig, sections: dict[str, Any]) -> dict[str, Any]:
    """Each given architecture section parsed by its options dataclass, and the active
    architecture's always (its defaults where not given). policy.num_experts and policy.head, the
    keys from before the sections, set the active architecture's option of that name."""
    arch = named("policy.arch", ARCHS, policy.arch)
    out = {}
    for name, raw in sections.items():
        entry = ARCHS.get(name)
        if entry.options is None:
            raise ConfigError(f"policy.{name}: architecture '{name}' has no options of its own")
        if name == policy.arch:
            continue
        out[name] = from_dict(entry.options, raw, f"policy.{name}.")
    if arch.options is not None:
        raw = dict(sections.get(policy.arch) or {})
        option_names = {f.name for f in dataclasses.fields(arch.options)}
        for key in ("num_experts", "head"):
            old = getattr(policy, key)
            if old is None or key not in option_names:
                continue
            if key in raw and raw[key] != old:
                raise ConfigError(f"policy.{key}={old} and policy.{policy.arch}.{key}={raw[key]} disagree; set one of them")
            raw[key] = old
        out[policy.arch] = from_dict(arch.options, raw, f"policy.{policy.arch}.")
    policy.num_experts = policy.head = None  # folded into the section
    return out


def named(key: str, registry: Registry, name: str) -> Any:
    """The plug-in `name` that config key `key` names, or a ConfigError naming the key."""
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{key}: {exc}") from None


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
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, prefix + f.name + ".")
        else:
            lines.append(f"  {prefix + f.name:<26} {f.metadata.get('help', '')} [{_type_name(tp)}; default {f.default!r}]")
    if cls is Config:  # each architecture's own section
        for name in ARCHS.names():
            options = ARCHS.get(name).options
            lines += describe(options, f"policy.{name}.") if options is not None else []
    return lines
