"""Versioned config migration. A config's format version is its top-level `config_version` (absent:
1, the format before the key existed). Configs and run directories of an older version load
through the steps below, in order, up to `CURRENT`; one deprecation line on stderr names every
key a step moved, so the user can rewrite the file. A step preserves what the old keys meant. A
current config that holds a key of the older format (say, from a command-line override written for
it) stops with one line naming the key that replaced it.

Version 2 gave every plug-in kind its own section:
- the curricula's flat keys became curriculum.<name>.* (`curriculum.temperature` applied to both
  learning_progress and worst_task, so it moves to both);
- policy.num_experts / policy.head became the active architecture's policy.<arch>.*;
- grpo and mt_grpo read their surrogate and optimiser settings from grpo.*, no longer from ppo.*;
- learner.gradnorm_alpha / gradnorm_lr became learner.weighting: gradnorm with
  learner.weighting_options {alpha, lr}.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from mtrl.config.schema import CONFIG_VERSION as CURRENT
from mtrl.config.sections import named
from mtrl.errors import ConfigError
from mtrl.registry import ARCHS

# curriculum.<old> -> the sections and keys that took it over in version 2
_CURRICULUM_V2 = {
    "temperature": ("learning_progress.temperature", "worst_task.temperature"),
    "lp_alpha": ("learning_progress.alpha",),
    "plr_beta": ("plr.beta",),
    "plr_rho": ("plr.rho",),
    "exp3_gamma": ("exp3.gamma",),
    "threshold": ("threshold.level",),
    "order": ("threshold.order",),
}
# the clipped-surrogate and optimiser keys that grpo and mt_grpo read from ppo.* before version 2
_SURROGATE_V2 = (
    "lr",
    "clip",
    "epochs",
    "minibatches",
    "minibatch_size",
    "ent_coef",
    "max_grad_norm",
    "adam_eps",
    "anneal_lr",
)
_GRPO_ALGOS = ("grpo", "mt_grpo")
GRADNORM_LR = 0.025  # learner.gradnorm_lr's default before version 2


class _Moves:
    """The keys one step moved or dropped, for the deprecation line."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.moved: list[str] = []
        self.dropped: list[str] = []

    def move(self, old: str, *new: str) -> None:
        """Move the dotted key `old` to each dotted key in `new` (absent: nothing to do)."""
        *parents, leaf = old.split(".")
        parent = _section(self.data, parents, old)
        if parent is None or leaf not in parent:
            return
        value = parent.pop(leaf)
        for target in new:
            *where, key = target.split(".")
            section = _section(self.data, where, target, create=True)
            assert section is not None  # created
            if key in section and section[key] != value:
                raise ConfigError(
                    f"{old}={value!r} (the key before config_version 2) and {target}={section[key]!r} disagree; "
                    f"set only {target}"
                )
            section[key] = value
        self.moved.append(f"{old} -> {' and '.join(new)}")

    def drop(self, old: str, why: str) -> None:
        *parents, leaf = old.split(".")
        parent = _section(self.data, parents, old)
        if parent is not None and leaf in parent:
            value = parent.pop(leaf)
            if value is not None:  # null meant "not set"
                self.dropped.append(f"{old} ({why})")


def _section(data: dict[str, Any], path: list[str], key: str, create: bool = False) -> dict[str, Any] | None:
    node = data
    for part in path:
        child = node.setdefault(part, {}) if create else node.get(part)
        if child is None:
            return None
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} must be a section (a mapping of keys), got {child!r}")
        node = child
    return node


def _to_v2(moves: _Moves) -> None:
    data = moves.data
    policy = data.get("policy")
    if isinstance(policy, dict) and any(key in policy for key in ("num_experts", "head")):
        arch = policy.get("arch", "multihead")
        options = named("policy.arch", ARCHS, str(arch)).options
        own = set(options.__dataclass_fields__) if options is not None else set()
        for key in ("num_experts", "head"):
            if key in own and policy.get(key) is not None:  # null: not set, dropped without a word
                moves.move(f"policy.{key}", f"policy.{arch}.{key}")
            else:
                moves.drop(f"policy.{key}", f"policy.arch={arch} has no {key}")
    curriculum = data.get("curriculum")
    if isinstance(curriculum, dict):
        for old, new in _CURRICULUM_V2.items():
            moves.move(f"curriculum.{old}", *(f"curriculum.{key}" for key in new))
    learner = data.get("learner")
    if isinstance(learner, dict) and ("gradnorm_alpha" in learner or "gradnorm_lr" in learner):
        if learner.get("gradnorm_alpha") is not None:
            learner["weighting"] = "gradnorm"
            moves.moved.append("learner.gradnorm_alpha set -> learner.weighting: gradnorm")
            moves.move("learner.gradnorm_alpha", "learner.weighting_options.alpha")
            moves.move("learner.gradnorm_lr", "learner.weighting_options.lr")
        else:  # GradNorm was off: its learning rate had no effect
            moves.drop("learner.gradnorm_alpha", "GradNorm was off")
            if learner.get("gradnorm_lr", GRADNORM_LR) == GRADNORM_LR:
                learner.pop("gradnorm_lr", None)  # the default, as every saved config holds it
            else:
                moves.drop("learner.gradnorm_lr", "GradNorm was off")
    if data.get("algo") in _GRPO_ALGOS:
        for key in _SURROGATE_V2:
            moves.move(f"ppo.{key}", f"grpo.{key}")


def _refuse_old_keys(data: dict[str, Any]) -> None:
    """A version 2 config holding a key of version 1's: one line naming its replacement."""
    policy, curriculum = data.get("policy"), data.get("curriculum")
    for key in ("num_experts", "head"):
        if isinstance(policy, dict) and key in policy:
            arch = policy.get("arch", "multihead")
            raise ConfigError(f"policy.{key} is policy.{arch}.{key} since config_version 2")
    learner = data.get("learner")
    for key in ("gradnorm_alpha", "gradnorm_lr"):
        if isinstance(learner, dict) and key in learner:
            raise ConfigError(
                f"learner.{key} is learner.weighting: gradnorm with learner.weighting_options."
                f"{key.split('_')[1]} since config_version 2"
            )
    for old, new in _CURRICULUM_V2.items():
        if isinstance(curriculum, dict) and old in curriculum and not isinstance(curriculum[old], dict):
            raise ConfigError(
                f"curriculum.{old} is {' and '.join(f'curriculum.{key}' for key in new)} since config_version 2"
            )


_STEPS: dict[int, Callable[[_Moves], None]] = {1: _to_v2}  # version -> the step to version + 1


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Bring the raw config mapping `data` (read from `source`) to the CURRENT format in place,
    printing one deprecation line that names each key it moved; returns `data`."""
    version = data.get("config_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CURRENT:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > CURRENT
        raise ConfigError(
            f"config_version: expected an integer from 1 to {CURRENT}, got {version!r}"
            + ("; the config was written by a newer mtrl: upgrade mtrl to read it" if newer else "")
        )
    moves = _Moves(data)
    for step in range(version, CURRENT):
        _STEPS[step](moves)
    if version == CURRENT:
        _refuse_old_keys(data)
    data["config_version"] = CURRENT
    if moves.moved or moves.dropped:
        parts = [", ".join(moves.moved)] if moves.moved else []
        parts += ["dropped, without effect: " + ", ".join(moves.dropped)] if moves.dropped else []
        print(
            f"mtrl: deprecated: {source} is config_version {version}: {'; '.join(parts)}. "
            f"Rename them and set config_version: {CURRENT} to silence this",
            file=sys.stderr,
        )
    return data
