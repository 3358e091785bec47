"""Env fault isolation: an env that raises or returns non-finite values is rebuilt, not fatal.

A long multi-task run steps thousands of episodes of third-party simulators; one bad step (a
MuJoCo instability, a plug-in bug) must not cost the run. `GuardedEnv` catches it, rebuilds the
env, and reports the step as a truncation flagged `info["env_error"] = True`; the collector then
drops that partial episode. An env that keeps failing right after being rebuilt is a real bug and
raises `EnvError` naming the task.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.errors import EnvError

MAX_CONSECUTIVE_FAILURES = 3


def _check_finite(obs: Any, reward: Any = 0.0) -> None:
    arr = np.asarray(obs)
    if (arr.dtype.kind == "f" and not np.isfinite(arr).all()) or not np.isfinite(reward):
        raise FloatingPointError(f"non-finite {'reward' if np.isfinite(arr).all() else 'observation'} from the env")


class GuardedEnv(gym.Wrapper):
    """Rebuild the wrapped env (with `make(seed)`) when it raises or returns NaN/inf."""

    def __init__(self, make: Callable[[int], gym.Env], seed: int, label: str) -> None:
        super().__init__(make(seed))
        self._make, self._seed, self._label = make, seed, label
        self.errors = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        failures = 0
        while True:
            try:
                obs, info = self.env.reset(seed=seed, options=options)
                _check_finite(obs)
                return obs, info
            except Exception as exc:  # noqa: BLE001 - any env failure is isolated, then bounded below
                failures += 1
                self._fail(exc, failures, "reset")
                seed = self._next_seed()

    def step(self, action: Any):
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
            _check_finite(obs, reward)
            return obs, reward, terminated, truncated, info
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, 0, "step")
            obs, info = self.reset(seed=self._next_seed())
            return obs, 0.0, False, True, {**info, "env_error": True}

    def _fail(self, exc: Exception, failures: int, where: str) -> None:
        """Count the error, raise if the env keeps failing, else rebuild it."""
        self.errors += 1
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise EnvError(
                f"{self._label}: env {where} failed {failures} times in a row after rebuilding "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if self.errors == 1:  # a recovery is always said: once per env (a rollout worker's reaches the console via Ray)
            first = (str(exc).strip().splitlines() or [""])[0]
            print(
                f"mtrl: warning: {self._label}: env {where} raised {type(exc).__name__}: {first}; rebuilt it and "
                "dropped its episode (said once per env; faults/env_errors counts every failure)",
                file=sys.stderr,
            )
        try:
            self.env.close()
        except Exception:  # noqa: BLE001 - a broken env may fail to close; it is discarded anyway
            pass
        self.env = self._make(self._next_seed())

    def _next_seed(self) -> int:
        """A fresh, reproducible seed for the rebuilt env (the same seed could repeat the crash)."""
        return int(np.random.SeedSequence([self._seed, self.errors]).generate_state(1)[0])
