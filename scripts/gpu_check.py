"""The GPU check of the Meta-World+ SAC protocol: how long its learner takes on this machine's GPU,
in-process, without Ray or any env (a device with only torch, numpy and the wheels below runs it).

  python scripts/gpu_check.py                              # CUDA, multi-head MTSAC and MOORE, 300 updates each
  python scripts/gpu_check.py --device cpu --updates 5     # the same on the CPU (a smoke run)

For each architecture it builds the learner of its `configs/metaworld_plus/mt10_<arch>.yaml`
(networks, optimisers, clipping, temperatures as configured), fills that config's per-task replay
with random transitions (MT10's shapes), and times `--updates` updates exactly as training runs
them: a task-balanced sample from the replay, copied to the device, then one SAC update. It prints
ms per update and the projected hours of Meta-World+'s full protocol, 2e7 env steps = 2e6 updates
(one per vector step of the 10 envs): the learner's part, and the env stepping at
`--env-steps-per-s` per CPU core (Meta-World's Python envs on the development CPU: about 1k) over
16 env workers. The whole check stops after `--budget-s` seconds (default 420) with what it has.

On a device without the project's dependencies, carry these wheels (pure Python):
gymnasium, cloudpickle, farama-notifications, typing-extensions, pyyaml, tqdm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a plain checkout: no install needed

from mtrl.algos.sac_learner import SACLearner, learner_from_config  # noqa: E402
from mtrl.config import load_config  # noqa: E402
from mtrl.data.replay import TaskReplay  # noqa: E402
from mtrl.env.suite import get_suite  # noqa: E402
from mtrl.nn.policy import build_policy  # noqa: E402
from mtrl.run.trainer import policy_spec  # noqa: E402

PROTOCOL_UPDATES = 2_000_000  # 2e7 env steps / 10 envs, one update per vector step (configs/metaworld_plus)
PROTOCOL_ENV_STEPS = 20_000_000
ENV_WORKERS = 16


def learner_and_replay(
    arch: str, device: torch.device, replay_per_task: int | None, seed: int, ensemble: bool = False
) -> tuple[SACLearner, TaskReplay, int]:
    """The learner and a random-filled replay of configs/metaworld_plus/mt10_<arch>.yaml."""
    layout = f"policy.critic_ensemble={str(ensemble).lower()}"
    cfg = load_config(ROOT / f"configs/metaworld_plus/mt10_{arch}.yaml", [layout])
    suite = get_suite(cfg.env.suite)  # no env is built: the spaces and task names only
    s = cfg.sac
    torch.manual_seed(seed)
    policy = build_policy(policy_spec(cfg, suite)).to(device)
    learner = learner_from_config(policy, s, suite.num_tasks, 4)
    capacity = replay_per_task or s.replay_size
    obs = suite.observation_space.shape
    replay = TaskReplay(suite.num_tasks, capacity, obs, np.float32, 4, int(s.replay_memory_gb * 2**30))
    rng = np.random.default_rng(seed)
    n = capacity * suite.num_tasks
    for lo in range(0, n, 100_000):  # in slices: a full MT10 replay is 1e6 transitions
        m = min(100_000, n - lo)
        replay.add(
            np.arange(lo, lo + m) % suite.num_tasks,
            rng.standard_normal((m, *obs), np.float32),
            rng.uniform(-1, 1, (m, 4)).astype(np.float32),
            rng.uniform(0, 10, m).astype(np.float32),
            rng.standard_normal((m, *obs), np.float32),
            np.zeros(m, bool),
        )
    return learner, replay, s.batch_per_task


def time_updates(
    learner: SACLearner, replay: TaskReplay, batch_per_task: int, device: torch.device, updates: int, deadline: float
) -> tuple[float, int]:
    """ms per update (replay sample, host-to-device copy, update) over up to `updates` timed updates."""
    rng = np.random.default_rng(0)

    def one() -> None:
        batch = {
            k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in replay.sample(batch_per_task, rng).items()
        }
        learner.update(batch)  # its returned floats synchronise with the device every update, as in training

    for _ in range(5):  # warm-up: kernels, allocator, Adam's state
        one()
    done, t0 = 0, time.perf_counter()
    while done < updates and time.perf_counter() < deadline:
        one()
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / max(done, 1) * 1e3, done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="where the learner runs (default cuda)")
    p.add_argument(
        "--archs",
        nargs="+",
        default=["mtmhsac", "moore"],
        help="configs/metaworld_plus/mt10_<arch>.yaml to time (default: mtmhsac moore)",
    )
    p.add_argument(
        "--critics",
        nargs="+",
        default=["modules", "ensemble"],
        choices=["modules", "ensemble"],
        help="the twin critics as two modules and/or one vmapped ensemble (policy.critic_ensemble; default: both)",
    )
    p.add_argument("--updates", type=int, default=300, help="timed updates per architecture (default 300)")
    p.add_argument(
        "--replay-per-task", type=int, default=None, help="replay capacity per task (default: the config's, 1e5)"
    )
    p.add_argument(
        "--env-steps-per-s",
        type=float,
        default=1000.0,
        help="Meta-World env steps per second per CPU core "
        "for the projection (default 1000, the Python envs on the development CPU)",
    )
    p.add_argument("--budget-s", type=float, default=420.0, help="stop timing after this many seconds (default 420)")
    p.add_argument(
        "--tf32", action="store_true", help="allow TF32 matmuls on the GPU (JAX's default on Ampere and later)"
    )
    args = p.parse_args()
    if args.updates < 1:
        p.error(f"--updates must be >= 1, got {args.updates}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch (use --device cpu for a smoke run)")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; TF32 {'on' if args.tf32 else 'off'}")
    rows = []
    cells = [(arch, layout) for arch in args.archs for layout in args.critics]
    for i, (arch, layout) in enumerate(cells):
        name = f"mt10_{arch}" + (", critic ensemble" if layout == "ensemble" else "")
        left = args.budget_s - (time.perf_counter() - start)
        if left <= 0:
            print(f"{name}: skipped, --budget-s {args.budget_s:.0f} used up")
            continue
        deadline = time.perf_counter() + left / (len(cells) - i)
        learner, replay, bpt = learner_and_replay(arch, device, args.replay_per_task, 0, layout == "ensemble")
        ms, done = time_updates(learner, replay, bpt, device, args.updates, deadline)
        rows.append((name, ms, done))
        del learner, replay
    env_h = PROTOCOL_ENV_STEPS / (args.env_steps_per_s * ENV_WORKERS) / 3600
    print(
        f"\nMeta-World+ MT10 protocol: {PROTOCOL_ENV_STEPS:.0e} env steps, {PROTOCOL_UPDATES:.0e} updates of batch 10 x 128"
    )
    print(f"env stepping at {args.env_steps_per_s:.0f} steps/s per core over {ENV_WORKERS} workers: {env_h:.2f} h\n")
    print(
        "| config | ms per update | updates timed | learner hours | total hours, env and learner in turn | "
        "total hours, overlapped |"
    )
    print("|---|---|---|---|---|---|")
    for name, ms, done in rows:
        learn_h = PROTOCOL_UPDATES * ms / 1e3 / 3600
        print(f"| {name} | {ms:.2f} | {done} | {learn_h:.1f} | {learn_h + env_h:.1f} | {max(learn_h, env_h):.1f} |")
    print(f"\n(check took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
