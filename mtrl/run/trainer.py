"""The training loop: `train` runs a `Training` (mtrl.run.training) iteration by iteration, with
evaluations and checkpoints on schedule, and stops gracefully on a signal."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from mtrl.config import Config
from mtrl.errors import MtrlError
from mtrl.run.training import Training, policy_spec, resolve_device

__all__ = ["GracefulStop", "policy_spec", "resolve_device", "save_on_stop", "train"]


def train(cfg: Config) -> Path:
    """Train as `cfg` says; returns the run directory (config, TensorBoard, checkpoints, eval.json)."""
    run = Training(cfg)
    stop = GracefulStop()
    try:
        run.evaluate_on_schedule()
        while run.env_steps < cfg.train.total_steps:
            run.iterate()
            run.evaluate_on_schedule()
            if run.iteration % cfg.train.checkpoint_every == 0:
                run.checkpoint()
            if stop.requested:  # at an iteration boundary, so that the resume is exact
                raise KeyboardInterrupt
        run.finish()
    except KeyboardInterrupt:
        save_on_stop(run, "interrupted")
        raise
    except Exception:  # the error itself is shown by the caller (one line from `mtrl train`)
        save_on_stop(run, "stopped on an error")
        raise
    finally:
        stop.close()
        run.close()
    return run.run_dir


def save_on_stop(run: Training, why: str) -> None:
    """The last checkpoint when training stops early (Ctrl-C, a stop signal, an error), from the
    last iteration boundary: at a boundary, as is; while collecting, the state the boundary
    left (the policy and optimiser untouched yet, the RNG streams put back, the envs' episodes
    started afresh on resume); in the middle of an update or of a checkpoint write, nothing:
    the newest checkpoint on disk stays the last good state."""
    run.logger.bar.close()
    resume = f"resume with resume={run.run_dir}"
    if run.writing:
        print(
            f"\nmtrl: {why} during a checkpoint write; the earlier checkpoints are intact ({resume})",
            file=sys.stderr,
        )
        return
    if run.phase == "update":
        kept = (
            f"the checkpoint of iteration {run.last_saved} is the last good state ({resume})"
            if run.last_saved >= 0
            else "there is no checkpoint yet"
        )
        print(f"\nmtrl: {why} in the middle of an update, which is not saved; {kept}", file=sys.stderr)
        return
    if run.last_saved == run.iteration:
        return
    if run.phase == "collect" and run.rng_at_boundary is not None:
        torch.set_rng_state(run.rng_at_boundary[0])
        run.gen.set_state(run.rng_at_boundary[1])
    try:
        path = run.checkpoint(collector=run.phase == "boundary")
    except (MtrlError, OSError) as exc:  # never hide the stop's own cause behind this one
        print(f"\nmtrl: {why}, and the last checkpoint could not be written: {exc}", file=sys.stderr)
        return
    print(f"\nmtrl: {why}; saved {path} ({resume})", file=sys.stderr)


class GracefulStop:
    """While training: the first SIGINT or SIGTERM asks the loop to stop at the end of the
    current iteration (`requested`), so the checkpoint it saves is at an iteration boundary and
    the resume is exact; a second one stops at once. Signal handlers live in the main thread
    only, so elsewhere (a training started from a thread) signals keep their usual effect."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nmtrl: stopping after this iteration, with a checkpoint (interrupt again to stop at once)",
            file=sys.stderr,
        )

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
