"""Multi-task PPO (Schulman et al. 2017) with per-task advantage normalisation (MOORE's MTPPO)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrl.data.advantage import batch_normalize, gae, task_normalize
from mtrl.algos.base import Iteration, NonFiniteGuard, TensorBatch, actor_parameters
from mtrl.collect.requests import FragmentRequest, Requests
from mtrl.config import Config, PPOConfig
from mtrl.data.batch import Fragment
from mtrl.data.reduce import per_task_means
from mtrl.env.suite import TaskSuite
from mtrl.errors import ConfigError


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
def fragment_values(policy: nn.Module, frag: Fragment, device: torch.device, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V(s, c) for every step, for each truncation's final observation and after the last step,
    in large batched passes on the learner (the workers run the actor only).

    Returns (values [T, N], bootstrap [T, N] with V(final obs) at truncations and 0 elsewhere,
    last_value [N])."""
    T, N = frag.task_id.shape

    def v(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        # np.array copies: a fragment from Ray's object store is read-only, which torch warns about
        out = [policy.value(torch.from_numpy(np.array(obs[i:i + chunk])).to(device),
                            torch.from_numpy(np.array(task[i:i + chunk])).to(device)) for i in range(0, len(task), chunk)]  # fmt: skip
        return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)

    values = v(frag.obs.reshape(T * N, *frag.obs.shape[2:]), frag.task_id.reshape(-1)).reshape(T, N)
    bootstrap = np.zeros((T, N), np.float32)
    t, n = frag.trunc_idx[:, 0], frag.trunc_idx[:, 1]
    bootstrap[t, n] = v(frag.trunc_obs, frag.task_id[t, n])
    return values, bootstrap, v(frag.last_obs, frag.last_task_id)


def make_batch(frag: Fragment, policy: nn.Module, cfg: PPOConfig, num_tasks: int, device: torch.device) -> tuple[PPOBatch, np.ndarray]:
    """Values on the learner, GAE on the time-major fragment, then drop invalid steps, then
    normalise advantages. Also returns each task's mean |GAE| before normalisation (for PLR)."""
    values, bootstrap, last_value = fragment_values(policy, frag, device)
    adv, ret = gae(frag.rewards, values, last_value, frag.terminated, frag.truncated, bootstrap, cfg.gamma, cfg.gae_lambda)
    m = frag.valid

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x[m]).to(device)

    task = t(frag.task_id)
    adv_t = t(adv)
    abs_adv = per_task_means(frag.task_id[m], np.abs(adv[m]), num_tasks)
    adv_t = task_normalize(adv_t, task, num_tasks) if cfg.task_norm else batch_normalize(adv_t)
    return PPOBatch(t(frag.obs), task, t(frag.actions), t(frag.logp), adv_t, t(ret), t(values)), abs_adv


def ppo_loss(policy: nn.Module, mb: PPOBatch, cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate and entropy bonus on one minibatch, plus the value loss when the
    critic trains jointly (`ppo.critic_update=joint`); a pure function."""
    dist = policy.distribution(mb.obs, mb.task_id)
    logp = dist.log_prob(mb.actions)
    log_ratio = logp - mb.logp
    ratio = log_ratio.exp()
    pg = -torch.min(ratio * mb.advantages, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * mb.advantages).mean()
    entropy = dist.entropy().mean()
    loss = pg - cfg.ent_coef * entropy
    stats = {"policy": pg.item(), "entropy": entropy.item()}
    if cfg.critic_update == "joint":
        value_loss = 0.5 * (policy.value(mb.obs, mb.task_id) - mb.returns).pow(2).mean()
        loss = loss + cfg.vf_coef * value_loss
        stats["value"] = value_loss.item()
    with torch.no_grad():
        stats["approx_kl"] = ((ratio - 1) - log_ratio).mean().item()  # the low-variance k3 estimator
        stats["clipfrac"] = ((ratio - 1).abs() > cfg.clip).float().mean().item()
    return loss, stats


def critic_loss(policy: nn.Module, mb: PPOBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """The separate critic fit's loss: the MSE of V(s, c) to the GAE returns (mushroom-rl's
    TorchApproximator with F.mse_loss, as MOORE's official PPO fits its critic)."""
    mse = (policy.value(mb.obs, mb.task_id) - mb.returns).pow(2).mean()
    return mse, {"critic_mse": mse.item()}


def minibatch_plan(n: int, cfg: PPOConfig) -> tuple[int, bool]:
    """(minibatch size, whether the last partial minibatch is kept) for a batch of n transitions."""
    if cfg.minibatch_size:
        return min(cfg.minibatch_size, n), True
    return max(1, n // cfg.minibatches), False


class PPOLearner:
    """Owns one Adam optimiser over `params`; `update` runs epochs x shuffled minibatches of a loss
    on one batch (PPO's policy loss, the separate critic's, or GRPO's)."""

    def __init__(self, params: list[nn.Parameter], cfg: PPOConfig, guard: NonFiniteGuard | None = None,
                 lr: float | None = None) -> None:  # fmt: skip
        self.params, self.cfg = params, cfg
        self.lr = cfg.lr if lr is None else lr
        self.guard = guard or NonFiniteGuard()
        self.optimizer = torch.optim.Adam(params, lr=self.lr, eps=cfg.adam_eps)

    def set_lr_fraction(self, frac: float) -> None:
        """Scale the learning rate to frac * its configured value (linear annealing)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * frac

    def update(self, batch: TensorBatch, loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, float]]],
               generator: torch.Generator, epochs: int | None = None, plan: tuple[int, bool] | None = None) -> dict[str, float]:  # fmt: skip
        """Optimise `loss_fn(minibatch)` for `epochs` (default ppo.epochs) passes of minibatches
        `plan` = (size, keep the last partial one) (default `minibatch_plan`); returns the mean of
        each statistic over the steps taken."""
        n = len(batch)
        if n == 0:  # e.g. every GRPO group had equal outcomes: nothing to learn from
            return {}
        size, keep_last = plan or minibatch_plan(n, self.cfg)
        totals: dict[str, float] = {}
        count = 0
        for _ in range(self.cfg.epochs if epochs is None else epochs):
            # one full-batch step needs no shuffle (and leaves the generator's stream alone)
            perm = torch.randperm(n, generator=generator).to(batch.task_id.device) if size < n else None
            for start in range(0, n if keep_last else n - size + 1, size):
                mb = batch if perm is None else batch.index(perm[start:start + size])
                loss, stats = loss_fn(mb)
                norm = self.guard.step(self.optimizer, loss, self.params, self.cfg.max_grad_norm)
                if norm is None:  # skipped: its statistics are not finite either
                    continue
                stats["grad_norm"] = norm
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}


class PPOAlgorithm:
    """Multi-task PPO with GAE and per-task advantage normalisation (MOORE's MTPPO). For each
    fragment: values and GAE on the learner, then (ppo.critic_update=separate) the critic's fit,
    then the policy's epochs."""

    section = "ppo"
    collector = "fragments"
    policy_kind = "actor_critic"
    greedy_eval = False  # sampled actions, as MOORE evaluates

    def __init__(self, policy: nn.Module, cfg: Config, suite: TaskSuite, device: torch.device,
                 guard: NonFiniteGuard | None = None) -> None:  # fmt: skip
        self.policy, self.cfg, self.num_tasks, self.device = policy, cfg.ppo, suite.num_tasks, device
        self.critic_learner: PPOLearner | None = None
        if self.cfg.critic_update == "separate":  # two optimisers, as mushroom-rl's actor-critic agents
            critic = [p for name, p in policy.named_parameters() if name.startswith("critic.")]
            self.learner = PPOLearner(actor_parameters(policy), self.cfg, guard)
            self.critic_learner = PPOLearner(critic, self.cfg, self.learner.guard, lr=self.cfg.critic_lr)
        else:
            self.learner = PPOLearner(list(policy.parameters()), self.cfg, guard)

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
        if self.critic_learner is not None:  # MOORE / mushroom-rl: fit V on the returns, then the policy
            plan = (self.cfg.critic_minibatch_size or max(len(batch), 1), True)
            fit = self.critic_learner.update(batch, lambda mb: critic_loss(self.policy, mb), gen, self.cfg.critic_epochs, plan)
            losses = {k if k == "critic_mse" else f"critic_{k}": v for k, v in fit.items()}
        losses.update(self.learner.update(batch, lambda mb: ppo_loss(self.policy, mb, self.cfg), gen))
        task_steps = np.bincount(frag.task_id[frag.valid], minlength=self.num_tasks)
        # where the learner's time goes: values + GAE, and the optimiser steps
        times = {"perf/advantages_s": t2 - t1, "perf/update_s": time.perf_counter() - t2}
        return Iteration(frag.num_steps, frag.episodes, losses, int(frag.env_errors.sum()), times, task_steps, abs_adv)

    def set_progress(self, done: float) -> None:
        if self.cfg.anneal_lr:
            for learner in (self.learner, self.critic_learner):
                if learner is not None:
                    learner.set_lr_fraction(1.0 - done)

    def task_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        if self.critic_learner is None:
            return self.learner.optimizer.state_dict()
        return {"actor": self.learner.optimizer.state_dict(), "critic": self.critic_learner.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
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
        for key, value, default in (("critic_epochs", p.critic_epochs, 1), ("critic_minibatch_size", p.critic_minibatch_size, 0),
                                    ("critic_lr", p.critic_lr, None)):  # fmt: skip
            if value != default:
                raise ConfigError(f"ppo.{key}={value} only applies with ppo.critic_update=separate (the joint update "
                                  "trains the critic inside the policy minibatches)")  # fmt: skip
