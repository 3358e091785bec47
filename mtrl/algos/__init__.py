"""Learning algorithms: PPO, GRPO, MT-GRPO and SAC, each pure losses plus a small update step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtrl.batch import Episodes
from mtrl.errors import MtrlError


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


def actor_parameters(policy: nn.Module) -> list[nn.Parameter]:
    """Every parameter but the critic's: what GRPO trains, and PPO's policy optimiser when the
    critic is fitted separately."""
    return [p for name, p in policy.named_parameters() if not name.startswith("critic.")]


class NonFiniteGuard:
    """Optimiser steps that never let a NaN or inf reach the parameters.

    A step whose loss or gradient norm is not finite is skipped (the gradients are dropped) and
    counted (`skipped`, logged as faults/nonfinite_updates); `limit` skipped steps in a row stop
    training with a message, since by then the run is diverging rather than hitting one bad batch."""

    def __init__(self, limit: int = 10) -> None:
        self.limit, self.skipped, self.streak = limit, 0, 0

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.Tensor],
             max_grad_norm: float | None = None) -> float | None:  # fmt: skip
        """zero_grad, backward, clip to `max_grad_norm` (None: no clip) and step; returns the gradient
        norm, or None when the step was skipped."""
        optimizer.zero_grad(set_to_none=True)
        if bool(torch.isfinite(loss)):
            loss.backward()
            norm = nn.utils.clip_grad_norm_(params, float("inf") if max_grad_norm is None else max_grad_norm)
            if bool(torch.isfinite(norm)):
                optimizer.step()
                self.streak = 0
                return float(norm)
            optimizer.zero_grad(set_to_none=True)
        self.skip()
        return None

    def skip(self) -> None:
        """Count one skipped step; stop training after `limit` in a row."""
        self.skipped += 1
        self.streak += 1
        if self.streak >= self.limit:
            raise MtrlError(f"{self.streak} optimiser steps in a row had a non-finite loss or gradient (training diverged; "
                            "lower the learning rate, or raise train.max_nonfinite_updates); none of them reached the "
                            "parameters")  # fmt: skip
