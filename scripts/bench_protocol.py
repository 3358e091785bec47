"""Wall-clock of one MOORE MiniGrid MT3 run under the official protocol: mtrl against MOORE's
official code, side by side on this machine, one core each, evaluation included.

Both start at the same time at the same niceness: the official code through
scripts/official_moore_mt3.py (it pins torch to one thread and prints [TIMING] lines), mtrl as
`mtrl train configs/moore_paper/minigrid_mt3_moore.yaml learner.threads=1` with OMP_NUM_THREADS=1.
The official tree and its venv are not part of mtrl: set MOORE_OFFICIAL_DIR as
docs/reproducing-moore.md says. When one of them finishes, a second mtrl run of the same
command (`load_run/`, discarded) takes over its core until the other finishes, so that both runs
see the same contention from start to end (on a 2-core machine a lone run is faster than one
beside another). Prints one table (seconds per run and per update, the
time inside evaluation, and the ratio mtrl/official) and writes it as JSON next to the logs.

  MOORE_OFFICIAL_DIR=/path/to/moore_official python scripts/bench_protocol.py --out runs/bench_protocol
  MOORE_OFFICIAL_DIR=... python scripts/bench_protocol.py --updates 10 --out runs/bench_protocol_probe
  python scripts/bench_protocol.py --report-only --out runs/bench_protocol
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_RUN = ROOT / "scripts" / "official_moore_mt3.py"
STEPS_PER_UPDATE = 6000  # 2000 steps x 3 tasks


def start_official(out: Path, updates: int, arch: str) -> subprocess.Popen:
    python = Path(os.environ["MOORE_OFFICIAL_DIR"]) / "venv" / "bin" / "python"
    moe = ["--moe"] if arch == "moe" else []
    return subprocess.Popen(
        [
            "nice",
            "-n",
            "10",
            str(python),
            str(OFFICIAL_RUN),
            f"bench_{arch}_{int(time.time())}",
            "--epochs",
            str(updates),
            *moe,
        ],
        stdout=open(out / "official.stdout.log", "w"),
        stderr=open(out / "official.stderr.log", "w"),
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def start_mtrl(out: Path, updates: int, arch: str, seed: int, name: str = "mtrl_run") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "mtrl",
        "train",
        str(ROOT / f"configs/moore_paper/minigrid_mt3_{arch}.yaml"),
        f"seed={seed}",
        f"run_dir={out / name}",
        f"train.total_steps={updates * STEPS_PER_UPDATE}",
        "rollout.workers=0",
        "learner.threads=1",
    ]
    return subprocess.Popen(cmd, stdout=open(out / f"{name}.log", "w"), stderr=subprocess.STDOUT, env=env)


def official_times(log: Path) -> dict[str, float]:
    """Total, learn and evaluation seconds from the official run's [TIMING] lines."""
    text = log.read_text(errors="replace")
    total = re.findall(r"\[TIMING\] total wall ([\d.]+)s learn ([\d.]+)s eval ([\d.]+)s", text)
    if not total:
        raise SystemExit(f"{log}: the official run did not finish (no '[TIMING] total wall' line)")
    wall, learn, ev = (float(x) for x in total[-1])
    return {"wall_s": wall, "eval_s": ev, "learn_s": learn}


def mtrl_times(run: Path, wall: float) -> dict[str, float]:
    """Evaluation seconds from the run's TensorBoard (perf/eval_s), with the process wall-clock."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}).Reload()
    ev = sum(e.value for e in acc.Scalars("perf/eval_s")) if "perf/eval_s" in acc.Tags()["scalars"] else float("nan")
    return {"wall_s": wall, "eval_s": ev, "learn_s": wall - ev}


def report(out: Path) -> None:
    data = json.loads((out / "times.json").read_text())
    off, mt, n = data["official"], data["mtrl"], data["updates"]
    print(
        f"\nMiniGrid MT3 {data['arch']}, {n} updates of 6000 transitions + {n + 1} evaluations of 16 episodes x 3 tasks, "
        "one core each, side by side"
        + (", both cores busy throughout" if data.get("load") else " (the later one alone once the other finished)")
        + "\n"
    )
    print("| | official | mtrl | mtrl/official |")
    print("|---|---|---|---|")
    for key, label in (("wall_s", "whole run (s)"), ("learn_s", "collection + fit (s)"), ("eval_s", "evaluation (s)")):
        print(f"| {label} | {off[key]:.0f} | {mt[key]:.0f} | {mt[key] / off[key]:.2f}x |")
    print(
        f"| per update, all in (s) | {off['wall_s'] / n:.1f} | {mt['wall_s'] / n:.1f} | {mt['wall_s'] / off['wall_s']:.2f}x |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench_protocol"), help="logs, the mtrl run and times.json")
    p.add_argument("--updates", type=int, default=100, help="updates (epochs) per run; 100 is the protocol")
    p.add_argument("--arch", choices=["moore", "moe"], default="moore", help="the network of both runs")
    p.add_argument("--seed", type=int, default=0, help="mtrl's seed (the official code does not seed)")
    p.add_argument("--report-only", action="store_true", help="print the table of a finished benchmark")
    args = p.parse_args()
    if not args.report_only:
        if "MOORE_OFFICIAL_DIR" not in os.environ:
            p.error("set MOORE_OFFICIAL_DIR to the official code's directory (docs/reproducing-moore.md)")
        args.out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        official, mtrl = (
            start_official(args.out, args.updates, args.arch),
            start_mtrl(args.out, args.updates, args.arch, args.seed),
        )
        ends: dict[str, float] = {}
        load: subprocess.Popen | None = None
        while len(ends) < 2:
            for name, proc in (("official", official), ("mtrl", mtrl)):
                if name not in ends and proc.poll() is not None:
                    ends[name] = time.time() - t0
                    print(f"{name} finished after {ends[name] / 60:.1f} min (exit {proc.returncode})", flush=True)
                    if len(ends) == 1:  # keep its core as busy as it was until the other finishes
                        shutil.rmtree(args.out / "load_run", ignore_errors=True)
                        load = start_mtrl(args.out, args.updates, args.arch, args.seed + 1, "load_run")
            time.sleep(5)
        if load is not None:
            load.kill()
        data = {
            "updates": args.updates,
            "arch": args.arch,
            "load": load is not None,
            "official": official_times(args.out / "official.stdout.log"),
            "mtrl": mtrl_times(args.out / "mtrl_run", ends["mtrl"]),
        }
        (args.out / "times.json").write_text(json.dumps(data, indent=2))
    report(args.out)


if __name__ == "__main__":
    main()
