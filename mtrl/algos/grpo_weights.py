"""GRPO's task weights z: uniform and fixed (`grpo`), or MT-GRPO's improvement-aware weights
(`mt_grpo`; "Multi-Task GRPO: Reliable LLM Reasoning Across Tasks", code rsshyam/MT-GRPO;
docs/algorithms/grpo.md, "MT-GRPO task weights"). The algorithm class picks one
(`GRPOAlgorithm.weighting`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mtrl.algos.grpo import GroupBatch, task_surrogates
from mtrl.config import MTGRPOConfig, SurrogateConfig
from mtrl.data.batch import Episodes
from mtrl.data.reduce import segment_mean

if TYPE_CHECKING:
    from mtrl.nn.policy import ActorCritic


def iwu_gradient(z: torch.Tensor, improvement: torch.Tensor, score: torch.Tensor, lam: float) -> torch.Tensor:
    """g = z * (s - z.s) with s = I + lambda * J: the gradient of z.s with respect to xi when
    z = softmax(xi). Descending it moves weight to the tasks that score and improve least."""
    s = improvement + lam * score
    return z * (s - (z * s).sum())


class UniformTaskWeights:
    """Plain GRPO's task weights: 1/K each, never moved (the interface of `TaskWeights`)."""

    def __init__(self, num_tasks: int, cfg: MTGRPOConfig) -> None:
        self.k = num_tasks

    def z(self) -> torch.Tensor:
        return torch.full((self.k,), 1.0 / self.k)

    def shown(self) -> np.ndarray | None:
        """The weights a curriculum may follow (worst_task): none, they are uniform."""
        return None

    def before_update(self, policy: ActorCritic, batch: GroupBatch, cfg: SurrogateConfig) -> None:
        pass

    def after_update(
        self, policy: ActorCritic, batch: GroupBatch, cfg: SurrogateConfig, episodes: Episodes, kind: str
    ) -> tuple[bool, dict[str, torch.Tensor]]:
        return True, {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass  # nothing to restore (a checkpoint of an earlier version holds unused MT-GRPO weights)


class TaskWeights:
    """z = softmax(xi), with xi updated by the improvement-aware rule through AdamW (the MT-GRPO
    code's optimiser, torch's default weight decay)."""

    def __init__(self, num_tasks: int, cfg: MTGRPOConfig) -> None:
        self.lam = cfg.lam
        self.xi = torch.zeros(num_tasks, requires_grad=True)
        self.optimizer = torch.optim.AdamW([self.xi], lr=cfg.lr)
        self.score = torch.zeros(num_tasks)  # J_k, the last measured success rate or normalised return
        self.ret_range = torch.tensor([[np.inf, -np.inf]] * num_tasks)  # running (min, max) return per task
        self._before = torch.zeros(num_tasks)  # each task's surrogate before the current update

    def z(self) -> torch.Tensor:
        return torch.softmax(self.xi.detach(), 0)

    def shown(self) -> np.ndarray | None:
        """z, for a curriculum that follows it (worst_task)."""
        return self.z().numpy()

    def before_update(self, policy: ActorCritic, batch: GroupBatch, cfg: SurrogateConfig) -> None:
        """Each task's surrogate on the batch before the update, for the improvement I_k."""
        self._before = task_surrogates(policy, batch, cfg, len(self.score))

    def after_update(
        self, policy: ActorCritic, batch: GroupBatch, cfg: SurrogateConfig, episodes: Episodes, kind: str
    ) -> tuple[bool, dict[str, torch.Tensor]]:
        """I_k (the change of task k's surrogate on this batch caused by the update), J_k from the
        episodes, then the IWU step; returns (whether it stepped, the per-task values to log)."""
        improvement = (task_surrogates(policy, batch, cfg, len(self.score)) - self._before).cpu()
        self.measure(episodes, kind)
        return self.step(improvement), {"improvement": improvement, "score": self.score}

    def measure(self, episodes: Episodes, kind: str) -> torch.Tensor:
        """Update J_k from this iteration's episodes (tasks without episodes keep their last J)."""
        k = len(self.score)
        task = torch.as_tensor(episodes.task_id)
        value = torch.as_tensor(episodes.success if kind == "success" else episodes.ret, dtype=torch.float32)
        if kind == "return":  # normalise each task's return by the range seen so far
            lo = torch.full((k,), np.inf).scatter_reduce(0, task, value, "amin")
            hi = torch.full((k,), -np.inf).scatter_reduce(0, task, value, "amax")
            self.ret_range = torch.stack(
                [torch.minimum(self.ret_range[:, 0], lo), torch.maximum(self.ret_range[:, 1], hi)], 1
            )
            value = (value - self.ret_range[task, 0]) / (self.ret_range[task, 1] - self.ret_range[task, 0]).clamp(
                min=1e-8
            )
        mean, counts = segment_mean(value, task, k)
        self.score = torch.where(counts > 0, mean, self.score)
        return self.score

    def step(self, improvement: torch.Tensor) -> bool:
        """One AdamW step on xi along the IWU gradient with the current J; False (no step) when
        the gradient is not finite."""
        grad = iwu_gradient(self.z(), improvement.float(), self.score, self.lam)
        if not bool(torch.isfinite(grad).all()):
            return False
        self.xi.grad = grad
        self.optimizer.step()
        return True

    def state_dict(self) -> dict:
        return {
            "xi": self.xi.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "score": self.score,
            "ret_range": self.ret_range,
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.xi.copy_(state["xi"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.score, self.ret_range = state["score"], state["ret_range"]
