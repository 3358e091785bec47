"""Learning algorithms: PPO, GRPO, MT-GRPO and SAC, each pure losses plus a small update step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from mtrl.batch import Episodes


@dataclass
class Iteration:
    """What one training iteration of any algorithm did: for the trainer's step count, logs,
    fault counters and curriculum."""

    env_steps: int
    episodes: Episodes
    losses: dict[str, float]
    env_errors: int
    scalars: dict[str, float]  # extra TensorBoard scalars, by full tag
    task_steps: np.ndarray  # [K] env steps per task
    task_abs_adv: np.ndarray  # [K] mean |advantage| per task before normalisation (NaN: no steps)


class TensorBatch:
    """Mixin for a dataclass of equal-length tensors with a `task_id` field: length and row indexing."""

    task_id: torch.Tensor

    def __len__(self) -> int:
        return len(self.task_id)

    def index(self, idx: torch.Tensor):  # noqa: ANN201 - returns the same dataclass
        """The rows `idx` of every field, as a batch of the same type."""
        return type(self)(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))
