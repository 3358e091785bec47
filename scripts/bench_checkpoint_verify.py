"""What verifying a checkpoint costs: the zip CRC-32s (`zipfile.ZipFile(path).testzip()`) against
a SHA-256 digest of the whole file, next to `torch.load` itself, on a checkpoint of Meta-World MT10
SAC's size with its replay contents (random tensors of the real shapes), in alternated rounds.

  python scripts/bench_checkpoint_verify.py                 # about 60 MB, 7 rounds
  python scripts/bench_checkpoint_verify.py --replay 50000 --rounds 9

Shapes: MT10 (10 tasks, 39-dim observations, 4-dim actions), a multi-head SAC actor and twin
critics of 3 x 400 units with Adam moments, and `--replay` transitions per task (obs, next obs,
action, reward, done). The file is read from the page cache (it was just written), so the
figures are the checks' compute cost, not the disk's.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from rounds import alternate, show_ratio


def mlp(sizes: list[int]) -> dict[str, torch.Tensor]:
    """Random weights of an MLP with these layer sizes."""
    out = {}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        out[f"{i}.weight"], out[f"{i}.bias"] = torch.randn(b, a), torch.randn(b)
    return out


def payload(tasks: int, obs: int, act: int, replay: int) -> dict:
    """A dict shaped like a SAC checkpoint of `tasks` tasks with `replay` transitions per task."""
    nets = {
        "actor": mlp([obs + tasks, 400, 400, 400, 2 * act * tasks]),
        "q1": mlp([obs + tasks + act, 400, 400, 400, tasks]),
        "q2": mlp([obs + tasks + act, 400, 400, 400, tasks]),
    }
    policy = {f"{n}.{k}": v for n, net in nets.items() for k, v in net.items()}
    adam = {k: {"exp_avg": torch.randn_like(v), "exp_avg_sq": torch.rand_like(v)} for k, v in policy.items()}
    buffers = {
        "obs": torch.randn(tasks, replay, obs),
        "next_obs": torch.randn(tasks, replay, obs),
        "action": torch.rand(tasks, replay, act),
        "reward": torch.randn(tasks, replay),
        "done": torch.zeros(tasks, replay, dtype=torch.bool),
    }
    return {"policy": policy, "optimizer": adam, "replay": buffers, "env_steps": 10**6}


def crc(path: Path) -> None:
    assert zipfile.ZipFile(path).testzip() is None


def sha256(path: Path) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    digest.hexdigest()


def load(path: Path) -> None:
    torch.load(path, map_location="cpu", weights_only=True)


def timed(fn: Callable[[Path], None], path: Path) -> float:
    t0 = time.perf_counter()
    fn(path)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replay", type=int, default=20000, help="transitions per task (default 20000)")
    p.add_argument("--rounds", type=int, default=7, help="alternated rounds (default 7)")
    args = p.parse_args()
    if args.replay < 1 or args.rounds < 1:
        p.error("--replay and --rounds must be >= 1")
    checks: dict[str, Callable[[Path], None]] = {"zip CRC-32 (testzip)": crc, "SHA-256": sha256, "torch.load": load}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pt"
        torch.save(payload(10, 39, 4, args.replay), path)
        size = path.stat().st_size / 1e6
        for fn in checks.values():
            fn(path)  # warm the page cache and the imports
        times = alternate({name: lambda fn=fn: timed(fn, path) for name, fn in checks.items()}, args.rounds)
    print(f"checkpoint of {size:.1f} MB, {args.rounds} alternated rounds, torch {torch.__version__}\n")
    print("| check | ms (median, min-max) | MB/s | / zip CRC-32 |")
    print("|---|---|---|---|")
    crc_times = times["zip CRC-32 (testzip)"]
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"| {name} | {med * 1e3:.1f} ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}) | {size / med:.0f} | "
            f"{show_ratio(ts, crc_times)} |"
        )


if __name__ == "__main__":
    main()
