"""Atomic, safe-to-load checkpoints.

A checkpoint is a dict of tensors, numbers and strings written with `torch.save` and read with
`torch.load(weights_only=True)`, which refuses to run code from the file. Writes go to a
temporary file in the same directory, are fsynced, then renamed, so a crash mid-write leaves
the previous checkpoint intact. Every load first checks the zip's CRC-32s, so a damaged file
(a flipped bit, overwritten bytes, a truncation) is never loaded; a resume passes over damaged
checkpoints to the newest intact one and moves them aside to checkpoints/damaged/.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mtrl.config.plugins import import_plugins
from mtrl.env.suite import TaskSuite, get_suite
from mtrl.errors import CheckpointError
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import Policy, build_policy

FORMAT = "mtrl-checkpoint"
VERSION = 1
REQUIRED = ("policy", "optimizer", "env_steps", "iteration", "spec", "tasks", "config", "rng_torch", "rng_learner")
_NAME = re.compile(r"^ckpt_(\d{12})\.pt$")
DAMAGED = "damaged"  # checkpoints/damaged/: where a resume moves the checkpoints it passed over


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: Path, payload: dict[str, Any], env_steps: int, keep: int) -> Path:
    """Write `payload` atomically as checkpoints/ckpt_<env_steps>.pt and keep the newest `keep`."""
    folder = checkpoint_dir(run_dir)
    path = folder / f"ckpt_{env_steps:012d}.pt"
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".pt")
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # permission, disk full: the older checkpoints are untouched
            raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}") from exc
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def remove_partial_writes(run_dir: Path) -> int:
    """Delete temporary files that a kill during `save_checkpoint` left behind; returns how many."""
    folder = checkpoint_dir(run_dir)
    stale = list(folder.glob(".tmp_*.pt")) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def checkpoint_steps(path: Path) -> int:
    """The env steps of a checkpoint, from its file name (ckpt_<env steps>.pt), without loading it."""
    m = _NAME.match(path.name)
    if m is None:
        raise CheckpointError(f"{path} is not named like a checkpoint (ckpt_<12 digits>.pt)")
    return int(m.group(1))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint file without executing code; raise CheckpointError on any problem."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes)")
    if not zipfile.is_zipfile(p):  # torch.save always writes a zip archive
        raise CheckpointError(f"checkpoint {p} is truncated, corrupt or not a checkpoint file")
    check_crcs(p)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [ln.strip() for ln in str(exc).splitlines() if "global" in ln.lower()]
        why = f" ({found[0]})" if found else ""
        raise CheckpointError(
            f"refusing to load {p}: it holds objects other than tensors and plain data{why}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {p} is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an mtrl checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint version {data.get('version')}, this mtrl reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: missing {', '.join(missing)}")
    return data


def check_crcs(path: Path) -> None:
    """Raise CheckpointError unless every member of the zip matches its CRC-32.

    torch.load reads tensor bytes unchecked, so without this a flipped bit would load as a wrong
    weight. The CRCs are already in every torch.save file (old ones too), and checking them is
    cheaper than a digest: on a 79 MB checkpoint shaped like Meta-World MT10 SAC's with replay
    contents, read from the page cache on the 2-core development machine, testzip() took 17.5 ms,
    a SHA-256 of the file 2.65x that, torch.load itself 2.5x (docs/benchmarks.md, "What verifying
    a checkpoint costs"). So no digest is written."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error, struct.error) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (CRC-32 mismatch in {bad})")


def newest_intact(
    run_dir: Path, fault: Callable[[Path, dict[str, Any]], str | None] | None = None
) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint of `run_dir` that loads and in which `fault` (when given) finds
    nothing, and the newer ones passed over, each with its reason; CheckpointError if none is."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(
            f"run directory {run_dir} has no checkpoint (expected {checkpoint_dir(run_dir)}/ckpt_*.pt)"
        )
    passed: list[tuple[Path, str]] = []
    for c in reversed(candidates):
        try:
            ckpt = load_checkpoint(c)
        except CheckpointError as exc:
            passed.append((c, str(exc)))
            continue
        why = fault(c, ckpt) if fault is not None else None
        if why is None:
            return c, ckpt, passed
        passed.append((c, why))
    tried = "; ".join(f"{c.name}: {why}" for c, why in passed)
    raise CheckpointError(f"no intact checkpoint in {checkpoint_dir(run_dir)}; tried {len(passed)}: {tried}")


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint to checkpoints/damaged/ (under a new name if one is there
    already: a damaged file is evidence, never overwritten or deleted); returns where it went."""
    folder = path.parent / DAMAGED
    folder.mkdir(exist_ok=True)
    dest, n = folder / path.name, 1
    while dest.exists():
        dest, n = folder / f"{path.stem}.{n}{path.suffix}", n + 1
    os.replace(path, dest)
    return dest


def load_latest(target: str | Path) -> tuple[Path, dict[str, Any]]:
    """Load a checkpoint file, or the newest loadable checkpoint of a run directory."""
    p = Path(target)
    if p.is_file():
        return p, load_checkpoint(p)
    if not p.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {p}")
    path, ckpt, passed = newest_intact(p)
    for _, why in passed:  # left in place: a reader may not write the run (mtrl train resume= sets them aside)
        print(f"mtrl: warning: {why}; using {path.name} instead", file=sys.stderr)
    return path, ckpt


def foreign(ckpt: dict[str, Any], spec: PolicySpec, tasks: tuple[str, ...] | list[str]) -> str | None:
    """Why `ckpt` is not a checkpoint of a run with this policy spec and tasks, or None. The twin
    critics' layout may differ: it converts on load (mtrl.nn.sac.CriticEnsemble)."""
    saved = saved_spec(ckpt)
    if dataclasses.replace(saved, critic_ensemble=spec.critic_ensemble) == spec and list(ckpt["tasks"]) == list(tasks):
        return None
    return (
        f"was trained with policy {ckpt['spec']} on {ckpt['tasks']}; this config asks "
        f"for {dataclasses.asdict(spec)} on {list(tasks)}"
    )


def saved_spec(ckpt: dict[str, Any]) -> PolicySpec:
    """The checkpoint's PolicySpec, with today's defaults for fields added since it was written."""
    try:
        return PolicySpec(**{**ckpt["spec"], "obs_shape": tuple(ckpt["spec"]["obs_shape"])})
    except (TypeError, KeyError):
        raise CheckpointError(f"checkpoint policy spec {ckpt['spec']!r} does not describe an mtrl policy") from None


def policy_from_checkpoint(ckpt: dict[str, Any], device: torch.device) -> tuple[Policy, TaskSuite, dict]:
    """Rebuild (policy, suite, config dict) from a loaded checkpoint."""
    cfg = json.loads(ckpt["config"])
    import_plugins(cfg.get("plugins", []))  # the modules that registered its suite or architecture
    suite = get_suite(cfg["env"]["suite"], cfg["env"].get("reward_version"))
    spec = saved_spec(ckpt)
    if list(suite.tasks) != list(ckpt["tasks"]):
        raise CheckpointError(
            f"checkpoint tasks {ckpt['tasks']} do not match suite '{suite.name}' tasks {list(suite.tasks)}"
        )
    policy = build_policy(spec).to(device)
    load_state(policy, ckpt["policy"], "policy")
    return policy, suite, cfg


def load_state(module: Any, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {what} state does not fit this {what}: {first}") from None
