"""Golden runs: short in-process trainings whose final parameters and eval.json must stay
bit-identical across refactors of the code (recorded in tests/golden.json).

A change that is meant to alter training results re-records them on purpose:
`MTRL_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py`, and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mtrl.run.checkpoint import load_latest
from mtrl.config import load_config
from mtrl.run.trainer import train

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden.json"
COMMON = ["rollout.workers=0", "learner.threads=1", "learner.device=cpu", "train.eval_episodes=2"]
TOY = "configs/toy_mtppo.yaml"
GRPO = ["algo=grpo", "grpo.group_size=4", "grpo.groups=6", "train.total_steps=1500", "ppo.minibatches=2"]

# name -> (config, overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "ppo_toy": (TOY, ["train.total_steps=6144"]),
    "ppo_minigrid_mt3": ("configs/minigrid_mt3_mtppo.yaml", ["train.total_steps=6000", "train.eval_every=6000"]),
    "grpo_toy": (TOY, GRPO),
    "mt_grpo_toy": (TOY, [*GRPO, "algo=mt_grpo"]),
    "sac_toy_point": ("configs/toy_point_sac.yaml", ["train.total_steps=1200"]),
    "ppo_threshold_curriculum": (TOY, ["train.total_steps=6144", "curriculum.name=threshold", "curriculum.threshold=0.3"]),
    # every architecture, so that moving them cannot change a parameter or its name
    "ppo_toy_mlp": (TOY, ["train.total_steps=3072", "policy.arch=mlp"]),
    "ppo_toy_moe": (TOY, ["train.total_steps=3072", "policy.arch=moe", "policy.num_experts=2"]),
    "ppo_toy_moore": (TOY, ["train.total_steps=3072", "policy.arch=moore", "policy.num_experts=3"]),
    "sac_toy_point_moore": ("configs/toy_point_sac.yaml", ["train.total_steps=1200", "policy.arch=moore",
                                                           "policy.num_experts=2"]),  # fmt: skip
}


def fingerprint(run_dir: Path) -> dict:
    """sha256 over the final policy's parameter names and bytes, and the final eval.json."""
    _, ckpt = load_latest(run_dir)
    h = hashlib.sha256()
    for name, tensor in ckpt["policy"].items():  # state_dict order: names and layout are part of the result
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return {"policy_sha256": h.hexdigest(), "env_steps": int(ckpt["env_steps"]),
            "eval": json.loads((run_dir / "eval.json").read_text())}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RUNS))
def test_golden_run_is_bit_identical(name, tmp_path):
    config, overrides = RUNS[name]
    run_dir = train(load_config(ROOT / config, [*COMMON, *overrides, f"run_dir={tmp_path / name}"]))
    got = fingerprint(run_dir)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("MTRL_WRITE_GOLDEN") == "1":
        golden[name] = got
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert name in golden, f"no golden result for {name}; record it with MTRL_WRITE_GOLDEN=1"
    assert got == golden[name]
