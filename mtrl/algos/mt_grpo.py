"""Multi-Task GRPO: improvement-aware task weights and ratio-preserving group sampling
("Multi-Task GRPO: Reliable LLM Reasoning Across Tasks", code rsshyam/MT-GRPO; docs/algorithms/grpo.md,
"MT-GRPO task weights"). Plain `grpo` uses the same group gathering with uniform, fixed weights.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtrl.algos.base import Iteration, NonFiniteGuard, actor_parameters
from mtrl.algos.grpo import (
    group_table,
    grpo_terms,
    make_group_batch,
    outcome_kind,
    select_groups,
)
from mtrl.algos.grpo_weights import TaskWeights, UniformTaskWeights
from mtrl.algos.learner import MinibatchOptimizer
from mtrl.algos.multitask import TaskGradients, take_faults, with_task_state, without_task_state
from mtrl.collect.requests import GroupRequest, Requests
from mtrl.config import Config, MTGRPOConfig, PPOConfig
from mtrl.data.batch import Episodes, Groups
from mtrl.data.reduce import per_task_means, rank_within
from mtrl.env.suite import TaskSuite
from mtrl.errors import ConfigError

if TYPE_CHECKING:
    from mtrl.nn.policy import ActorCritic


def inflation(z: np.ndarray, rho: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """(m, z_hat): oversampling m_k = min(1 / (1 - rho_k), cap), and z_hat ~ z * m normalised, so
    that after dropping task k's expected fraction rho_k of zero-variance groups the kept groups
    still follow z (up to the cap)."""
    with np.errstate(divide="ignore"):
        m = np.minimum(1.0 / np.maximum(1.0 - rho, 0.0), cap)
    z_hat = z * m
    return m, z_hat / z_hat.sum()


@dataclass
class Gathered:
    """One iteration's groups: the kept ones for the update, and what it cost."""

    kept: Groups
    episodes: Episodes  # every episode run, kept or not (for logging and J)
    env_steps: int
    env_errors: int
    quota: np.ndarray  # [K] groups to keep per task
    generated: np.ndarray  # [K] groups generated per task
    zero: np.ndarray  # [K] of them with zero variance (dropped)


class GroupSampler:
    """How many groups of each task to generate and keep. Plain GRPO: B groups split evenly, one
    round. MT-GRPO's ratio-preserving sampler: quotas n ~ Multinomial(B, z), generation from the
    inflated z_hat, zero-variance groups dropped, deficits regenerated for up to N rounds, at most
    n_k groups kept per task."""

    def __init__(self, num_tasks: int, groups: int, ratio_preserving: bool, cfg: MTGRPOConfig) -> None:
        self.k, self.groups, self.rp, self.cfg = num_tasks, groups, ratio_preserving, cfg
        self.rho = np.zeros(num_tasks)  # EMA of each task's zero-variance group fraction

    def gather(
        self, z: np.ndarray, gen: torch.Generator, kind: str, group_size: int, task_probs: np.ndarray | None = None
    ) -> Generator[GroupRequest, Groups, Gathered]:
        """The sampling rounds, as a generator of `GroupRequest`s that is sent each round's groups
        and returns what was gathered. Plain GRPO with a curriculum draws the quotas from its
        `task_probs` instead of splitting evenly."""

        def draw(p: np.ndarray) -> np.ndarray:  # Multinomial(B, p) counts per task
            return np.bincount(
                torch.multinomial(torch.as_tensor(p), self.groups, True, generator=gen).numpy(), minlength=self.k
            )

        if self.rp:
            quota = draw(z)
            m, z_hat = inflation(z, self.rho, self.cfg.max_inflation)
            counts = draw(z_hat)
        elif task_probs is not None:
            quota = counts = draw(task_probs)
        else:
            quota = counts = np.bincount(np.arange(self.groups) % self.k, minlength=self.k)
        kept_parts, all_eps = [], []
        kept, generated, zero = np.zeros(self.k, np.int64), np.zeros(self.k, np.int64), np.zeros(self.k, np.int64)
        steps = errors = next_id = 0
        for _ in range(1 + (self.cfg.resample_rounds if self.rp else 0)):
            if counts.sum() == 0:
                break
            tasks = np.repeat(np.arange(self.k), counts)
            seeds = torch.randint(0, 2**31 - 1, (len(tasks),), generator=gen).numpy()
            groups = yield GroupRequest(tasks, seeds, next_id + np.arange(len(tasks)), group_size)
            next_id += len(tasks)
            steps, errors = steps + groups.num_steps, errors + int(groups.env_errors.sum())
            all_eps.append(groups.episodes)
            ids, g_task, g_zero = group_table(groups, kind)
            generated += np.bincount(g_task, minlength=self.k)
            zero += np.bincount(g_task[g_zero], minlength=self.k)
            ok_ids, ok_task = ids[~g_zero], g_task[~g_zero]
            room = (quota - kept)[ok_task]
            take = rank_within(ok_task) < room  # the first groups of each task, up to its quota
            kept += np.bincount(ok_task[take], minlength=self.k)
            kept_parts.append(select_groups(groups, ok_ids[take]))
            counts = np.ceil((quota - kept) * m).astype(np.int64) if self.rp else np.zeros(self.k, np.int64)
        seen = generated > 0
        decay = self.cfg.rho_ema
        self.rho[seen] = decay * self.rho[seen] + (1 - decay) * zero[seen] / generated[seen]
        return Gathered(Groups.concat(kept_parts), Episodes.concat(all_eps), steps, errors, quota, generated, zero)

    def state_dict(self) -> dict:
        return {"rho": torch.as_tensor(self.rho)}

    def load_state_dict(self, state: dict) -> None:
        self.rho = state["rho"].numpy().astype(np.float64)


class GRPOAlgorithm:
    """Critic-free GRPO on groups of whole episodes, uniform task weights. One iteration: gather
    groups through the rollout workers, drop the zero-variance ones,
    and update on the rest with uniform task weights (`MTGRPOAlgorithm`: MT-GRPO's weights z,
    moved by IWU after each update, where I_k is the change of task k's surrogate on this batch
    caused by the update). Its surrogate and optimiser settings are the grpo section's own."""

    section = "grpo"
    collector = "groups"
    policy_kind = "actor_critic"
    greedy_eval = False
    weighting: type[UniformTaskWeights] | type[TaskWeights] = UniformTaskWeights  # the task weights z
    ratio_preserving = False  # the group sampler: even quotas, one round (MT-GRPO: its ratio-preserving one)

    def __init__(
        self,
        policy: ActorCritic,
        cfg: Config,
        suite: TaskSuite,
        device: torch.device,
        guard: NonFiniteGuard | None = None,
    ) -> None:
        self.policy, self.cfg, self.tasks, self.device = policy, cfg, suite.tasks, device
        self.guard = guard or NonFiniteGuard()
        self.kind = outcome_kind(cfg.grpo, suite.reports_success)
        self.score_kind = "success" if suite.reports_success else "return"  # J_k: success rate where the suite has it
        self.grads = TaskGradients(policy.actor, cfg.learner, suite.tasks, self.guard, cfg.train.log_grad_every)
        self.learner = MinibatchOptimizer(actor_parameters(policy), cfg.grpo, self.guard, grads=self.grads)
        self.sampler = GroupSampler(len(self.tasks), cfg.grpo.groups, self.ratio_preserving, cfg.mt_grpo)
        self.weights = self.weighting(len(self.tasks), cfg.mt_grpo)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        defaults = PPOConfig()
        ignored = [
            f"ppo.{f.name}={getattr(cfg.ppo, f.name)}"
            for f in dataclasses.fields(PPOConfig)
            if getattr(cfg.ppo, f.name) != getattr(defaults, f.name)
        ]
        if ignored:  # e.g. a PPO config run with algo=grpo: said, not silently ignored
            print(
                f"mtrl: warning: algo={cfg.algo} reads nothing from ppo.* (its surrogate and optimiser settings "
                f"are grpo.*): {', '.join(ignored)} not used",
                file=sys.stderr,
            )
        if cfg.rollout.pipeline or cfg.env.backend != "gymnasium":
            raise ConfigError(
                f"algo={cfg.algo} resets every env with its group's seed, which needs env.backend=gymnasium "
                "and rollout.pipeline=false"
            )

    def requests(self, env_steps: int, task_probs: np.ndarray | None, gen: torch.Generator) -> Requests:
        z = self.weights.z().numpy()
        return (yield from self.sampler.gather(z, gen, self.kind, self.cfg.grpo.group_size, task_probs))

    def learn(self, got: Gathered, gen: torch.Generator) -> Iteration:
        k = len(self.tasks)
        z = self.weights.z()
        batch = make_group_batch(got.kept, self.kind, self.cfg.grpo.task_norm, k, self.device)
        self.weights.before_update(self.policy, batch, self.cfg.grpo)
        w = z.to(self.device)
        self.grads.next_iteration()
        losses = self.learner.update(batch, lambda mb: grpo_terms(self.policy, mb, w, self.cfg.grpo), gen)
        scalars = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            filtered = got.zero / got.generated
        for i, name in enumerate(self.tasks):
            scalars[f"grpo/z/{name}"] = float(z[i])
            if got.generated[i]:
                scalars[f"grpo/filtered/{name}"] = float(filtered[i])
        scalars["grpo/kept_groups"] = float(len(np.unique(got.kept.group)))
        scalars["grpo/generated_groups"] = float(got.generated.sum())
        stepped, per_task = self.weights.after_update(self.policy, batch, self.cfg.grpo, got.episodes, self.score_kind)
        if not stepped:
            self.guard.skip()
        scalars.update(
            {f"grpo/{key}/{name}": float(v[i]) for key, v in per_task.items() for i, name in enumerate(self.tasks)}
        )
        task_steps = np.bincount(got.episodes.task_id, weights=got.episodes.length, minlength=k).astype(np.int64)
        abs_adv = per_task_means(batch.task_id.cpu().numpy(), batch.advantages.abs().cpu().numpy(), k)
        scalars.update(self.grads.report())
        faults = take_faults([self.grads])
        return Iteration(got.env_steps, got.episodes, losses, got.env_errors, scalars, task_steps, abs_adv, faults)

    def set_progress(self, done: float) -> None:
        if self.cfg.grpo.anneal_lr:
            self.learner.set_lr_fraction(1.0 - done)

    def task_weights(self) -> np.ndarray | None:
        """MT-GRPO's z (None for plain GRPO)."""
        return self.weights.shown()

    def state_dict(self) -> dict:
        state = {
            "optimizer": self.learner.optimizer.state_dict(),
            "task_weights": self.weights.state_dict(),
            "sampler": self.sampler.state_dict(),
        }
        return with_task_state(state, [self.grads])

    def load_state_dict(self, state: dict) -> None:
        state = without_task_state(state, [self.grads])
        self.learner.optimizer.load_state_dict(state["optimizer"])
        self.weights.load_state_dict(state["task_weights"])
        self.sampler.load_state_dict(state["sampler"])


class MTGRPOAlgorithm(GRPOAlgorithm):
    """MT-GRPO: GRPO with improvement-aware task weights z and ratio-preserving group sampling."""

    section = "mt_grpo"
    weighting = TaskWeights
    ratio_preserving = True

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        super().check_config(cfg)
        name = cfg.curriculum.name
        if name is not None and name != "worst_task":
            raise ConfigError(
                f"algo=mt_grpo samples tasks by its own weights z; curriculum.name={name} would override "
                "them (use worst_task, which follows z, or null)"
            )
