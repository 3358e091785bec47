"""Critic-free GRPO for control (Shao et al. 2024, DeepSeekMath; docs/algorithms/grpo.md).

Every episode of a group runs the same task from the same reset seed; its outcome R (success or
undiscounted return) is compared with the group's: A = (R - mean_g R) / (std_g R + 1e-6), broadcast
to all of the episode's steps, and optimised with PPO's clipped surrogate and no value function.
Each task's loss is a per-task mean, weighted by the task weights (uniform for `grpo`, MT-GRPO's z
for `mt_grpo`), so a task of weight 0 sends no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtrl.algos.base import TensorBatch
from mtrl.algos.losses import LossTerms
from mtrl.config import GRPOConfig, SurrogateConfig
from mtrl.data.advantage import group_relative, task_normalize, zero_variance_groups
from mtrl.data.batch import Episodes, Groups
from mtrl.data.reduce import segment_mean
from mtrl.nn.network import aux_terms

if TYPE_CHECKING:
    from mtrl.nn.policy import ActorCritic


@dataclass
class GroupBatch(TensorBatch):
    """Flat training tensors of the kept groups on the learner's device."""

    obs: torch.Tensor
    task_id: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    advantages: torch.Tensor


def outcome_kind(cfg: GRPOConfig, reports_success: bool) -> str:
    """'success' or 'return': grpo.outcome with auto resolved for the suite."""
    if cfg.outcome == "auto":
        return "success" if reports_success else "return"
    return cfg.outcome


def outcomes(episodes: Episodes, kind: str) -> np.ndarray:
    """R per episode: success (0/1) or the undiscounted return."""
    return np.asarray(episodes.success if kind == "success" else episodes.ret, np.float64)


def group_table(groups: Groups, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group ids, their task, whether their outcomes all agree) for every group in `groups`."""
    ids, first = np.unique(groups.group, return_index=True)
    zero = np.isin(ids, zero_variance_groups(outcomes(groups.episodes, kind), groups.group))
    return ids, groups.episodes.task_id[first], zero


def select_groups(groups: Groups, keep_ids: np.ndarray) -> Groups:
    """The sub-batch of the groups whose id is in `keep_ids` (episodes renumbered)."""
    keep_ep = np.isin(groups.group, keep_ids)
    keep_step = keep_ep[groups.episode]
    new_index = np.cumsum(keep_ep) - 1
    e = groups.episodes
    return Groups(
        groups.obs[keep_step],
        groups.actions[keep_step],
        groups.logp[keep_step],
        new_index[groups.episode[keep_step]],
        groups.group[keep_ep],
        Episodes(e.task_id[keep_ep], e.ret[keep_ep], e.length[keep_ep], e.success[keep_ep]),
        groups.env_errors,
        groups.lost_steps,
    )


def make_group_batch(groups: Groups, kind: str, task_norm: bool, num_tasks: int, device: torch.device) -> GroupBatch:
    """Group-relative advantages per episode, broadcast to its steps (optionally normalised a
    second time per task, as AgentRL does)."""
    adv_ep = group_relative(torch.as_tensor(outcomes(groups.episodes, kind)), torch.as_tensor(groups.group))
    episode = torch.as_tensor(groups.episode)
    task = torch.as_tensor(groups.episodes.task_id)[episode].to(device)
    adv = adv_ep[episode].to(device)
    if task_norm:
        adv = task_normalize(adv, task, num_tasks)
    t = lambda x: torch.as_tensor(x).to(device)  # noqa: E731
    return GroupBatch(t(groups.obs), task, t(groups.actions), t(groups.logp), adv)


def surrogate(
    policy: ActorCritic, mb: GroupBatch, clip: float
) -> tuple[torch.Tensor, torch.distributions.Distribution]:
    """PPO's clipped surrogate per step, min(r A, clip(r) A) (to be maximised), and pi(.|s)."""
    dist = policy.distribution(mb.obs, mb.task_id)
    ratio = (dist.log_prob(mb.actions) - mb.logp).exp()
    return torch.min(ratio * mb.advantages, ratio.clamp(1 - clip, 1 + clip) * mb.advantages), dist


def grpo_terms(policy: ActorCritic, mb: GroupBatch, task_weights: torch.Tensor, cfg: SurrogateConfig) -> LossTerms:
    """Per step: the negated clipped surrogate and the entropy (weighed -ent_coef), over the task
    weights w: reduced over the samples, -sum_k w_k mean_k(surrogate) / sum_{k present} w_k -
    ent_coef * (the same of the entropy); per task, each task's share of it (`reduce_terms`)."""
    surr, dist = surrogate(policy, mb, cfg.clip)
    terms = {"policy": (1.0, -surr), "entropy": (-cfg.ent_coef, dist.entropy()), **aux_terms(policy.actor)}
    return LossTerms(terms, mb.task_id, task_weights=task_weights)


@torch.no_grad()
def task_surrogates(
    policy: ActorCritic, batch: GroupBatch, cfg: SurrogateConfig, num_tasks: int, chunk: int = 8192
) -> torch.Tensor:
    """Each task's mean clipped surrogate on the whole batch [K] (0 for a task with no steps)."""
    device = batch.task_id.device
    surr = [
        surrogate(policy, batch.index(torch.arange(start, min(start + chunk, len(batch)), device=device)), cfg.clip)[0]
        for start in range(0, len(batch), chunk)
    ]
    flat = torch.cat(surr).double() if surr else torch.zeros(0, dtype=torch.float64, device=device)
    return segment_mean(flat, batch.task_id, num_tasks)[0].float()
