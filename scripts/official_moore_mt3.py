"""Run the official MOORE code (github AhmedMagdyHendawy/MOORE) on MiniGrid MT3, MT5 or MT7,
unmodified, one run, with wall-clock timing: the side of scripts/bench_protocol.py that is not mtrl.

  MOORE_OFFICIAL_DIR=/path/to/moore_official scripts/official_moore_mt3.py my_run            # MOORE, MT3
  MOORE_OFFICIAL_DIR=/path/to/moore_official scripts/official_moore_mt3.py my_run --moe      # MoE
  MOORE_OFFICIAL_DIR=/path/to/moore_official scripts/official_moore_mt3.py my_run --suite MT5

MOORE_OFFICIAL_DIR holds `src/` (the official repository at commit a7550c5) and `venv/` (its
dependencies: torch, mushroom-rl 1.9.2, minigrid 2.3.1, gymnasium 0.29.1, numpy 1.26.4, gym
0.24.1, wandb 0.15.8, matplotlib, tqdm, joblib); docs/reproducing-moore.md says how to make both.
Run it with that venv's python. The arguments are those of the official
`run/minigrid/multi_task/run_minigrid_ppo_mt_moore_multihead.sh MT3 2` (MT5 3, MT7 4: the experts
the official README gives per suite; every other flag is the same, the batch of 256 per task
scaled by the number of tasks inside the official script), in-process (one experiment) and
without wandb; `--epochs N` shortens the run (default 100). The algorithm is not
touched: torch is pinned to one thread, and `Core.learn` / `Core.evaluate` are wrapped in timers
that print `[TIMING] learn#N ...`, `[TIMING] eval#N ...` and a final `[TIMING] total wall ...`.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
from pathlib import Path

EXPERTS = {"MT3": 2, "MT5": 3, "MT7": 4}  # the official README's [N_EXPERTS] per suite


def official_argv(name: str, epochs: int, moe: bool, results: Path, suite: str = "MT3") -> list[str]:
    """The official multi-head MOORE (or MoE, without --orthogonal) command line for `suite`."""
    argv = ["--n_exp", "1", "--env_name", suite, "--exp_name", name, "--n_epochs", str(epochs), "--n_steps", "2000"]
    argv += ["--n_episodes_test", "16", "--train_frequency", "2000", "--lr_actor", "1e-3", "--lr_critic", "1e-3"]
    argv += ["--critic_network", "MiniGridPPOMixtureMHNetwork", "--critic_n_features", "128"]
    argv += [] if moe else ["--orthogonal"]
    argv += ["--n_experts", str(EXPERTS[suite]), "--actor_network", "MiniGridPPOMixtureMHNetwork"]
    argv += ["--actor_n_features", "128"]
    return argv + ["--batch_size", "256", "--gamma", "0.99", "--results_dir", str(results)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="experiment name (the official code's --exp_name)")
    p.add_argument("--moe", action="store_true", help="MoE: the same network without Gram-Schmidt (no --orthogonal)")
    p.add_argument("--epochs", type=int, default=100, help="updates of 2000 steps per task (default 100, the protocol)")
    p.add_argument("--suite", choices=sorted(EXPERTS), default="MT3", help="the official suite (default MT3)")
    args = p.parse_args()
    root = os.environ.get("MOORE_OFFICIAL_DIR")
    if not root or not (Path(root) / "src" / "run_minigrid_ppo_mt.py").is_file():
        p.error("set MOORE_OFFICIAL_DIR to a directory holding src/run_minigrid_ppo_mt.py (docs/reproducing-moore.md)")
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    import torch

    torch.set_num_threads(1)
    src = Path(root) / "src"
    sys.path.insert(0, str(src))
    os.chdir(src)  # the official script reads its files relative to its own directory
    from moore.core import Core  # the official code's training loop

    clock = {"learn": 0.0, "eval": 0.0, "n_learn": 0, "n_eval": 0, "start": time.time()}

    def timed(kind: str, original):  # noqa: ANN001, ANN202 - wraps the official methods
        def call(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            t = time.time()
            out = original(self, *a, **k)
            dt = time.time() - t
            clock[kind] += dt
            clock[f"n_{kind}"] += 1
            task = f" task{self.current_idx} steps={len(out)}" if kind == "eval" else ""
            print(
                f"[TIMING] {kind}#{clock[f'n_{kind}']}{task} {dt:.2f}s (cum {kind} {clock[kind]:.1f}s, "
                f"wall {time.time() - clock['start']:.1f}s)",
                flush=True,
            )
            return out

        return call

    Core.learn, Core.evaluate = timed("learn", Core.learn), timed("eval", Core.evaluate)
    script = src / "run_minigrid_ppo_mt.py"
    sys.argv = [str(script), *official_argv(args.name, args.epochs, args.moe, Path(root) / "results", args.suite)]
    runpy.run_path(str(script), run_name="__main__")
    print(
        f"[TIMING] total wall {time.time() - clock['start']:.1f}s learn {clock['learn']:.1f}s eval {clock['eval']:.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
