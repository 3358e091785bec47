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

from mtrl.errors import ConfigError, did_you_mean
from mtrl.registry import CURRICULA
from mtrl.schema import (  # noqa: F401  (re-exported: the sections' public home is mtrl.config)
    Config, CurriculumConfig, EnvConfig, GRPOConfig, LearnerConfig, MTGRPOConfig, PolicyConfig, PPOConfig, RayConfig,
    RolloutConfig, SACConfig, TrainConfig,
)  # fmt: skip


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
    fields = {f.name: f for f in dataclasses.fields(cls)}
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
    """The config as plain nested dicts (for YAML, checkpoints and TensorBoard)."""
    return dataclasses.asdict(cfg)


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
    cfg = from_dict(Config, data)
    r = cfg.rollout
    if r.pipeline and not r.workers:
        raise ConfigError("rollout.pipeline=true overlaps Ray workers with the learner; it needs rollout.workers >= 1")
    if cfg.algo in ("grpo", "mt_grpo") and (r.pipeline or cfg.env.backend != "gymnasium"):
        raise ConfigError(f"algo={cfg.algo} resets every env with its group's seed, which needs env.backend=gymnasium "
                          "and rollout.pipeline=false")  # fmt: skip
    name = cfg.curriculum.name
    if name is not None:
        CURRICULA.get(name)  # an unknown name stops here, with the closest match
        if cfg.env.backend != "gymnasium":
            raise ConfigError(f"curriculum.name={name} switches a slot's task at reset, which needs env.backend=gymnasium")
        if cfg.algo == "mt_grpo" and name != "worst_task":
            raise ConfigError(f"algo=mt_grpo samples tasks by its own weights z; curriculum.name={name} would override "
                              "them (use worst_task, which follows z, or null)")  # fmt: skip
    if cfg.policy.layers == 0 and cfg.policy.arch != "multihead":
        raise ConfigError(f"policy.layers=0 (no shared trunk) is for policy.arch=multihead, got {cfg.policy.arch}")
    p = cfg.ppo
    if p.critic_update == "joint":
        for key, value, default in (("critic_epochs", p.critic_epochs, 1), ("critic_minibatch_size", p.critic_minibatch_size, 0),
                                    ("critic_lr", p.critic_lr, None)):  # fmt: skip
            if value != default:
                raise ConfigError(f"ppo.{key}={value} only applies with ppo.critic_update=separate (the joint update "
                                  "trains the critic inside the policy minibatches)")  # fmt: skip
    elif cfg.algo != "ppo":
        raise ConfigError(f"ppo.critic_update=separate applies to algo=ppo only, got algo={cfg.algo}")
    if r.workers and r.num_envs % r.workers:
        raise ConfigError(f"rollout.num_envs={r.num_envs} must be a multiple of rollout.workers={r.workers}")
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
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, prefix + f.name + ".")
        else:
            lines.append(f"  {prefix + f.name:<26} {f.metadata['help']} [{_type_name(tp)}; default {f.default!r}]")
    return lines
