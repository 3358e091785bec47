"""End-to-end training on the toy suite: learning, checkpoints, resume, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mtrl.config import load_config
from mtrl.errors import CheckpointError, MtrlError
from mtrl.run.checkpoint import list_checkpoints, load_checkpoint, load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli

TOY = ROOT / "configs/toy_mtppo.yaml"


def test_toy_suite_is_learned_within_24k_steps(tmp_path):
    """Random play scores about 0.33 per episode; MTPPO must reach 7 of 8 within 24k env steps."""
    run = train(load_config(TOY, [f"run_dir={tmp_path}", "train.total_steps=24000", "train.eval_episodes=16"]))
    result = json.loads((run / "eval.json").read_text())
    assert result["mean_return"] >= 7.0, result
    assert min(t["mean_return"] for t in result["tasks"]) >= 6.0, result
    assert (run / "config.yaml").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"])
    for task in ("sequence-0", "sequence-1", "sequence-2"):
        assert {f"task/{task}/return", f"task/{task}/success", f"task/{task}/episode_length"} <= tags
    assert {"losses/policy", "losses/value", "losses/entropy", "perf/env_steps_per_s", "eval/mean_return"} <= tags


def test_checkpoint_resume_continues_the_step_counter(tmp_path, toy_overrides):
    ov = toy_overrides + ["train.checkpoint_every=2", "train.keep_checkpoints=2", "rollout.steps_per_env=16"]
    run = train(load_config(TOY, ov + ["train.total_steps=1000"]))
    ckpts = list_checkpoints(run)
    assert len(ckpts) == 2  # pruned to keep_checkpoints
    first = load_checkpoint(ckpts[-1])
    assert first["env_steps"] >= 1000
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run_dir"] == str(run) and saved["resume"] is None

    run2 = train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=2000"]))
    assert run2 == run
    _, second = load_latest(run)
    assert second["env_steps"] >= 2000 and second["iteration"] > first["iteration"]
    assert not torch.equal(second["policy"]["actor.trunk.0.weight"], first["policy"]["actor.trunk.0.weight"])


def test_resume_rejects_a_different_architecture(tmp_path, toy_overrides):
    run = train(load_config(TOY, toy_overrides + ["train.total_steps=500"]))
    with pytest.raises(CheckpointError, match="was trained with policy"):
        train(load_config(TOY, [f"resume={run}", "policy.arch=mlp", "train.total_steps=1000", "rollout.workers=0"]))


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path, toy_overrides):
    train(load_config(TOY, toy_overrides + ["train.total_steps=500"]))
    with pytest.raises(MtrlError, match="already holds checkpoints; pass resume="):
        train(load_config(TOY, toy_overrides + ["train.total_steps=500"]))


def test_corrupt_and_unsafe_checkpoints_are_refused(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint file"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an mtrl checkpoint"):
        load_checkpoint(other)
    partial = tmp_path / "partial.pt"
    torch.save({"format": "mtrl-checkpoint", "version": 1, "policy": {}}, partial)
    with pytest.raises(CheckpointError, match="incomplete: missing optimizer, env_steps"):
        load_checkpoint(partial)


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.target),))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    _Exploit.target = str(tmp_path / "pwned")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "mtrl-checkpoint", "version": 1, "x": _Exploit()}, bad)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path, toy_overrides):
    run = train(
        load_config(
            TOY, toy_overrides + ["train.total_steps=1500", "train.checkpoint_every=1", "rollout.steps_per_env=16"]
        )
    )
    ckpts = list_checkpoints(run)
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])
    path, data = load_latest(run)
    assert path == ckpts[-2] and data["env_steps"] < int(ckpts[-1].stem.split("_")[1])


def test_eval_cli_prints_table_and_json(tmp_path, toy_overrides):
    run = train(load_config(TOY, toy_overrides + ["train.total_steps=500"]))
    out = run_cli("eval", str(run), "--episodes", "3", "--json", str(tmp_path / "e.json"))
    assert out.returncode == 0, out.stderr
    for name in ("sequence-0", "sequence-1", "sequence-2", "mean over tasks"):
        assert name in out.stdout
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["suite"] == "toy-mt3" and [m["method"] for m in data["methods"]] == ["ppo-multihead"]
    assert [t["episodes"] for t in data["runs"][0]["tasks"]] == [3, 3, 3]
    again = run_cli("eval", str(run), "--episodes", "3")
    assert again.stdout.splitlines()[1:] == out.stdout.splitlines()[1:]  # deterministic given the seed


def test_checkpoints_from_before_a_new_spec_field_still_resume(tmp_path, toy_overrides):
    """A checkpoint whose policy spec lacks a field added later (PolicySpec.kind) resumes with the
    field's default; a spec with a field mtrl does not know is a clean CheckpointError."""
    from mtrl.run.checkpoint import save_checkpoint

    run = train(load_config(TOY, toy_overrides + ["train.total_steps=500", "train.eval_episodes=0"]))
    _, ckpt = load_latest(run)
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "version")}
    del payload["spec"]["kind"]
    save_checkpoint(run, payload, int(ckpt["env_steps"]) + 1, keep=3)
    train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=1000", "train.eval_episodes=0"]))
    assert load_latest(run)[1]["env_steps"] >= 1000
    payload["spec"]["bogus"] = 1
    save_checkpoint(run, payload, 10**6, keep=3)
    with pytest.raises(CheckpointError, match="does not describe an mtrl policy"):
        train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=2000000"]))
