"""The data that flows from rollout workers to the learner: time-major numpy fragments."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np


@dataclass
class Episodes:
    """Episodes that finished during a fragment: one entry per episode."""

    task_id: np.ndarray  # [E] int64
    ret: np.ndarray  # [E] float64, undiscounted return
    length: np.ndarray  # [E] int64
    success: np.ndarray  # [E] float32, 1 if any step reported success (NaN if the suite has none)

    @staticmethod
    def concat(parts: list[Episodes]) -> Episodes:
        return Episodes(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Episodes)))


@dataclass
class Fragment:
    """T steps of N env slots, time-major [T, N, ...], as the rollout workers produce them.

    `valid` is False for the extra reset steps of gymnasium's NEXT_STEP autoreset, which are not
    transitions. Workers run the actor only: values are computed by the learner in one batched
    pass, so the fragment carries the observations it needs for them besides `obs`: the final
    observation of every truncated episode (GAE bootstraps through time limits, not through
    terminations) and the observation after the last step.
    """

    obs: np.ndarray  # [T, N, *obs_shape], the env's dtype (uint8 images stay uint8)
    task_id: np.ndarray  # [T, N] int64
    actions: np.ndarray  # [T, N, *act_shape]
    logp: np.ndarray  # [T, N] float32, behaviour log-probabilities
    rewards: np.ndarray  # [T, N] float32
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    valid: np.ndarray  # [T, N] bool
    trunc_obs: np.ndarray  # [M, *obs_shape], final observation of each truncation
    trunc_idx: np.ndarray  # [M, 2] int64, its (t, slot)
    last_obs: np.ndarray  # [N, *obs_shape], the observation after the last step
    last_task_id: np.ndarray  # [N] int64
    episodes: Episodes
    env_errors: np.ndarray  # [N] int64, env failures (raise/NaN) per slot; their partial episodes are invalid

    @property
    def num_steps(self) -> int:
        """Real env steps in the fragment."""
        return int(self.valid.sum())

    @staticmethod
    def concat(parts: list[Fragment]) -> Fragment:
        """Join fragments of equal length along the env-slot axis."""
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [p.valid.shape[1] for p in parts[:-1]])
        out: dict[str, Any] = {}  # Fragment's fields by name: arrays, and the Episodes
        for f in fields(Fragment):
            if f.name == "episodes":
                out[f.name] = Episodes.concat([p.episodes for p in parts])
            elif f.name == "trunc_idx":  # slots are renumbered: part i's slot j becomes offsets[i] + j
                out[f.name] = np.concatenate([p.trunc_idx + [0, off] for p, off in zip(parts, offsets)], axis=0)
            else:
                axis = 0 if f.name in ("trunc_obs", "last_obs", "last_task_id", "env_errors") else 1
                out[f.name] = np.concatenate([getattr(p, f.name) for p in parts], axis=axis)
        return Fragment(**out)


@dataclass
class Groups:
    """Whole episodes in groups (GRPO): every episode of a group runs the same task from the same
    reset seed. Steps are flat and ordered episode by episode; `episode` indexes the per-episode
    arrays. Groups hit by an env failure are dropped by the worker (their outcomes are partial)."""

    obs: np.ndarray  # [S, *obs_shape], the env's dtype
    actions: np.ndarray  # [S, *act_shape]
    logp: np.ndarray  # [S] float32, behaviour log-probabilities
    episode: np.ndarray  # [S] int64, index into the episode arrays
    group: np.ndarray  # [E] int64, the group id the learner gave the episode's group
    episodes: Episodes  # [E] task, undiscounted return, length, success
    env_errors: np.ndarray  # [W] int64 per worker, env failures (their groups were dropped)
    lost_steps: np.ndarray  # [W] int64 per worker, env steps of the dropped groups

    @property
    def num_steps(self) -> int:
        """Env steps paid for, those of dropped groups included."""
        return len(self.episode) + int(self.lost_steps.sum())

    @staticmethod
    def concat(parts: list[Groups]) -> Groups:
        """Join the groups of several workers (episode indices are renumbered)."""
        offsets = np.cumsum([0] + [len(p.group) for p in parts[:-1]])
        return Groups(
            np.concatenate([p.obs for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.logp for p in parts]),
            np.concatenate([p.episode + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.group for p in parts]),
            Episodes.concat([p.episodes for p in parts]),
            np.concatenate([p.env_errors for p in parts]),
            np.concatenate([p.lost_steps for p in parts]),
        )
