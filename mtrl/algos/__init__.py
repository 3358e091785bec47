"""Learning algorithms: PPO, GRPO and MT-GRPO, each a pure loss plus a small update step."""

from __future__ import annotations

import dataclasses

import torch


class TensorBatch:
    """Mixin for a dataclass of equal-length tensors with a `task_id` field: length and row indexing."""

    task_id: torch.Tensor

    def __len__(self) -> int:
        return len(self.task_id)

    def index(self, idx: torch.Tensor):  # noqa: ANN201 - returns the same dataclass
        """The rows `idx` of every field, as a batch of the same type."""
        return type(self)(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))
