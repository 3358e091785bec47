"""The data that flows from rollout workers to the learner: time-major numpy fragments."""

from __future__ import annotations

from dataclasses import dataclass, fields

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
    """T steps of N env slots, time-major [T, N, ...].

    `valid` is False for the extra reset steps of gymnasium's NEXT_STEP autoreset, which are not
    transitions. `bootstrap` holds V(final observation) where an episode was truncated, so GAE can
    bootstrap through time limits but not through terminations.
    """

    obs: np.ndarray  # [T, N, *obs_shape], the env's dtype (uint8 images stay uint8)
    task_id: np.ndarray  # [T, N] int64
    actions: np.ndarray  # [T, N, *act_shape]
    logp: np.ndarray  # [T, N] float32, behaviour log-probabilities
    values: np.ndarray  # [T, N] float32
    rewards: np.ndarray  # [T, N] float32
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    valid: np.ndarray  # [T, N] bool
    bootstrap: np.ndarray  # [T, N] float32
    last_value: np.ndarray  # [N] float32, V(obs after the last step)
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
        out = {}
        for f in fields(Fragment):
            if f.name == "episodes":
                out[f.name] = Episodes.concat([p.episodes for p in parts])
            else:
                axis = 0 if f.name in ("last_value", "env_errors") else 1
                out[f.name] = np.concatenate([getattr(p, f.name) for p in parts], axis=axis)
        return Fragment(**out)
