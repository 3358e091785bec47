"""What every learning algorithm is to the trainer (the `Algorithm` protocol), and what they share:
the `Iteration` record, tensor batches, and optimiser steps that never let NaN reach the parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from mtrl.collect.requests import Requests
from mtrl.config import Config
from mtrl.data.batch import Episodes
from mtrl.env.suite import TaskSuite
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
    faults: dict[str, int] = dataclasses.field(default_factory=dict)  # new fault counts, e.g. aggregator_fallbacks


class Algorithm(Protocol):
    """A learning algorithm as the trainer drives it: each iteration the trainer lets the rollout
    workers answer `requests` (`WorkerPool.serve`), then calls `learn` on what they collected.
    Register a class with `mtrl.registry.register_algo` or the `mtrl.algos` entry-point group
    (docs/tutorials/add-an-algorithm.md)."""

    section: ClassVar[str | None]  # the config section it reads (cfg.<section>), shown by `mtrl algos`
    # "fragments" or "groups": which collector the rollout workers build before the first request,
    # so that env failures show at the start; requests are answered by their type alone
    collector: ClassVar[str]
    policy_kind: ClassVar[str]  # "actor_critic" or "sac": which networks `mtrl.nn.policy.build_policy` makes
    greedy_eval: ClassVar[bool]  # evaluate with the most likely (mean) action when train.eval_greedy is null

    def __init__(
        self, policy: nn.Module, cfg: Config, suite: TaskSuite, device: torch.device, guard: NonFiniteGuard
    ) -> None: ...

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise ConfigError for settings this algorithm cannot run with (called by load_config)."""

    def requests(self, env_steps: int, task_probs: np.ndarray | None, gen: torch.Generator) -> Requests:
        """A generator of this iteration's requests (`env_steps` collected so far; `task_probs`: the
        curriculum's, or None); it returns the data `learn` takes."""

    def learn(self, data: Any, gen: torch.Generator) -> Iteration:
        """Update on this iteration's data; what it did."""

    def set_progress(self, done: float) -> None:
        """The fraction of train.total_steps done, before each iteration (for schedules)."""

    def task_weights(self) -> np.ndarray | None:
        """The algorithm's own task weights [K] (MT-GRPO's z), for curricula that follow them."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TensorBatch:
    """Mixin for a dataclass of equal-length tensors with a `task_id` field: length and row indexing."""

    task_id: torch.Tensor
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # set by @dataclass on the subclass

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

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        params: Sequence[torch.Tensor],
        max_grad_norm: float | None = None,
    ) -> float | None:
        """zero_grad, backward, clip to `max_grad_norm` (None: no clip) and step; returns the gradient
        norm, or None when the step was skipped."""
        optimizer.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss)):
            self.skip()
            return None
        loss.backward()
        return self.finish(optimizer, params, max_grad_norm)

    def finish(
        self, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], max_grad_norm: float | None = None
    ) -> float | None:
        """The end of a step whose gradients are already in `params`: clip to `max_grad_norm` and
        step, or skip it (drop the gradients, count it) when their norm is not finite; returns the
        gradient norm, or None when skipped."""
        norm = nn.utils.clip_grad_norm_(params, float("inf") if max_grad_norm is None else max_grad_norm)
        if bool(torch.isfinite(norm)):
            optimizer.step()
            self.streak = 0
            return float(norm)
        optimizer.zero_grad(set_to_none=True)
        self.skip()
        return None

    def restore(self, skipped: int) -> None:
        """A resumed run's count of skipped steps so far (faults/nonfinite_updates in its checkpoint)."""
        self.skipped = skipped

    def skip(self) -> None:
        """Count one skipped step; stop training after `limit` in a row."""
        self.skipped += 1
        self.streak += 1
        if self.streak >= self.limit:
            raise MtrlError(
                f"{self.streak} optimiser steps in a row had a non-finite loss or gradient (training diverged; "
                "lower the learning rate, or raise train.max_nonfinite_updates); none of them reached the "
                "parameters"
            )


def checked_iteration(it: Any, name: str, num_tasks: int) -> Iteration:
    """An algorithm's `learn` result, checked at the boundary: an Iteration whose per-task arrays
    have one entry per task, or one line naming the algorithm and what was expected."""

    def bad(what: str) -> MtrlError:
        return MtrlError(
            f"algorithm '{name}': learn() returned {what}; expected a mtrl.algos.base.Iteration with "
            f"int env_steps and env_errors, Episodes, dict losses and scalars, and task_steps and "
            f"task_abs_adv of shape ({num_tasks},)"
        )

    if not isinstance(it, Iteration):
        raise bad(type(it).__name__)
    if not isinstance(it.episodes, Episodes) or not isinstance(it.losses, dict) or not isinstance(it.scalars, dict):
        raise bad(
            f"an Iteration with episodes {type(it.episodes).__name__}, losses {type(it.losses).__name__}, "
            f"scalars {type(it.scalars).__name__}"
        )
    for field in ("env_steps", "env_errors"):
        if isinstance(getattr(it, field), bool) or not isinstance(getattr(it, field), (int, np.integer)):
            raise bad(f"an Iteration with {field}={getattr(it, field)!r}")
    for field in ("task_steps", "task_abs_adv"):
        if np.shape(getattr(it, field)) != (num_tasks,):
            raise bad(f"an Iteration with {field} of shape {np.shape(getattr(it, field))}")
    return it
