"""Typed config schema, strict YAML loading and dotted command-line overrides.

Every field carries its help text, type and allowed range in its metadata, which drives both the
validation errors and `mtrl train --help`. YAML is read with `yaml.safe_load` only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mtrl.errors import ConfigError, did_you_mean
from mtrl.registry import CURRICULA


def opt(default: Any, help: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A dataclass field with help text and an optional range [lo, hi] (or (lo, hi] if lo_open)."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "lo_open": lo_open})


@dataclass
class EnvConfig:
    suite: str = opt("toy-mt3", "registered suite name (see `mtrl suites`)")
    max_episode_steps: int | None = opt(None, "cut episodes at this many steps (null: the suite's own limit)", 1)
    backend: Literal["gymnasium", "envpool"] = opt(
        "gymnasium", "env implementation for rollouts: the reference Python envs, or envpool's C++ ports "
        "(pip install 'mtrl[fast]'; tasks without a port stay on gymnasium). Evaluation always uses gymnasium"
    )


@dataclass
class RolloutConfig:
    workers: int = opt(2, "Ray rollout actors; 0 runs the same collection code in-process", 0)
    num_envs: int = opt(12, "env slots in total, split evenly over the workers; slot i runs task i mod K", 1)
    steps_per_env: int = opt(128, "steps each env slot collects per iteration (fragment length)", 1)
    autoreset_mode: Literal["next_step", "same_step"] = opt("next_step", "gymnasium vector autoreset mode")
    pipeline: bool = opt(False, "workers collect the next batch while the learner updates (one update of "
                         "policy lag; PPO's ratio uses the behaviour log-probs). Needs rollout.workers >= 1")
    max_worker_restarts: int = opt(10, "restarts of dead worker actors allowed over the run before it stops", 0)


@dataclass
class PolicyConfig:
    arch: Literal["mlp", "multihead", "moe", "moore"] = opt(
        "multihead", "mlp: trunk + task one-hot; multihead: a head per task; moore/moe: (orthogonal) mixture of experts"
    )
    hidden: int = opt(128, "width of the trunk's hidden layers (moore/moe: of the per-task head)", 1)
    layers: int = opt(2, "hidden layers in the trunk (mlp, multihead)", 1)
    num_experts: int = opt(4, "experts k for moore/moe (MOORE: 2/3/4 for MiniGrid MT3/5/7, 4/6 for MT10/50)", 1)
    head: Literal["multi", "single"] = opt("multi", "moore/moe output head: one per task, or one on cat(feature, onehot)")


@dataclass
class PPOConfig:
    lr: float = opt(3e-4, "Adam learning rate", 0.0, None, lo_open=True)
    gamma: float = opt(0.99, "discount factor", 0.0, 1.0)
    gae_lambda: float = opt(0.95, "GAE lambda", 0.0, 1.0)
    clip: float = opt(0.2, "PPO ratio clip range", 0.0, None, lo_open=True)
    epochs: int = opt(4, "passes over each batch", 1)
    minibatches: int = opt(4, "minibatches per epoch", 1)
    ent_coef: float = opt(0.01, "entropy bonus coefficient", 0.0)
    vf_coef: float = opt(0.5, "value loss coefficient", 0.0)
    max_grad_norm: float = opt(0.5, "global gradient-norm clip", 0.0, None, lo_open=True)
    task_norm: bool = opt(True, "normalise advantages per task (MOORE MTPPO); false: over the whole batch")
    anneal_lr: bool = opt(False, "decay the learning rate linearly to 0 over train.total_steps")


@dataclass
class GRPOConfig:
    group_size: int = opt(8, "G: episodes per group, all of one task from one reset seed (grpo, mt_grpo)", 1)
    groups: int = opt(24, "B: groups kept for each update, over all tasks (grpo: split evenly over tasks)", 1)
    outcome: Literal["auto", "success", "return"] = opt(
        "auto", "episode outcome R: success (0/1), or the undiscounted return; auto: success where the suite reports it"
    )
    task_norm: bool = opt(False, "normalise the advantages a second time per task (AgentRL)")


@dataclass
class MTGRPOConfig:
    lam: float = opt(0.5, "lambda in s_k = I_k + lambda * J_k (MT-GRPO; 0.1 to 1.2; large: worst-task minimax)", 0.0)
    lr: float = opt(0.025, "AdamW learning rate on the task logits xi (z = softmax(xi))", 0.0, None, lo_open=True)
    rho_ema: float = opt(0.9, "decay of the EMA of each task's zero-variance group fraction rho_k", 0.0, 1.0)
    max_inflation: float = opt(5.0, "cap on the oversampling factor 1 / (1 - rho_k)", 1.0)
    resample_rounds: int = opt(2, "rounds that regenerate groups for tasks short of their quota", 0)


@dataclass
class CurriculumConfig:
    name: str | None = opt(None, "task sampler that picks each env slot's next task at reset (`mtrl curricula`: uniform, "
                           "learning_progress, plr, exp3, worst_task, threshold); null: slot i always runs task i mod K")
    eps: float = opt(0.05, "share of the uniform distribution mixed in, so every task keeps >= eps/K", 0.0, 1.0)
    temperature: float = opt(0.1, "Boltzmann temperature of learning_progress (on |Q|) and worst_task", 0.0, None, lo_open=True)
    lp_alpha: float = opt(0.1, "learning_progress: step size of the progress estimate Q", 0.0, 1.0, lo_open=True)
    plr_beta: float = opt(0.1, "plr: rank-transform temperature beta (h = rank^(-1/beta))", 0.0, None, lo_open=True)
    plr_rho: float = opt(0.1, "plr: weight rho of the staleness distribution", 0.0, 1.0)
    exp3_gamma: float = opt(0.01, "exp3: exploration rate gamma", 0.0, 1.0)
    threshold: float = opt(0.8, "threshold: success rate (or normalised return) that unlocks the next task", 0.0, 1.0)
    order: str | None = opt(None, "threshold: comma-separated task names in unlock order (null: the suite's order)")


@dataclass
class TrainConfig:
    total_steps: int = opt(50_000, "env steps to train for, summed over all tasks", 1)
    checkpoint_every: int = opt(10, "write a checkpoint every this many iterations", 1)
    keep_checkpoints: int = opt(3, "how many recent checkpoints to keep", 1)
    eval_episodes: int | None = opt(None, "episodes per task in the final evaluation (null: suite protocol; 0: skip)", 0)


@dataclass
class LearnerConfig:
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "learner device; auto picks CUDA when present")
    threads: int | None = opt(None, "torch CPU threads for the learner (null: torch's default)", 1)


@dataclass
class RayConfig:
    address: str | None = opt(None, "null starts an embedded local Ray; 'auto' or host:port joins a cluster")
    num_cpus: int | None = opt(None, "CPUs for the embedded local Ray (null: all)", 1)


@dataclass
class Config:
    algo: Literal["ppo", "grpo", "mt_grpo"] = opt(
        "ppo", "training algorithm: PPO with GAE; critic-free GRPO on groups of episodes; MT-GRPO (task weights "
        "+ ratio-preserving sampling). grpo and mt_grpo take lr, clip, epochs, minibatches, ent_coef and "
        "max_grad_norm from ppo.*"
    )
    seed: int = opt(0, "random seed for envs, policy init and sampling", 0)
    run_dir: str | None = opt(None, "output directory (null: runs/<suite>-<algo>-s<seed>-<time>)")
    resume: str | None = opt(None, "run directory to continue from its last checkpoint")
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    mt_grpo: MTGRPOConfig = field(default_factory=MTGRPOConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    ray: RayConfig = field(default_factory=RayConfig)


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
                f"unknown config key '{prefix}{key}'{did_you_mean(str(key), fields)}; valid keys under {where}: "
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
        raise ConfigError(f"bad override '{override}': expected key=value, e.g. train.total_steps=10000")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"bad override '{override}': '{part}' is not a section")
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
    if cfg.algo != "ppo" and (r.pipeline or cfg.env.backend != "gymnasium"):
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
