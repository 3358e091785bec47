"""Multi-task PPO (Schulman et al. 2017) with per-task advantage normalisation (MOORE's MTPPO)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrl.advantage import batch_normalize, gae, task_normalize
from mtrl.algos import Iteration, NonFiniteGuard, TensorBatch
from mtrl.batch import Fragment, per_task_means
from mtrl.config import PPOConfig


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
        out = [policy.value(torch.as_tensor(obs[i:i + chunk]).to(device), torch.as_tensor(task[i:i + chunk]).to(device))
               for i in range(0, len(task), chunk)]  # fmt: skip
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
    """The clipped surrogate, value loss and entropy bonus on one minibatch (a pure function)."""
    dist = policy.distribution(mb.obs, mb.task_id)
    logp = dist.log_prob(mb.actions)
    log_ratio = logp - mb.logp
    ratio = log_ratio.exp()
    pg = -torch.min(ratio * mb.advantages, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * mb.advantages).mean()
    value_loss = 0.5 * (policy.value(mb.obs, mb.task_id) - mb.returns).pow(2).mean()
    entropy = dist.entropy().mean()
    loss = pg + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # the low-variance k3 estimator
        clipfrac = ((ratio - 1).abs() > cfg.clip).float().mean()
    stats = {"policy": pg.item(), "value": value_loss.item(), "entropy": entropy.item(),
             "approx_kl": approx_kl.item(), "clipfrac": clipfrac.item()}  # fmt: skip
    return loss, stats


class PPOLearner:
    """Owns the Adam optimiser over `params`; `update` runs epochs x minibatches of a loss on one
    batch (PPO's, or GRPO's, which trains the actor only)."""

    def __init__(self, params: list[nn.Parameter], cfg: PPOConfig, guard: NonFiniteGuard | None = None) -> None:
        self.params, self.cfg = params, cfg
        self.guard = guard or NonFiniteGuard()
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)

    def set_lr_fraction(self, frac: float) -> None:
        """Scale the learning rate to frac * ppo.lr (linear annealing)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * frac

    def update(self, batch: TensorBatch, loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, float]]],
               generator: torch.Generator) -> dict[str, float]:  # fmt: skip
        """Optimise `loss_fn(minibatch)`; returns the mean of each statistic over minibatches."""
        n = len(batch)
        if n == 0:  # e.g. every GRPO group had equal outcomes: nothing to learn from
            return {}
        mb_size = max(1, n // self.cfg.minibatches)
        totals: dict[str, float] = {}
        count = 0
        for _ in range(self.cfg.epochs):
            perm = torch.randperm(n, generator=generator).to(batch.task_id.device)
            for start in range(0, n - mb_size + 1, mb_size):
                loss, stats = loss_fn(batch.index(perm[start:start + mb_size]))
                norm = self.guard.step(self.optimizer, loss, self.params, self.cfg.max_grad_norm)
                if norm is None:  # skipped: its statistics are not finite either
                    continue
                stats["grad_norm"] = norm
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                count += 1
        return {k: v / max(count, 1) for k, v in totals.items()}


class PPOAlgorithm:
    """One PPO iteration: collect a fragment from the pool, compute values and advantages, update.

    With rollout.pipeline the next fragment is collected while this one trains (one update of lag)."""

    def __init__(self, policy: nn.Module, cfg: PPOConfig, num_tasks: int, device: torch.device, pipeline: bool,
                 guard: NonFiniteGuard | None = None) -> None:  # fmt: skip
        self.policy, self.cfg, self.num_tasks, self.device, self.pipeline = policy, cfg, num_tasks, device, pipeline
        self.learner = PPOLearner(list(policy.parameters()), cfg, guard)
        self._in_flight = None
        self.task_probs: np.ndarray | None = None  # a curriculum's, sent to the workers with the weights

    def iterate(self, pool, gen: torch.Generator) -> Iteration:  # noqa: ANN001 - a mtrl.workers.WorkerPool
        submit = lambda: pool.submit(self.policy, self.task_probs)  # noqa: E731
        frag = pool.wait(self._in_flight if self._in_flight is not None else submit())
        self._in_flight = submit() if self.pipeline else None
        batch, abs_adv = make_batch(frag, self.policy, self.cfg, self.num_tasks, self.device)
        losses = self.learner.update(batch, lambda mb: ppo_loss(self.policy, mb, self.cfg), gen)
        task_steps = np.bincount(frag.task_id[frag.valid], minlength=self.num_tasks)
        return Iteration(frag.num_steps, frag.episodes, losses, int(frag.env_errors.sum()), {}, task_steps, abs_adv)

    def set_lr_fraction(self, frac: float) -> None:
        self.learner.set_lr_fraction(frac)

    def task_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        return self.learner.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.optimizer.load_state_dict(state)
