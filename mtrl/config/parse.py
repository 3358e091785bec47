"""Typed parsing of config mappings into the schema's dataclasses: unknown keys, wrong types and
out-of-range values are one-line ConfigErrors naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from mtrl.errors import ConfigError, did_you_mean


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(tp))
    if origin is dict:
        return "a mapping of names to numbers, strings or true/false"
    if origin is list:
        return "a list of strings"
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
    if origin is list:  # plug-in module names
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{path}: expected {type_name(tp)}, got {value!r}")
        return list(value)
    if origin is dict:  # options handed to a plug-in, which checks their names itself
        scalar = (int, float, bool, str, type(None))
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, scalar) for k, v in value.items()
        ):
            raise ConfigError(f"{path}: expected {type_name(tp)}, got {value!r}")
        return dict(value)
    ok = (
        (origin is Literal and value in typing.get_args(tp))
        or (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{path}: expected {type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _check_range(path: str, f: dataclasses.Field, value: Any) -> None:
    lo, hi, lo_open = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("lo_open")
    if value is None or isinstance(value, (bool, str, dict, list)):
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
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a hint is a class, not an instance
            kwargs[name] = from_dict(tp, value, path + ".")
        else:
            kwargs[name] = _check_value(path, tp, value)
            _check_range(path, fields[name], kwargs[name])
    return cls(**kwargs)
