"""Golden runs: short in-process trainings whose final parameters and eval.json must stay the same
across refactors of the code (recorded in tests/golden.json).

On a platform (torch, numpy, CPU) with its checksum recorded: every parameter byte (sha256) and the
final evaluation (eval.json) are identical. On any other platform the float rounding of its vector
paths differs, so each run is checked to the precision it keeps across CPUs, measured here by
training every run again with torch's non-vectorised kernels (ATEN_CPU_CAPABILITY=default) and with
MKL_CBWR=COMPATIBLE: per tensor, the sum, norm and projection on a fixed random +-1 vector (over
sqrt(size)) moved by at most 2.6e-5 of the tensor's RMS, against 1e-3 (SAC's temperature lr) to
9e-2 (PPO's lr) for a learning rate changed by 0.1%; so these stay within `STATS_RTOL` of the RMS,
and the evaluation has the same episodes (lengths, successes) and returns to 1e-6. Two runs amplify
rounding (Adam turns a rounding-sized gradient into a full step): ppo_toy_moe moved by 1.5e-3 and
sac_toy_point_moore by 1e-1, so elsewhere they keep only their parameter names, env steps and
episode counts.

A change that is meant to alter training results re-records them on purpose:
`MTRL_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py`, and says why in its commit (this keeps
only this platform's checksum). `MTRL_WRITE_GOLDEN=platform` adds this platform's checksum to runs
that pass the checks, so that bit-identity is checked on this machine too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl.config import load_config
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden.json"
COMMON = ["rollout.workers=0", "learner.threads=1", "learner.device=cpu", "train.eval_episodes=2"]
TOY = "configs/toy_mtppo.yaml"
# grpo.lr: the toy config's ppo.lr, which GRPO read before config_version 2
GRPO = [
    "algo=grpo",
    "grpo.group_size=4",
    "grpo.groups=6",
    "train.total_steps=1500",
    "grpo.minibatches=2",
    "grpo.lr=1e-3",
]

# name -> (config, overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "ppo_toy": (TOY, ["train.total_steps=6144"]),
    "ppo_minigrid_mt3": ("configs/minigrid_mt3_mtppo.yaml", ["train.total_steps=6000", "train.eval_every=6000"]),
    "grpo_toy": (TOY, GRPO),
    "ppo_toy_pcgrad": (TOY, ["train.total_steps=3072", "learner.aggregator=pcgrad"]),  # the per-task gradient path
    "mt_grpo_toy": (TOY, [*GRPO, "algo=mt_grpo"]),
    "sac_toy_point": ("configs/toy_point_sac.yaml", ["train.total_steps=1200"]),
    "ppo_threshold_curriculum": (
        TOY,
        ["train.total_steps=6144", "curriculum.name=threshold", "curriculum.threshold.level=0.3"],
    ),
    # every architecture, so that moving them cannot change a parameter or its name
    "ppo_toy_mlp": (TOY, ["train.total_steps=3072", "policy.arch=mlp"]),
    "ppo_toy_moe": (TOY, ["train.total_steps=3072", "policy.arch=moe", "policy.moe.num_experts=2"]),
    "ppo_toy_moore": (TOY, ["train.total_steps=3072", "policy.arch=moore", "policy.moore.num_experts=3"]),
    "sac_toy_point_moore": (
        "configs/toy_point_sac.yaml",
        ["train.total_steps=1200", "policy.arch=moore", "policy.moore.num_experts=2"],
    ),
}


STATS_RTOL = 3e-4
ROUNDING_SENSITIVE = {"ppo_toy_moe", "sac_toy_point_moore"}  # see the module docstring


def platform_key() -> str:
    """What decides the float rounding of a run: torch and numpy versions, torch's CPU kernel set, the CPU."""
    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
        cpu = " ".join(fields.get(k, "?") for k in ("vendor_id", "cpu family", "model", "model name"))
    except OSError:
        pass
    return f"torch {torch.__version__}, numpy {np.__version__}, {torch.backends.cpu.get_cpu_capability()}, {cpu}"


def tensor_stats(name: str, tensor: torch.Tensor) -> list[float]:
    """sum, norm and projection on a +-1 vector seeded by the name, each over sqrt(size), in float64."""
    x = tensor.detach().double().flatten().numpy()
    signs = np.random.default_rng(zlib.crc32(name.encode())).choice([-1.0, 1.0], size=x.size)
    root = np.sqrt(max(x.size, 1))
    return [float(x.sum() / root), float(np.linalg.norm(x) / root), float(signs @ x / root)]


def fingerprint(run_dir: Path) -> dict:
    """The final policy's sha256 (parameter names and bytes) and per-tensor stats, and the final eval.json."""
    _, ckpt = load_latest(run_dir)
    h = hashlib.sha256()
    for name, tensor in ckpt["policy"].items():  # state_dict order: names and layout are part of the result
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    stats = {n: tensor_stats(n, t) for n, t in ckpt["policy"].items() if t.is_floating_point()}
    return {
        "policy_sha256": h.hexdigest(),
        "policy_stats": stats,
        "env_steps": int(ckpt["env_steps"]),
        "eval": json.loads((run_dir / "eval.json").read_text()),
    }


def stats_mismatch(got: dict[str, list[float]], want: dict[str, list[float]]) -> list[str]:
    """The tensors whose stats are off by more than STATS_RTOL of their RMS (or missing / extra)."""
    if got.keys() != want.keys():
        return [f"parameter names differ: {sorted(got.keys() ^ want.keys())}"]
    bad = []
    for name, (s, rms, p) in want.items():
        off = max(abs(a - b) for a, b in zip(got[name], (s, rms, p)))
        if off > STATS_RTOL * rms + 1e-9:
            bad.append(f"{name}: off by {off:.3g} (RMS {rms:.3g})")
    return bad


def episodes(result: dict, precise: bool) -> list[tuple]:
    """An eval.json's tasks: name, episode count and, for a run that is not rounding-sensitive, the
    mean length and success rate."""
    return [
        (t["task"], t["episodes"]) + ((t["mean_length"], t["success_rate"]) if precise else ()) for t in result["tasks"]
    ]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_golden_run_is_unchanged(name, tmp_path):
    config, overrides = RUNS[name]
    run_dir = train(load_config(ROOT / config, [*COMMON, *overrides, f"run_dir={tmp_path / name}"]))
    got, key = fingerprint(run_dir), platform_key()
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    mode = os.environ.get("MTRL_WRITE_GOLDEN")
    if mode == "1":
        golden[name] = {**got, "policy_sha256": {key: got["policy_sha256"]}}
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert name in golden, f"no golden result for {name}; record it with MTRL_WRITE_GOLDEN=1"
    want = golden[name]
    if key in want["policy_sha256"] and mode != "platform":  # the platform it was recorded on: bit-identical
        assert got["env_steps"] == want["env_steps"] and got["eval"] == want["eval"]
        assert got["policy_sha256"] == want["policy_sha256"][key], f"not bit-identical on {key}"
        return
    assert got["env_steps"] == want["env_steps"]
    assert got["policy_stats"].keys() == want["policy_stats"].keys()
    precise = name not in ROUNDING_SENSITIVE
    assert episodes(got["eval"], precise) == episodes(want["eval"], precise)
    if precise:
        returns = [t["mean_return"] for t in want["eval"]["tasks"]]
        assert [t["mean_return"] for t in got["eval"]["tasks"]] == pytest.approx(returns, rel=1e-6, abs=1e-9)
        assert not (off := stats_mismatch(got["policy_stats"], want["policy_stats"])), off
    if mode == "platform":
        want["policy_sha256"][key] = got["policy_sha256"]
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def test_stats_check_tells_a_changed_tensor_from_rounding():
    t = torch.randn(400, 50, generator=torch.Generator().manual_seed(0))
    want = {"w": tensor_stats("w", t)}
    assert not stats_mismatch({"w": tensor_stats("w", t * (1 + 1e-6))}, want)  # rounding-sized
    assert stats_mismatch({"w": tensor_stats("w", t * (1 + 1e-3))}, want)  # a changed result
    shifted = t.clone()
    shifted[0, 0] += 0.05  # one element of 20,000 moved by 5% of the RMS: the projection sees it
    assert stats_mismatch({"w": tensor_stats("w", shifted)}, want)
    assert stats_mismatch({"v": want["w"]}, want) == ["parameter names differ: ['v', 'w']"]
