"""The training loop: `train` runs a `Training` (mtrl.run.training) iteration by iteration, with
evaluations and checkpoints on schedule, and stops gracefully on a signal."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mtrl.config import Config
from mtrl.run.training import Training, policy_spec, resolve_device

__all__ = ["GracefulStop", "policy_spec", "resolve_device", "train"]


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
        run.interrupted()
        raise
    finally:
        stop.close()
        run.close()
    return run.run_dir


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
