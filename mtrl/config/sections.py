"""Plug-in config sections: an architecture's or a curriculum's own options (policy.<arch>,
curriculum.<name>, from its registered options dataclass) and a plug-in algorithm's own section
(<section>, from its `options`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mtrl.config.parse import from_dict
from mtrl.config.schema import Config
from mtrl.errors import ConfigError, UnknownNameError
from mtrl.registry import ALGOS, Registry


def pop_sections(parent: Any, schema: type, registry: Registry) -> dict[str, Any]:
    """Take the sections named after a registered plug-in (policy.<arch>, curriculum.<name>) out
    of the raw mapping `parent` of the schema section `schema`, leaving the schema's own keys."""
    if not isinstance(parent, dict):
        return {}
    public = {f.name for f in dataclasses.fields(schema) if not f.metadata.get("internal")}
    names = set(registry.names())
    return {key: parent.pop(key) for key in list(parent) if key not in public and key in names}


def own_options(
    key: str, registry: Registry, active_key: str, active: str | None, sections: dict[str, Any]
) -> dict[str, Any]:
    """Each given plug-in section `key`.<name> parsed by that plug-in's options dataclass, and the
    active plug-in's always (its defaults where not given), the one config key `active_key` names.
    `registry` holds entries with `options`."""
    out: dict[str, Any] = {}
    for name, raw in sections.items():
        options = registry.get(name).options
        if options is None:
            raise ConfigError(f"{key}.{name}: {registry.kind} '{name}' has no options of its own")
        out[name] = from_dict(options, raw, f"{key}.{name}.")
    if active is not None and active not in out:
        options = named(active_key, registry, active).options
        if options is not None:
            out[active] = options()
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
