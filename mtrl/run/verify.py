"""`mtrl verify RUN_DIR`: check a whole run directory without changing it (no lock, so a
read-only or running run can be checked) and report every problem, one line each.

Checked: every checkpoint (its zip CRC-32s, its contents, that it belongs to this run's config
and that its name's step count is its own), config.yaml (mtrl's strict loader, safe YAML), the
evaluation curve eval_curve.csv (parses, ordered by step, no step twice) and the TensorBoard
streams in tb/ (every record's CRC-32C, and no two event files written at the same time).
"""

from __future__ import annotations

import csv
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mtrl.errors import CheckpointError, MtrlError
from mtrl.eval.curve import FILE as CURVE_FILE
from mtrl.run.checkpoint import DAMAGED, checkpoint_dir, checkpoint_steps, foreign, list_checkpoints, load_checkpoint

EVENTS = "events.out.tfevents.*"


@dataclass
class Report:
    """What `verify_run` found: `problems` (one line each) and `facts` for the "ok" summary."""

    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


def verify_run(run_dir: Path) -> Report:
    """Check `run_dir`'s config, checkpoints, evaluation curve and TensorBoard streams."""
    if not run_dir.is_dir():
        raise MtrlError(f"no such run directory: {run_dir}")
    report = Report()
    identity = _check_config(run_dir, report)
    _check_checkpoints(run_dir, identity, report)
    _check_curve(run_dir / CURVE_FILE, report)
    _check_events(run_dir / "tb", report)
    return report


def _check_config(run_dir: Path, report: Report) -> tuple | None:
    """config.yaml through mtrl's loader; returns (policy spec, tasks) the checkpoints must match."""
    from mtrl.config import load_config
    from mtrl.env.suite import get_suite
    from mtrl.run.training import policy_spec

    path = run_dir / "config.yaml"
    if not path.is_file():
        report.problems.append(f"{path}: missing (every run writes its config there)")
        return None
    try:
        cfg = load_config(path)
        suite = get_suite(cfg.env.suite, cfg.env.reward_version)
        spec = policy_spec(cfg, suite)
    except MtrlError as exc:
        report.problems.append(f"{path}: {exc}")
        return None
    report.facts.append(f"config ({cfg.algo} on {suite.name})")
    return spec, suite.tasks


def _check_checkpoints(run_dir: Path, identity: tuple | None, report: Report) -> None:
    """Every checkpoint loads (CRCs included), is this run's, and holds the steps its name says."""
    paths = list_checkpoints(run_dir)
    for path in paths:
        try:
            ckpt = load_checkpoint(path)
            why = foreign(ckpt, *identity) if identity is not None else None
        except CheckpointError as exc:
            report.problems.append(str(exc))
            continue
        if why is not None:
            report.problems.append(f"checkpoint {path} {why}")
        elif int(ckpt["env_steps"]) != checkpoint_steps(path):
            report.problems.append(f"checkpoint {path} holds {ckpt['env_steps']} env steps, its name says otherwise")
    aside = checkpoint_dir(run_dir) / DAMAGED
    moved = len(list(aside.iterdir())) if aside.is_dir() else 0
    newest = f", newest {paths[-1].name}" if paths else ""
    report.facts.append(f"{len(paths)} checkpoint(s){newest}" + (f" ({moved} set aside in {aside})" if moved else ""))


def _check_curve(path: Path, report: Report) -> None:
    """eval_curve.csv, when there is one: a header with env_steps, rows of its width, steps rising."""
    if not path.is_file():
        report.facts.append("no evaluation curve")
        return
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.problems.append(f"{path}: unreadable ({exc})")
        return
    if not rows or "env_steps" not in rows[0]:
        report.problems.append(f"{path}: no header with an env_steps column")
        return
    col, last = rows[0].index("env_steps"), None
    for n, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(rows[0]):
                raise ValueError(f"{len(row)} fields, the header has {len(rows[0])}")
            step = int(row[col])
        except ValueError as exc:
            report.problems.append(f"{path}: line {n}: {exc}")
            return
        if last is not None and step <= last:
            what = "appears twice" if step == last else f"comes after step {last}"
            report.problems.append(f"{path}: line {n}: step {step} {what} (the curve must be ordered by step)")
        last = step
    report.facts.append(f"evaluation curve of {len(rows) - 1} point(s)")


def _check_events(folder: Path, report: Report) -> None:
    """Each event file's records pass their CRCs, and no two files' wall-clock spans overlap: the
    logger opens one file per start or resume, so an overlap means two processes wrote the run."""
    files = sorted(folder.glob(EVENTS)) if folder.is_dir() else []
    spans = []
    for path in files:
        times, problem = _event_times(path)
        if problem is not None:
            report.problems.append(f"{path}: {problem}")
        if times:
            spans.append((min(times), max(times), path))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            report.problems.append(
                f"{folder}: {a.name} and {b.name} were written at the same time (two processes wrote this run)"
            )
    report.facts.append(f"{len(files)} TensorBoard event file(s)")


def _event_times(path: Path) -> tuple[list[float], str | None]:
    """The wall times of an event file's records, and its first problem: a record failing its
    CRC-32C (TFRecord framing: length, its CRC, data, its CRC). A cut last record is what a kill
    leaves, and is not a problem (nor is an empty file): the rest of the file is intact."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data, pos, times = path.read_bytes(), 0, list[float]()
    while len(data) - pos >= 12:
        (size,) = struct.unpack_from("<Q", data, pos)
        if masked_crc32c(data[pos : pos + 8]) != struct.unpack_from("<I", data, pos + 8)[0]:
            return times, f"record at byte {pos} has a damaged length (CRC-32C mismatch)"
        end = pos + 12 + size
        if end + 4 > len(data):
            break
        if masked_crc32c(data[pos + 12 : end]) != struct.unpack_from("<I", data, end)[0]:
            return times, f"record at byte {pos} is damaged (CRC-32C mismatch)"
        try:
            times.append(Event.FromString(data[pos + 12 : end]).wall_time)
        except DecodeError:  # its CRC passed: written so by its writer
            return times, f"record at byte {pos} is no TensorBoard event"
        pos = end + 4
    return times, None


def main(run_dir: Path) -> int:
    """`mtrl verify`: print one line per problem (exit code 1), or one "ok" line (0)."""
    report = verify_run(run_dir)
    for line in report.problems:
        print(line)
    if report.problems:
        return 1
    print(f"mtrl: verify: ok: {run_dir}: " + ", ".join(report.facts))
    return 0
