"""What an early stop saves (mtrl.run.trainer.save_on_stop): an error at an iteration
boundary or during collection saves the boundary's state, an error in the middle of an update
saves nothing, and a checkpoint write that fails is one line that leaves the older ones intact."""

from __future__ import annotations

import errno

import pytest
import torch

import mtrl
from mtrl.config import load_config
from mtrl.errors import CheckpointError, MtrlError
from mtrl.run.checkpoint import list_checkpoints, load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.fault  # docs/reliability.md: every fault has its test

TOY = ROOT / "configs/toy_mtppo.yaml"
# about 300 env steps per iteration; the scheduled checkpoints come every 100 iterations, i.e. never here
COMMON = [
    "rollout.workers=0",
    "rollout.num_envs=8",  # x 64 steps
    "train.eval_episodes=0",
    "train.checkpoint_every=100",
    "train.total_steps=4096",
    "seed=3",
]


class FailingProbs:
    """A curriculum whose probs() raises at its `at`-th call: an error at an iteration boundary."""

    at = 4

    def __init__(self, tasks: tuple[str, ...], cfg) -> None:  # noqa: ANN001 - a CurriculumConfig
        self.k, self.calls = len(tasks), 0

    def probs(self):  # noqa: ANN201
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("the task service went away")
        return torch.full((self.k,), 1.0 / self.k).numpy()

    def update(self, stats) -> None:  # noqa: ANN001
        pass

    def scores(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])


def test_an_error_at_a_boundary_saves_it_and_the_resume_is_exact(tmp_path, capsys):
    mtrl.register_curriculum("failing-probs", FailingProbs, overwrite=True)
    mtrl.register_curriculum("steady-probs", type("Steady", (FailingProbs,), {"at": -1}), overwrite=True)
    straight = train(load_config(TOY, [*COMMON, "curriculum.name=steady-probs", f"run_dir={tmp_path / 'straight'}"]))
    run = tmp_path / "stopped"
    with pytest.raises(MtrlError, match="curriculum 'failing-probs': probs\\(\\) raised RuntimeError"):
        train(load_config(TOY, [*COMMON, "curriculum.name=failing-probs", f"run_dir={run}"]))
    _, saved = load_latest(run)
    assert saved["iteration"] == FailingProbs.at - 1 and saved["collector"] is not None
    assert "stopped on an error; saved" in capsys.readouterr().err
    # the rest of the run, with a curriculum that no longer fails: the same weights as never stopped
    train(load_config(TOY, [*COMMON, "curriculum.name=steady-probs", f"resume={run}"]))
    for key, value in load_latest(straight)[1]["policy"].items():
        assert torch.equal(load_latest(run)[1]["policy"][key], value), key


def test_an_error_in_the_middle_of_an_update_saves_nothing(tmp_path, capsys):
    def broken(num_tasks: int):  # noqa: ANN202 - an aggregator with a bug: stops the run with one line
        def aggregate(jacobian: torch.Tensor) -> torch.Tensor:
            raise ValueError("shapes do not match")

        return aggregate

    mtrl.register_aggregator("broken-test", broken, overwrite=True)
    run = tmp_path / "run"
    with pytest.raises(MtrlError, match="broken-test"):
        train(load_config(TOY, [*COMMON, "learner.aggregator=broken-test", f"run_dir={run}"]))
    assert list_checkpoints(run) == []
    err = capsys.readouterr().err
    assert "stopped on an error in the middle of an update, which is not saved; there is no checkpoint yet" in err


def test_an_error_during_collection_saves_the_last_boundary(tmp_path, monkeypatch, capsys):
    from mtrl.collect.pool import WorkerPool

    serve, calls = WorkerPool.serve, {"n": 0}

    def failing(self, *args, **kwargs):  # noqa: ANN001, ANN202 - the rollouts fail in the 3rd iteration
        calls["n"] += 1
        if calls["n"] == 3:
            torch.rand(5)  # the failed collection had drawn from the RNG streams
            raise MtrlError("rollout worker 0 died and rollout.max_worker_restarts=0 restarts are used up")
        return serve(self, *args, **kwargs)

    monkeypatch.setattr(WorkerPool, "serve", failing)
    run = tmp_path / "run"
    with pytest.raises(MtrlError, match="restarts are used up"):
        train(load_config(TOY, [*COMMON, f"run_dir={run}"]))
    monkeypatch.setattr(WorkerPool, "serve", serve)
    _, saved = load_latest(run)
    # the state after iteration 2, its RNG streams as they were then; the envs' episodes start afresh
    assert saved["iteration"] == 2 and saved["collector"] is None
    assert "stopped on an error; saved" in capsys.readouterr().err
    train(load_config(TOY, [*COMMON, f"resume={run}"]))
    assert load_latest(run)[1]["env_steps"] >= 4096


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_older_ones(tmp_path, monkeypatch):
    import mtrl.run.checkpoint as checkpoint

    real, writes = checkpoint.torch.save, {"n": 0}

    def disk_full(obj, f) -> None:  # noqa: ANN001 - the second write runs out of space halfway
        writes["n"] += 1
        if writes["n"] == 2:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    run = tmp_path / "run"
    with pytest.raises(
        CheckpointError, match=r"^could not write checkpoint .*ckpt_\d{12}.pt: No space left on device$"
    ):
        train(load_config(TOY, [*COMMON, "train.checkpoint_every=1", f"run_dir={run}"]))
    monkeypatch.setattr(checkpoint.torch, "save", real)
    assert len(list_checkpoints(run)) == 1
    assert not list((run / "checkpoints").glob(".tmp_*")), "a temp file was left behind"
    assert load_latest(run)[1]["iteration"] == 1


def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    proc = run_cli("train", str(TOY), f"run_dir={tmp_path / 'file' / 'run'}", "rollout.workers=0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"mtrl: error: cannot create run directory {tmp_path}")
    assert "Traceback" not in proc.stderr


def test_an_unwritable_run_directory_is_one_line(tmp_path, monkeypatch, capsys):
    """As a read-only run directory (or one on a read-only filesystem) answers: its lock file cannot
    be opened for writing. Faked, since the tests may run as root, whom permissions do not stop."""
    import os

    from mtrl.run import lock
    from mtrl.run.cli import main

    real_open = os.open

    def refuse(path, flags, *args):  # noqa: ANN001, ANN202
        if str(path).endswith(lock.LOCK_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", refuse)
    run = tmp_path / "run"
    assert main(["train", str(TOY), f"run_dir={run}", "rollout.workers=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mtrl: error: cannot lock run directory {run}: Permission denied ({run / lock.LOCK_FILE})"]
    assert not list(run.iterdir())  # nothing written


def test_a_second_interrupt_in_the_middle_of_an_update_saves_nothing(tmp_path, monkeypatch, capsys):
    """The second Ctrl-C stops at once, wherever it lands; in an update it must not leave a
    half-updated policy as the newest checkpoint."""
    from mtrl.algos.learner import MinibatchOptimizer

    step, calls = MinibatchOptimizer._step, {"n": 0}

    def interrupted(self, *args, **kwargs):  # noqa: ANN001, ANN202 - Ctrl-C lands after some minibatch steps of iteration 4
        calls["n"] += 1
        if calls["n"] == 3 * 16 + 5:  # the toy config: 4 epochs x 4 minibatches per iteration
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(MinibatchOptimizer, "_step", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(load_config(TOY, [*COMMON, "train.checkpoint_every=2", f"run_dir={run}"]))
    # iteration 3's state was never saved (a stop at that boundary would have saved it), and nothing of 4's
    assert [load_latest(run)[1]["iteration"], len(list_checkpoints(run))] == [2, 1]
    assert (
        "interrupted in the middle of an update, which is not saved; the checkpoint of iteration 2"
        in capsys.readouterr().err
    )
