"""What an algorithm asks the rollout workers for. An algorithm's `requests()` is a generator that
yields these and is sent back the collected data (`WorkerPool.serve`); it never touches the workers."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

COLLECTORS = ("fragments", "groups")  # the collector kinds a rollout worker can run


@dataclass(frozen=True)
class FragmentRequest:
    """One fragment of rollout.steps_per_env steps from every env slot (PPO, SAC), answered with
    a `mtrl.data.batch.Fragment`."""

    task_probs: np.ndarray | None = None  # a curriculum's task probabilities for the slots' next resets
    random_until: int = 0  # uniform random actions while fewer env steps than this have been collected (SAC's warm-up)


@dataclass(frozen=True)
class GroupRequest:
    """Groups g of `group_size` whole episodes of task tasks[g] from reset seed seeds[g] (GRPO),
    answered with the `mtrl.data.batch.Groups` that finished cleanly."""

    tasks: np.ndarray
    seeds: np.ndarray
    group_ids: np.ndarray
    group_size: int


Request = FragmentRequest | GroupRequest
# yields requests, is sent each one's data, and returns what the algorithm learns from
Requests = Generator[Request, Any, Any]
