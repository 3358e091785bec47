"""`mtrl sweep`: a grid of methods x seeds, each run a Ray task with its own CPU reservation.

Every run is `mtrl train CONFIG seed=S run_dir=OUT/<method>/s<S>` in a subprocess of a Ray task
that reserves `cpus_per_run` CPUs, so one command fills a laptop (the embedded local Ray) or a
cluster (`address`). A run with an eval.json is finished and skipped; one with checkpoints is
resumed from its newest; a run whose process dies (a kill, an OOM, a lost node) is started again
from its checkpoint, up to `retries` times, and the retries are counted in OUT/sweep.json.

Each run collects in-process (`rollout.workers=0`) on its reserved CPUs (`learner.threads`).
The training process is tied to its Ray worker: if the worker dies it gets SIGINT and saves a
checkpoint, and it holds a lock on its run directory so that no second process trains it at the
same time. On a cluster, OUT must be on a filesystem every node sees, at the same path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mtrl.errors import MtrlError
from mtrl.run.grid import Run, parse_methods, parse_seeds, train_command
from mtrl.run.lock import FD_ENV, RunDirBusy, RunLock

LOCK_WAIT_S = 300  # how long a run waits for a previous process on its directory to exit
STOP_WAIT_S = 120  # how long an interrupted run may take to save its checkpoint and exit
RC_USAGE, RC_BUSY = 2, 75  # mtrl's exit code for bad input; "run directory locked by another process"


PARENT_ENV = "MTRL_SWEEP_PARENT"


def bind_to_parent() -> None:
    """Called first thing by `mtrl`: a training process a sweep started gets SIGINT (so it saves
    a checkpoint and exits) when its Ray worker dies. Linux only; elsewhere the run outlives a
    dead worker, and the lock on its run directory still keeps a second process off it."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the worker died before the prctl
        os.kill(os.getpid(), signal.SIGINT)


def run_task(cmd: list[str], run_dir: str, cpus: int) -> tuple[int, str, float]:
    """The body of a run's Ray task: lock the run directory, run `cmd`; returns (its exit code,
    the Ray node's id, the seconds it ran; a task's time queued for a CPU is not counted)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    try:  # a previous process (e.g. one saving its checkpoint after a kill) may still hold it
        lock = RunLock.acquire(path, wait_s=LOCK_WAIT_S)
    except RunDirBusy:
        return RC_BUSY, node, 0.0
    with lock:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(cpus),
            "MKL_NUM_THREADS": str(cpus),
            PARENT_ENV: str(os.getpid()),
            FD_ENV: str(lock.fd),
        }
        with open(path / "train.log", "a", encoding="utf-8") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            # the child inherits the locked descriptor and takes it as its own lock (mtrl.run.lock), so
            # the lock lasts as long as the training process and no other process can slip in between
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(lock.fd,))
            try:
                while True:  # short waits: a cancel's KeyboardInterrupt only lands between Python bytecodes
                    try:
                        return proc.wait(timeout=1.0), node, time.monotonic() - start
                    except subprocess.TimeoutExpired:
                        pass
            except KeyboardInterrupt:  # ray.cancel() from the sweep: the run saves a checkpoint and exits
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise


def _last_error(run_dir: Path) -> str:
    """The last `mtrl: error:` line (or last line) of a run's log, for the summary."""
    try:
        lines = (run_dir / "train.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("mtrl: error:")]
    return (errors or lines or [""])[-1][:300]


class Sweep:
    """Plans the grid, submits its runs as Ray tasks, retries dead ones, and keeps OUT/sweep.json."""

    def __init__(
        self,
        methods: dict[str, tuple[str, list[str]]],
        seeds: list[int],
        out: Path,
        overrides: list[str],
        cpus_per_run: int = 1,
        retries: int = 2,
        imports: list[str] | None = None,
    ) -> None:
        """`methods`: name -> (config path, the method's own overrides); `imports`: plug-in modules
        every run imports (`mtrl sweep --import`)."""
        self.imports = [str(Path(m).resolve()) if m.endswith(".py") else m for m in imports or []]
        self.out, self.overrides, self.cpus, self.retries = out, overrides, cpus_per_run, retries
        self.state_path = out / "sweep.json"
        old = self._load_state()
        # seed-major: with fewer CPUs than runs, whole seeds of every method finish first
        self.runs = [
            Run(m, c, s, out / m / f"s{s}", list(ov), retries=old.get(f"{m}/s{s}", {}).get("retries", 0))
            for s in seeds
            for m, (c, ov) in methods.items()
        ]

    def _load_state(self) -> dict[str, dict]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8")).get("runs", {})
        except (OSError, ValueError, AttributeError):
            return {}

    def save_state(self) -> None:
        """Write OUT/sweep.json: this sweep's runs over what is there (another sweep into the same
        OUT, say over other seeds, keeps its entries)."""
        runs = self._load_state()
        runs.update(
            {
                r.name: {
                    "status": r.status,
                    "retries": r.retries,
                    "minutes": r.minutes,
                    "node": r.node,
                    "note": r.note,
                    "config": r.config,
                    "overrides": r.overrides,
                    "run_dir": str(r.run_dir),
                }
                for r in self.runs
            }
        )
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runs": runs, "overrides": self.overrides}, indent=2), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def run(self, ray: Any, bar: Any = None) -> list[Run]:
        """Run every unfinished cell; returns the runs (status done, skipped or failed)."""
        task = ray.remote(num_cpus=self.cpus, max_retries=0)(run_task)

        def submit(r: Run) -> None:
            r.pending = task.remote(
                train_command(r, self.overrides, self.cpus, self.imports), str(r.run_dir), self.cpus
            )

        for r in self.runs:
            if (r.run_dir / "eval.json").is_file():
                r.status, r.note = "skipped", "finished before"
                if bar is not None:
                    bar.update(1)
            else:
                submit(r)
        if bar is not None:
            bar.set_postfix_str(f"{sum(r.status == 'skipped' for r in self.runs)} finished before", refresh=True)
        self.save_state()
        try:
            while any(r.pending is not None for r in self.runs):
                live = {r.pending: r for r in self.runs if r.pending is not None}
                ready, _ = ray.wait(list(live), num_returns=1, timeout=1.0)  # returns often: Ctrl-C is seen at once
                if not ready:
                    continue
                r = live[ready[0]]
                r.pending = None
                if self._finished(ray, r, ready[0]):
                    submit(r)
                if r.pending is None and bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{r.name} {r.status}", refresh=True)
                self.save_state()
        except KeyboardInterrupt:
            # a cancel raises KeyboardInterrupt inside each run's task, which passes SIGINT on to its
            # training process (it saves a checkpoint); Ray would SIGKILL them at shutdown
            pending = [r.pending for r in self.runs if r.pending is not None]
            for ref in pending:
                ray.cancel(ref)
            print(
                f"\nmtrl: stopping {len(pending)} unfinished run(s); the running ones save a checkpoint first",
                file=sys.stderr,
            )
            ray.wait(pending, num_returns=len(pending), timeout=STOP_WAIT_S + 10)
            self.save_state()
            raise
        return self.runs

    def _finished(self, ray: Any, r: Run, ref: Any) -> bool:
        """Record how run `r`'s task `ref` ended (done, or failed for good); True when it died in a
        way worth a retry (a signal, a crash, a lost worker), to start again from its checkpoint."""
        rc: int | None = None
        try:
            rc, r.node, seconds = ray.get(ref)
            r.minutes = (r.minutes or 0.0) + seconds / 60  # training time, over its retries
        except ray.exceptions.RayError as exc:  # the worker or its node died
            r.note = f"Ray task lost ({type(exc).__name__})"
        if rc == 0 and (r.run_dir / "eval.json").is_file():
            r.status, r.note = "done", ""
            return False
        if rc in (RC_USAGE, RC_BUSY) or r.retries >= self.retries:
            r.status = "failed"
            busy = "run directory locked by another process"
            r.note = busy if rc == RC_BUSY else _last_error(r.run_dir) or r.note or f"exit code {rc}"
            return False
        r.retries += 1
        r.note = f"exit code {rc}; retry {r.retries} of {self.retries}" if rc is not None else r.note
        print(f"mtrl: sweep run {r.name} died ({r.note}); resuming it from its checkpoint", file=sys.stderr)
        return True


def _check_options(args: Any) -> None:
    """One line for a numeric option out of range."""
    for flag, value in (
        ("--cpus-per-run", args.cpus_per_run),
        ("--reps", args.reps),
        ("--num-cpus", args.num_cpus or 1),
    ):
        if value < 1:
            raise MtrlError(f"{flag} must be >= 1, got {value}")
    if args.retries < 0:
        raise MtrlError(f"--retries must be >= 0, got {args.retries}")


def main(args: Any) -> None:
    """`mtrl sweep` (argparse namespace from `mtrl.cli`): validate, run on Ray, print the runs and
    the comparison, and write OUT/report/."""
    from tqdm import tqdm

    from mtrl.collect.ray import init_ray
    from mtrl.config import load_config
    from mtrl.config.plugins import import_plugins
    from mtrl.config.schema import RayConfig
    from mtrl.run.evaluation import report_from_runs

    _check_options(args)
    import_plugins(args.imports)  # before the configs below name what they register
    seeds, methods = parse_seeds(args.seeds), parse_methods(args.methods)
    for config, own in methods.values():  # the overrides as every run will see them
        load_config(
            config,
            ["seed=0", *own, *args.overrides, "rollout.workers=0", f"learner.threads={args.cpus_per_run}"],
            args.imports,
        )
    ray, started = init_ray(RayConfig(address=args.address, num_cpus=args.num_cpus), args.cpus_per_run)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < args.cpus_per_run:
            raise MtrlError(f"--cpus-per-run={args.cpus_per_run} but the Ray cluster has {cpus} CPUs")
        sweep = Sweep(methods, seeds, args.out, args.overrides, args.cpus_per_run, args.retries, args.imports)
        print(
            f"mtrl: sweep of {len(methods)} method(s) x {len(seeds)} seed(s) = {len(sweep.runs)} runs into {args.out}, "
            f"{args.cpus_per_run} CPU(s) each on {cpus} CPUs ({cpus // args.cpus_per_run} at once)"
        )
        with tqdm(total=len(sweep.runs), unit="run", desc="sweep", dynamic_ncols=True, file=sys.stderr) as bar:
            runs = sweep.run(ray, bar)
    except KeyboardInterrupt:
        print(
            "\nmtrl: sweep interrupted; the running runs saved checkpoints; run the same command to continue",
            file=sys.stderr,
        )
        raise
    finally:
        if started:
            ray.shutdown()
    print(f"{'run':<28} {'status':<8} {'minutes':>8} {'retries':>7}  note")
    for r in runs:
        minutes = "-" if r.minutes is None else f"{r.minutes:.1f}"
        print(f"{r.name:<28} {r.status:<8} {minutes:>8} {r.retries:>7}  {r.note}")
    report = report_from_runs(
        [(r.method, r.run_dir) for r in runs if r.status in ("done", "skipped")], args.metric, args.reps
    )
    if report is not None:
        print("\n" + report.markdown())
        print("mtrl: wrote " + ", ".join(str(p) for p in report.write(args.out / "report")))
    failed = [r.name for r in runs if r.status == "failed"]
    if failed:
        raise MtrlError(f"{len(failed)} of {len(runs)} runs failed ({', '.join(failed)}); see their train.log")
