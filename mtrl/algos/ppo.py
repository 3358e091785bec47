"""Multi-task PPO (Schulman et al. 2017) with per-task advantage normalisation (MOORE's MTPPO)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtrl.algos.base import Iteration, NonFiniteGuard, TensorBatch, actor_parameters
from mtrl.algos.learner import MinibatchOptimizer
from mtrl.algos.losses import LossTerms
from mtrl.algos.multitask import TaskGradients, take_faults, with_task_state, without_task_state
from mtrl.collect.requests import FragmentRequest, Requests
from mtrl.config import Config, PPOConfig
from mtrl.data.advantage import batch_normalize, gae, task_normalize
from mtrl.data.batch import Fragment
from mtrl.data.reduce import per_task_means
from mtrl.env.suite import TaskSuite
from mtrl.errors import ConfigError
from mtrl.nn.network import aux_terms

if TYPE_CHECKING:
    from mtrl.nn.policy import ActorCritic


@dataclass
class PPOBatch(TensorBatch):
    """Flat, valid-only training tensors on the learner's device."""

    obs: torch.Tensor
    task_id: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


@torch.no_grad()
def fragment_values(
    policy: ActorCritic, frag: Fragment, device: torch.device, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V(s, c) for every step, for each truncation's final observation and after the last step,
    in large batched passes on the learner (the workers run the actor only).

    Returns (values [T, N], bootstrap [T, N] with V(final obs) at truncations and 0 elsewhere,
    last_value [N])."""
    T, N = frag.task_id.shape

    def v(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        # np.array copies: a fragment from Ray's object store is read-only, which torch warns about
        out = [
            policy.value(
                torch.from_numpy(np.array(obs[i : i + chunk])).to(device),
                torch.from_numpy(np.array(task[i : i + chunk])).to(device),
            )
            for i in range(0, len(task), chunk)
        ]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)

    values = v(frag.obs.reshape(T * N, *frag.obs.shape[2:]), frag.task_id.reshape(-1)).reshape(T, N)
    bootstrap = np.zeros((T, N), np.float32)
    t, n = frag.trunc_idx[:, 0], frag.trunc_idx[:, 1]
    bootstrap[t, n] = v(frag.trunc_obs, frag.task_id[t, n])
    return values, bootstrap, v(frag.last_obs, frag.last_task_id)


def make_batch(
    frag: Fragment, policy: ActorCritic, cfg: PPOConfig, num_tasks: int, device: torch.device
) -> tuple[PPOBatch, np.ndarray]:
    """Values on the learner, GAE on the time-major fragment, then drop invalid steps, then
    normalise advantages. Also returns each task's mean |GAE| before normalisation (for PLR)."""
    values, bootstrap, last_value = fragment_values(policy, frag, device)
    adv, ret = gae(
        frag.rewards, values, last_value, frag.terminated, frag.truncated, bootstrap, cfg.gamma, cfg.gae_lambda
    )
    m = frag.valid

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x[m]).to(device)

    task = t(frag.task_id)
    adv_t = t(adv)
    abs_adv = per_task_means(frag.task_id[m], np.abs(adv[m]), num_tasks)
    adv_t = task_normalize(adv_t, task, num_tasks) if cfg.task_norm else batch_normalize(adv_t)
    return PPOBatch(t(frag.obs), task, t(frag.actions), t(frag.logp), adv_t, t(ret), t(values)), abs_adv


def ppo_terms(policy: ActorCritic, mb: PPOBatch, cfg: PPOConfig) -> LossTerms:
    """Per sample: the negated clipped surrogate, the entropy (weighed -ent_coef) and, when the
    critic trains jointly (`ppo.critic_update=joint`), half the squared value error (weighed
    vf_coef); plus the ratio statistics. Reduced by `reduce_terms`."""
    dist = policy.distribution(mb.obs, mb.task_id)
    logp = dist.log_prob(mb.actions)
    log_ratio = logp - mb.logp
    ratio = log_ratio.exp()
    terms = {
        "policy": (1.0, -torch.min(ratio * mb.advantages, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * mb.advantages)),
        "entropy": (-cfg.ent_coef, dist.entropy()),
    }
    if cfg.critic_update == "joint":
        terms["value"] = (cfg.vf_coef, 0.5 * (policy.value(mb.obs, mb.task_id) - mb.returns).pow(2))
    terms.update(aux_terms(policy if cfg.critic_update == "joint" else policy.actor))
    with torch.no_grad():
        stats = {
            "approx_kl": ((ratio - 1) - log_ratio).mean().item(),  # the low-variance k3 estimator
            "clipfrac": ((ratio - 1).abs() > cfg.clip).float().mean().item(),
        }
    return LossTerms(terms, mb.task_id, stats)


def critic_terms(policy: ActorCritic, mb: PPOBatch) -> LossTerms:
    """The separate critic fit's loss per sample: the squared error of V(s, c) to the GAE returns
    (its mean is mushroom-rl's F.mse_loss, as MOORE's official PPO fits its critic)."""
    terms = {"critic_mse": (1.0, (policy.value(mb.obs, mb.task_id) - mb.returns).pow(2)), **aux_terms(policy.critic)}
    return LossTerms(terms, mb.task_id)


class PPOAlgorithm:
    """Multi-task PPO with GAE and per-task advantage normalisation (MOORE's MTPPO). For each
    fragment: values and GAE on the learner, then (ppo.critic_update=separate) the critic's fit,
    then the policy's epochs."""

    section = "ppo"
    collector = "fragments"
    policy_kind = "actor_critic"
    greedy_eval = False  # sampled actions, as MOORE evaluates

    def __init__(
        self,
        policy: ActorCritic,
        cfg: Config,
        suite: TaskSuite,
        device: torch.device,
        guard: NonFiniteGuard | None = None,
    ) -> None:
        self.policy, self.cfg, self.num_tasks, self.device = policy, cfg.ppo, suite.num_tasks, device
        guard = guard or NonFiniteGuard()
        separate = self.cfg.critic_update == "separate"
        self.grads = TaskGradients(
            policy.actor if separate else policy, cfg.learner, suite.tasks, guard, cfg.train.log_grad_every
        )
        self.critic_learner: MinibatchOptimizer | None = None
        if separate:  # two optimisers, as mushroom-rl's actor-critic agents
            critic = [p for name, p in policy.named_parameters() if name.startswith("critic.")]
            self.learner = MinibatchOptimizer(actor_parameters(policy), self.cfg, guard, grads=self.grads)
            critic_grads = TaskGradients(policy.critic, cfg.learner, suite.tasks, guard)
            self.critic_learner = MinibatchOptimizer(critic, self.cfg, guard, lr=self.cfg.critic_lr, grads=critic_grads)
        else:
            self.learner = MinibatchOptimizer(list(policy.parameters()), self.cfg, guard, grads=self.grads)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_ppo_section(cfg)

    def requests(self, env_steps: int, task_probs: np.ndarray | None, gen: torch.Generator) -> Requests:
        return (yield FragmentRequest(task_probs))

    def learn(self, frag: Fragment, gen: torch.Generator) -> Iteration:
        t1 = time.perf_counter()
        batch, abs_adv = make_batch(frag, self.policy, self.cfg, self.num_tasks, self.device)
        t2 = time.perf_counter()
        losses: dict[str, float] = {}
        k = self.num_tasks
        for g in self._task_grads():
            g.next_iteration()
        if self.critic_learner is not None:  # MOORE / mushroom-rl: fit V on the returns, then the policy
            plan = (self.cfg.critic_minibatch_size or max(len(batch), 1), True)
            fit = self.critic_learner.update(
                batch, lambda mb: critic_terms(self.policy, mb), gen, epochs=self.cfg.critic_epochs, plan=plan
            )
            losses = {key if key == "critic_mse" else f"critic_{key}": v for key, v in fit.items()}
        losses.update(self.learner.update(batch, lambda mb: ppo_terms(self.policy, mb, self.cfg), gen))
        task_steps = np.bincount(frag.task_id[frag.valid], minlength=k)
        # where the learner's time goes: values + GAE, and the optimiser steps
        scalars = {"perf/advantages_s": t2 - t1, "perf/update_s": time.perf_counter() - t2, **self.grads.report()}
        faults = take_faults(self._task_grads())
        return Iteration(
            frag.num_steps, frag.episodes, losses, int(frag.env_errors.sum()), scalars, task_steps, abs_adv, faults
        )

    def set_progress(self, done: float) -> None:
        if self.cfg.anneal_lr:
            for learner in (self.learner, self.critic_learner):
                if learner is not None:
                    learner.set_lr_fraction(1.0 - done)

    def task_weights(self) -> None:
        return None

    def _task_grads(self) -> list[TaskGradients]:
        return [lr.grads for lr in (self.learner, self.critic_learner) if lr is not None and lr.grads is not None]

    def state_dict(self) -> dict:
        if self.critic_learner is None:
            return with_task_state(self.learner.optimizer.state_dict(), self._task_grads())
        state = {"actor": self.learner.optimizer.state_dict(), "critic": self.critic_learner.optimizer.state_dict()}
        return with_task_state(state, self._task_grads())

    def load_state_dict(self, state: dict) -> None:
        state = without_task_state(state, self._task_grads())
        if self.critic_learner is None:
            self.learner.optimizer.load_state_dict(state)
            return
        self.learner.optimizer.load_state_dict(state["actor"])
        self.critic_learner.optimizer.load_state_dict(state["critic"])


def check_ppo_section(cfg: Config) -> None:
    """The ppo section's own consistency (also read by grpo and mt_grpo): the separate critic's
    keys only apply with ppo.critic_update=separate."""
    p = cfg.ppo
    if p.critic_update == "joint":
        for key, value, default in (
            ("critic_epochs", p.critic_epochs, 1),
            ("critic_minibatch_size", p.critic_minibatch_size, 0),
            ("critic_lr", p.critic_lr, None),
        ):
            if value != default:
                raise ConfigError(
                    f"ppo.{key}={value} only applies with ppo.critic_update=separate (the joint update "
                    "trains the critic inside the policy minibatches)"
                )
