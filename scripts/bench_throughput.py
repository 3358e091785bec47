"""Throughput and memory, mtrl against RLlib, side by side in one run, printed as tables of ratios.

  (a) raw env:  random actions through the slot-ordered vector env, one process
  (b) collect:  Ray workers with the MOORE policy, weights pushed every iteration, no learning
  (c) train:    collect + PPO update (MOORE actor and critic), as `mtrl train` runs it; also with
                rollout.pipeline=true, and with the same network as RLlib's (c=)

  (d) RLlib:    RLlib 2.60 PPO (new API stack) with mtrl's MOORE network as its RLModule
                (mtrl.rllib.ppo_config), the same tasks and batch settings, 2 env runners
  (d=) RLlib:   the same with RLlib's default-catalog network, which (c=) mirrors
                (scripts/rllib_peer.py; both need `pip install -e ".[rllib]"`)

Every cell runs in a fresh subprocess, so each memory figure (summed PSS of the process and all
its children, Ray's included) belongs to that measurement alone. The cells alternate: each round
runs every cell once (scripts/rounds.py), and the tables give each cell's median over rounds and
each ratio as the median of its per-round ratios with their min-max.

  python scripts/bench_throughput.py --suites minigrid-mt3 metaworld-mt10 --iters 6
  python scripts/bench_throughput.py --cells train rllib_mtrl --backends gymnasium --rounds 5   # mtrl vs RLlib only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rounds import show_ratio
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
ALL_CELLS = ("raw", "collect", "train", "pipelined", "same", "rllib_mtrl", "rllib")
CONFIGS = {
    "minigrid-mt3": "configs/bench_throughput_minigrid_mt3.yaml",
    "metaworld-mt10": "configs/metaworld_mt10_moore_ppo.yaml",
}
SLOTS = {"minigrid-mt3": 12, "metaworld-mt10": 10}
# mtrl's `mlp` arch sized like RLlib's default-catalog model in rllib_peer.py (conv 16/32/64 + 2x128
# for images, 3x400 for vectors; task one-hot in the input), for a like-for-like network
SAME_AS_RLLIB = {
    "minigrid-mt3": ["policy.arch=mlp"],
    "metaworld-mt10": ["policy.arch=mlp", "policy.hidden=400", "policy.layers=3"],
}


def raw_env(suite_name: str, backend: str, steps: int, slots: int) -> dict:
    """Random-action env steps/s of `slots` env slots stepped together in this process."""
    import mtrl
    from mtrl.env.suite import slot_tasks
    from mtrl.env.vector import make_vector_env

    suite = mtrl.get_suite(suite_name)
    envs = make_vector_env(suite, slot_tasks(suite.num_tasks, slots), list(range(slots)), "next_step", None, backend)
    envs.reset(seed=list(range(slots)))
    space, rng = suite.action_space, np.random.default_rng(0)
    sample = (
        (lambda: rng.integers(0, space.n, slots))
        if hasattr(space, "n")
        else (lambda: rng.uniform(-1, 1, (slots, *space.shape)))
    )
    t0 = time.perf_counter()
    for _ in range(steps):
        envs.step(sample())
    rate = slots * steps / (time.perf_counter() - t0)
    envs.close()
    return {"steps_per_s": rate}


def mtrl_pool(suite_name: str, overrides: list[str], iters: int, learn: bool, profile: bool = False) -> dict:
    """Env steps/s over `iters` iterations (after one warm-up) of collection, plus PPO updates if
    `learn`, exactly as the trainer interleaves them; and the summed PSS at the end."""
    import torch
    from rllib_peer import profiled, tree_pss_mb

    import mtrl
    from mtrl.algos.learner import MinibatchOptimizer
    from mtrl.algos.ppo import make_batch, ppo_terms
    from mtrl.collect.pool import WorkerPool
    from mtrl.config import load_config
    from mtrl.nn.policy import build_policy
    from mtrl.run.trainer import policy_spec

    cfg = load_config(HERE.parent / CONFIGS[suite_name], overrides)
    suite = mtrl.get_suite(suite_name)
    spec = policy_spec(cfg, suite)
    policy = build_policy(spec)
    learner = MinibatchOptimizer(list(policy.parameters()), cfg.ppo)
    gen = torch.Generator().manual_seed(0)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    try:
        pool.collect(policy)  # warm-up: actor start, env builds
        steps, in_flight, prof = 0, None, {}
        t0 = time.perf_counter()
        with profiled(prof, profile):  # the driver: waiting for the workers, and the learner
            for _ in range(iters):
                frag = pool.wait(in_flight if in_flight is not None else pool.submit(policy))
                in_flight = pool.submit(policy) if cfg.rollout.pipeline else None
                if learn:
                    learner.update(
                        make_batch(frag, policy, cfg.ppo, suite.num_tasks, torch.device("cpu"))[0],
                        lambda mb: ppo_terms(policy, mb, cfg.ppo),
                        gen,
                    )
                steps += frag.num_steps
        rate = steps / (time.perf_counter() - t0)
        if in_flight is not None:
            pool.wait(in_flight)
        params = sum(p.numel() for p in policy.parameters())
        return {"steps_per_s": rate, "pss_mb": tree_pss_mb(), "params": params, **prof}
    finally:
        pool.close()


def rllib(suite_name: str, iters: int, workers: int, slots: int, mtrl_network: bool, profile: bool = False) -> dict:
    """(d) / (d=): RLlib PPO with mtrl's batch settings for this suite's config, and with the
    config's own (MOORE) network as an mtrl.rllib module when `mtrl_network`."""
    from rllib_peer import rllib_ppo

    from mtrl.config import load_config

    cfg = load_config(HERE.parent / CONFIGS[suite_name], [])
    p = cfg.policy
    mixture = p.options[p.arch]  # MOORE's own options (policy.moore.*)
    policy = {
        "arch": p.arch,
        "num_experts": mixture.num_experts,
        "head": mixture.head,
        "task_norm": cfg.ppo.task_norm,
        "overrides": (f"policy.hidden={p.hidden}", f"policy.layers={p.layers}", f"policy.init={p.init}"),
    }
    return rllib_ppo(
        suite_name,
        iters,
        env_runners=workers,
        num_envs=slots,
        steps_per_env=cfg.rollout.steps_per_env,
        epochs=cfg.ppo.epochs,
        minibatches=cfg.ppo.minibatches,
        mtrl_policy=policy if mtrl_network else None,
        profile=profile,
    )


def measure(args: argparse.Namespace) -> dict:
    """One cell, in this process."""
    slots = SLOTS[args.suite] * args.envs_scale
    base = [f"env.backend={args.backend}", f"rollout.workers={args.workers}", f"rollout.num_envs={slots}"]
    if args.cell == "raw":
        return raw_env(args.suite, args.backend, args.raw_steps, slots)
    if args.cell == "collect":
        return mtrl_pool(args.suite, base, args.iters, learn=False)
    if args.cell == "train":
        return mtrl_pool(args.suite, base, args.iters, learn=True, profile=args.profile)
    if args.cell == "pipelined":
        return mtrl_pool(args.suite, [*base, "rollout.pipeline=true"], args.iters, learn=True)
    if args.cell == "same":
        return mtrl_pool(args.suite, [*base, *SAME_AS_RLLIB[args.suite]], args.iters, learn=True)
    return rllib(
        args.suite, args.iters, args.workers, slots, mtrl_network=args.cell == "rllib_mtrl", profile=args.profile
    )


def cell(args: argparse.Namespace, suite: str, name: str, backend: str = "gymnasium") -> dict:
    """Run one cell in a fresh subprocess; {} (and a note on stderr) if it fails."""
    cmd = [
        sys.executable,
        __file__,
        "--cell",
        name,
        "--suite",
        suite,
        "--backend",
        backend,
        "--iters",
        str(args.iters),
        "--workers",
        str(args.workers),
        "--raw-steps",
        str(args.raw_steps),
        "--envs-scale",
        str(args.envs_scale),
        *(["--profile"] if args.profile else []),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  [{suite} {name} {backend}] failed: {tail}", file=sys.stderr)
        return {}
    return json.loads(lines[-1])


def fmt(values: list[float]) -> str:
    """The median of a cell's rounds (n/a where it has none)."""
    return f"{statistics.median(values):.0f}" if values else "n/a"


def per_round(results: list[dict], key: str = "steps_per_s") -> list[float]:
    return [r[key] for r in results if key in r]


def ratio(a: list[dict], b: list[dict], key: str = "steps_per_s") -> str:
    """The median over rounds of a/b, with its min-max (rounds.py); n/a unless both have every round."""
    num, den = per_round(a, key), per_round(b, key)
    return show_ratio(num, den) if num and len(num) == len(den) else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS), help="suites to measure")
    p.add_argument(
        "--backends",
        nargs="+",
        default=["gymnasium", "envpool"],
        choices=["gymnasium", "envpool"],
        help="env backends for mtrl's (a)-(c); RLlib always steps the gymnasium envs",
    )
    p.add_argument("--workers", type=int, default=2, help="Ray rollout workers / RLlib env runners")
    p.add_argument("--iters", type=int, default=6, help="timed iterations for (b)-(d), after one warm-up")
    p.add_argument("--raw-steps", type=int, default=500, help="vector steps for (a)")
    p.add_argument(
        "--envs-scale",
        type=int,
        default=1,
        help="multiply the env slots (12 MiniGrid, 10 MT10) in every cell; the batch grows with them",
    )
    p.add_argument("--no-rllib", action="store_true", help="skip (d) and (d=)")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds of every cell (default 5)")
    p.add_argument(
        "--cells",
        nargs="+",
        default=list(ALL_CELLS),
        choices=ALL_CELLS,
        help="the cells to run (default all): raw (a), collect (b), train (c), pipelined, same (c=), rllib_mtrl (d), rllib (d=)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the tables, profile the driver of (c) and (d) (cProfile slows them: its own run)",
    )
    p.add_argument(
        "--cell",
        choices=["raw", "collect", "train", "pipelined", "same", "rllib", "rllib_mtrl"],
        help=argparse.SUPPRESS,
    )
    p.add_argument("--suite", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="gymnasium", help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in ("workers", "iters", "raw_steps", "envs_scale", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.cell:  # a child: measure one cell, print it as JSON
        print(json.dumps(measure(args)))
        return
    import torch

    print(f"torch {torch.__version__}; {args.workers} workers / env runners; {args.iters} timed iterations\n")
    if args.profile:
        for suite in args.suites:
            for name, label in (("train", "(c) mtrl train, MOORE"), ("rllib_mtrl", "(d) RLlib PPO, mtrl's MOORE")):
                out = cell(args, suite, name, args.backends[0])
                print(
                    f"{suite} {label}: {fmt(per_round([out]))} env steps/s under the profiler; driver, top by cumulative time"
                )
                for fn, seconds, share in out.get("profile", []):
                    print(f"  {share:6.1%} {seconds:8.2f} s  {fn}")
        return
    cells = [c for c in args.cells if not (args.no_rllib and c.startswith("rllib"))]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for _ in tqdm(range(args.rounds), desc="rounds", unit="round", leave=False):  # A B A B ...: rounds.py
        for suite in args.suites:
            for name in cells:
                for backend in ["gymnasium"] if name.startswith("rllib") else args.backends:
                    key = (suite, "-" if name.startswith("rllib") else backend, name)
                    runs.setdefault(key, []).append(cell(args, suite, name, backend))
    speed, memory = [], []
    for suite in args.suites:
        d, dd = runs.get((suite, "-", "rllib_mtrl"), []), runs.get((suite, "-", "rllib"), [])
        for backend in args.backends:
            a, b, c, cp, cs = (
                runs.get((suite, backend, n), []) for n in ("raw", "collect", "train", "pipelined", "same")
            )
            speed.append(
                f"| {suite} | {backend} | {fmt(per_round(a))} | {fmt(per_round(b))} | {ratio(b, a)} "
                f"| {fmt(per_round(c))} | {fmt(per_round(cp))} | {ratio(cp, c)} "
                f"| {fmt(per_round(d))} | **{ratio(c, d)}** "
                f"| {fmt(per_round(cs))} | {fmt(per_round(dd))} | {ratio(cs, dd)} |"
            )
            memory.append(
                f"| {suite} | {backend} | {fmt(per_round(c, 'pss_mb'))} | {fmt(per_round(d, 'pss_mb'))} "
                f"| **{ratio(c, d, 'pss_mb')}** | {c[0].get('params', 'n/a') if c else 'n/a'} "
                f"| {d[0].get('params', 'n/a') if d else 'n/a'} | {fmt(per_round(cs, 'pss_mb'))} "
                f"| {fmt(per_round(dd, 'pss_mb'))} | {ratio(cs, dd, 'pss_mb')} |"
            )
    print(f"medians over {args.rounds} alternated rounds; ratios: the median of the per-round ratios (min-max)\n")
    print(
        "| suite | mtrl backend | (a) raw env steps/s | (b) collect | (b)/(a) | (c) mtrl train, MOORE | (c) pipelined "
        "| pipelined/plain | (d) RLlib PPO, mtrl's MOORE | (c)/(d) | (c=) mtrl, RLlib's network "
        "| (d=) RLlib PPO, its network | (c=)/(d=) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(speed))
    print(
        "\n| suite | mtrl backend | mtrl (c) PSS MiB | RLlib (d) PSS MiB | (c)/(d) | mtrl (c) params | RLlib (d) params "
        "| mtrl (c=) PSS MiB | RLlib (d=) PSS MiB | (c=)/(d=) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(memory))


if __name__ == "__main__":
    main()
