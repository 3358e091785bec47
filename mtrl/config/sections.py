"""Plug-in config sections: an architecture's own options (policy.<arch>, from its registered
options dataclass) and a plug-in algorithm's own section (<section>, from its `options`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mtrl.config.parse import from_dict
from mtrl.config.schema import Config, PolicyConfig
from mtrl.errors import ConfigError, UnknownNameError
from mtrl.registry import ALGOS, ARCHS, Registry


def pop_arch_sections(data: dict[str, Any]) -> dict[str, dict]:
    """Take the sections policy.<arch> (an architecture's own options) out of the raw config."""
    policy = data.get("policy")
    if not isinstance(policy, dict):
        return {}
    public = {f.name for f in dataclasses.fields(PolicyConfig) if not f.metadata.get("internal")}
    archs = set(ARCHS.names())
    return {key: policy.pop(key) for key in list(policy) if key not in public and key in archs}


def arch_options(policy: PolicyConfig, sections: dict[str, Any]) -> dict[str, Any]:
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
        raw = sections.get(policy.arch, {})
        raw = dict(raw) if isinstance(raw, dict) else raw  # not a mapping: from_dict says so
        option_names = {f.name for f in dataclasses.fields(arch.options)}
        for key in ("num_experts", "head"):
            old = getattr(policy, key)
            if old is None or key not in option_names or not isinstance(raw, dict):
                continue
            if key in raw and raw[key] != old:
                raise ConfigError(
                    f"policy.{key}={old} and policy.{policy.arch}.{key}={raw[key]} disagree; set one of them"
                )
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


def algo_options(cls: object) -> type | None:
    """A plug-in algorithm's own options dataclass (its `options` attribute), for its section."""
    options: type | None = getattr(cls, "options", None)  # the contract: a dataclass, or absent
    return options if options is not None and dataclasses.is_dataclass(options) else None


def pop_algo_sections(data: dict[str, Any]) -> dict[str, dict]:
    """Take the top-level sections of plug-in algorithms (their `section`, when it is not one of
    the built-in sections and they declare `options`) out of the raw config."""
    public = {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    owned = {
        cls.section: cls for cls in map(ALGOS.get, ALGOS.names()) if algo_options(cls) and cls.section not in public
    }
    return {key: data.pop(key) for key in list(data) if key in owned}


def algo_sections(cfg: Config, raw: dict[str, Any]) -> dict[str, Any]:
    """Each given plug-in algorithm section parsed by its options dataclass, and the active
    algorithm's always (its defaults where not given)."""
    owners = {cls.section: options for cls in map(ALGOS.get, ALGOS.names()) if (options := algo_options(cls))}
    # keyed by section; register_algo lets an algorithm with options declare section None
    out: dict[Any, Any] = {key: from_dict(owners[key], value, f"{key}.") for key, value in raw.items()}
    cls = ALGOS.get(cfg.algo)
    options = algo_options(cls)
    if options and cls.section not in out and not hasattr(cfg, str(cls.section)):
        out[cls.section] = options()
    return out
