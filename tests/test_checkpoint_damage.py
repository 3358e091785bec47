"""Checkpoints that prove themselves: a damaged or foreign checkpoint is never loaded, a resume falls
back to the newest intact one with one warning and moves the bad file to checkpoints/damaged/,
and `mtrl verify` reports every problem of a run directory on a line of its own."""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mtrl.config import load_config
from mtrl.errors import CheckpointError
from mtrl.run.checkpoint import checkpoint_steps, list_checkpoints, load_checkpoint
from mtrl.run.cli import main
from mtrl.run.trainer import train
from mtrl.run.training import Training
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.fault  # docs/reliability.md: every fault has its test

TOY = ROOT / "configs/toy_mtppo.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy run with 3 checkpoints (one per iteration), an evaluation curve and TensorBoard events."""
    run = tmp_path_factory.mktemp("trained") / "run"
    ov = ["rollout.workers=0", "train.eval_episodes=2", "train.eval_every=500", "train.checkpoint_every=1"]
    train(load_config(TOY, [f"run_dir={run}", "train.total_steps=1500", "train.keep_checkpoints=3", *ov]))
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained run to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def flip_policy_bit(path: Path) -> None:
    """Flip one bit of a policy weight, found by its bytes in the file; torch.load alone takes it."""
    weight = next(v for v in load_checkpoint(path)["policy"].values() if v.ndim == 2)
    data, raw = bytearray(path.read_bytes()), weight.numpy().tobytes()
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0
    data[at + len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    unchecked = torch.load(path, weights_only=True)["policy"]  # loads, with a wrong weight
    assert any(not torch.equal(v, weight) for v in unchecked.values() if v.shape == weight.shape)


def random_4k(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4096] = random.Random(0).randbytes(4096)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def other_tasks(path: Path) -> None:
    """The same file as another run on other tasks would have written (here: the toy tasks reordered)."""
    ckpt = load_checkpoint(path)
    torch.save({**ckpt, "tasks": list(reversed(ckpt["tasks"]))}, path)


def other_spec(path: Path) -> None:
    ckpt = load_checkpoint(path)
    torch.save({**ckpt, "spec": {**ckpt["spec"], "hidden": 32}}, path)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {  # how, and the reason the warning names
    "flipped bit": (flip_policy_bit, "CRC-32 mismatch"),
    "4 KiB of random bytes": (random_4k, "corrupt"),
    "truncated": (truncate, "truncated, corrupt or not a checkpoint file"),
    "empty": (empty, "is empty (0 bytes)"),
    "other tasks": (other_tasks, "was trained with policy"),
    "other spec": (other_spec, "was trained with policy"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_is_detected_and_the_resume_falls_back(kind, run, capsys):
    damage, reason = DAMAGE[kind]
    newest, previous = list_checkpoints(run)[-1], list_checkpoints(run)[-2]
    damage(newest)
    bad_bytes = newest.read_bytes()
    if kind.startswith("other"):  # a sound file: the resume and verify see it is not this run's
        load_checkpoint(newest)
    else:
        with pytest.raises(CheckpointError, match=re.escape(reason)):
            load_checkpoint(newest)

    capsys.readouterr()
    assert main(["verify", str(run)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and newest.name in lines[0] and reason in lines[0], lines

    resumed = Training(load_config(run / "config.yaml", [f"resume={run}"]))
    try:
        assert resumed.env_steps == checkpoint_steps(previous) and resumed.faults["damaged_checkpoints"] == 1
    finally:
        resumed.close()
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mtrl: warning:")]
    lost = checkpoint_steps(newest) - checkpoint_steps(previous)
    assert len(warnings) == 1, warnings
    for words in (newest.name, reason, f"resuming from {previous.name}: {lost} env steps lost"):
        assert words in warnings[0], warnings[0]
    aside = run / "checkpoints" / "damaged" / newest.name
    assert not newest.exists() and aside.read_bytes() == bad_bytes  # moved, byte for byte
    assert main(["verify", str(run)]) == 0  # what is left is intact


def test_resume_from_the_command_line_warns_in_one_line_and_keeps_every_damaged_file(run):
    """The newest two damaged: both set aside (a second damaged file of the same name gets a new
    name, never overwriting the first), one warning line each, and training goes on from the third."""
    ckpts = list_checkpoints(run)
    (run / "checkpoints" / "damaged").mkdir()
    earlier = run / "checkpoints" / "damaged" / ckpts[-1].name
    earlier.write_bytes(b"set aside before")
    flip_policy_bit(ckpts[-1])
    truncate(ckpts[-2])
    out = run_cli("train", f"resume={run}", f"train.total_steps={checkpoint_steps(ckpts[-1]) + 200}")
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("mtrl: warning:")]
    assert len(warnings) == 2 and ckpts[-1].name in warnings[0] and ckpts[-2].name in warnings[1], warnings
    assert f"resuming from {ckpts[-3].name}" in warnings[1]
    assert earlier.read_bytes() == b"set aside before"
    assert sorted(p.name for p in (run / "checkpoints" / "damaged").iterdir()) == sorted(
        [ckpts[-1].name, ckpts[-1].stem + ".1.pt", ckpts[-2].name]
    )


def test_eval_skips_a_damaged_checkpoint_with_a_warning_and_leaves_it(run):
    newest = list_checkpoints(run)[-1]
    empty(newest)
    out = run_cli("eval", str(run), "--episodes", "1")
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("mtrl: warning:")]
    assert len(warnings) == 1 and newest.name in warnings[0] and "empty" in warnings[0], out.stderr
    assert newest.exists()  # a reader moves nothing


def test_verify_an_intact_run(trained, capsys):
    assert main(["verify", str(trained)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mtrl: verify: ok: {trained}: config (ppo on toy-mt3)"), lines
    assert "3 checkpoint(s)" in lines[0] and "evaluation curve of 4 point(s)" in lines[0]


def test_verify_prints_one_line_per_problem(run, capsys):
    """A damaged checkpoint, a step twice in the curve, a damaged TensorBoard record and a second
    event file written at the same time as the first: four lines, exit code 1."""
    events = sorted((run / "tb").iterdir())
    assert len(events) == 1  # one start, one event file
    twin = events[0].with_name(events[0].name + ".twin")
    shutil.copy(events[0], twin)  # as if a second writer had logged the same run at the same time
    data = bytearray(events[0].read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    events[0].write_bytes(bytes(data))
    curve = run / "eval_curve.csv"
    rows = curve.read_text().splitlines()
    curve.write_text("\n".join([*rows, rows[-1]]) + "\n")
    flip_policy_bit(list_checkpoints(run)[0])
    assert main(["verify", str(run)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4, lines
    for words in (
        f"{list_checkpoints(run)[0].name} is corrupt (CRC-32 mismatch",
        f"eval_curve.csv: line {len(rows) + 1}: step {rows[-1].split(',')[1]} appears twice",
        f"{events[0].name}: record at byte",
        f"{events[0].name} and {twin.name} were written at the same time",
    ):
        assert sum(words in ln for ln in lines) == 1, (words, lines)


def test_verify_reports_a_broken_config_and_a_missing_run(run, tmp_path, capsys):
    (run / "config.yaml").write_text("algo: ppo\nbogus_key: 1\n")
    assert main(["verify", str(run)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "config.yaml" in lines[0] and "bogus_key" in lines[0], lines
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip() == f"mtrl: error: no such run directory: {tmp_path / 'nothing'}"
