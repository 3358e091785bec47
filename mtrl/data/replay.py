"""Per-task replay for multi-task SAC (docs/algorithms/sac.md, "Replay"): one ring buffer per task, all
tasks in shared [K, C, ...] numpy arrays, so inserting and sampling are vectorised over tasks.

The memory is allocated up front and bounded: a config whose buffers would not fit the budget
is refused before training starts, naming the largest capacity that fits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtrl.data.reduce import rank_within
from mtrl.errors import ConfigError


def replay_bytes(num_tasks: int, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype, act_dim: int) -> int:
    """Bytes the buffers take: obs and next obs, float32 actions and rewards, bool terminations."""
    per = 2 * math.prod(obs_shape) * np.dtype(obs_dtype).itemsize + 4 * act_dim + 4 + 1
    return num_tasks * capacity * per


class TaskReplay:
    """`capacity` transitions per task; the oldest of a task are overwritten first."""

    def __init__(
        self,
        num_tasks: int,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        act_dim: int,
        max_bytes: int,
    ) -> None:
        need = replay_bytes(num_tasks, capacity, obs_shape, obs_dtype, act_dim)
        if need > max_bytes:
            fits = max_bytes // replay_bytes(num_tasks, 1, obs_shape, obs_dtype, act_dim)
            raise ConfigError(
                f"sac.replay_size={capacity} per task x {num_tasks} tasks needs {need / 2**30:.2f} GiB, "
                f"over sac.replay_memory_gb={max_bytes / 2**30:g}; use sac.replay_size <= {fits} or "
                "raise the budget"
            )
        k, c = num_tasks, capacity
        self.capacity = c
        self.obs = np.zeros((k, c, *obs_shape), obs_dtype)
        self.next_obs = np.zeros((k, c, *obs_shape), obs_dtype)
        self.actions = np.zeros((k, c, act_dim), np.float32)
        self.rewards = np.zeros((k, c), np.float32)
        self.terminated = np.zeros((k, c), bool)
        self.ptr = np.zeros(k, np.int64)  # next write position per task
        self.size = np.zeros(k, np.int64)

    def add(
        self,
        task: np.ndarray,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
    ) -> None:
        """Append M transitions (flat arrays, any mix of tasks) in order."""
        k = len(self.ptr)
        counts = np.bincount(task, minlength=k)
        rank = rank_within(task)
        keep = rank >= (counts - self.capacity)[task]  # more than `capacity` at once: only the newest fit
        t, r = task[keep], rank[keep]
        pos = (self.ptr[t] + r) % self.capacity
        self.obs[t, pos], self.next_obs[t, pos] = obs[keep], next_obs[keep]
        self.actions[t, pos], self.rewards[t, pos], self.terminated[t, pos] = (
            actions[keep],
            rewards[keep],
            terminated[keep],
        )
        self.ptr = (self.ptr + counts) % self.capacity
        self.size = np.minimum(self.size + counts, self.capacity)

    def sample(self, batch_per_task: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`batch_per_task` uniform draws (with replacement) from every task that has data, as flat
        arrays with a `task_id` entry; tasks are in order, each a contiguous block."""
        tasks = np.flatnonzero(self.size > 0)
        idx = (rng.random((len(tasks), batch_per_task)) * self.size[tasks, None]).astype(np.int64)
        t = np.repeat(tasks, batch_per_task)
        i = idx.reshape(-1)
        return {
            "task_id": t,
            "obs": self.obs[t, i],
            "actions": self.actions[t, i],
            "rewards": self.rewards[t, i],
            "next_obs": self.next_obs[t, i],
            "terminated": self.terminated[t, i],
        }

    def __len__(self) -> int:
        return int(self.size.sum())

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The filled part of the buffers (up to the fullest task's size), as tensors."""
        m = int(self.size.max(initial=0))
        state = {f: torch.from_numpy(getattr(self, f)[:, :m].copy()) for f in self.FIELDS}
        return {**state, "ptr": torch.from_numpy(self.ptr.copy()), "size": torch.from_numpy(self.size.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        size = state["size"].numpy()
        if len(size) != len(self.size) or size.max(initial=0) > self.capacity:
            raise ValueError(
                f"saved replay holds {len(size)} tasks of up to {size.max(initial=0)} transitions; "
                f"this one has {len(self.size)} tasks of capacity {self.capacity}"
            )
        m = int(size.max(initial=0))
        for f in self.FIELDS:
            getattr(self, f)[:, :m] = state[f].numpy()
        self.ptr, self.size = state["ptr"].numpy().copy(), size.copy()
