"""Multi-task SAC (Haarnoja et al. 2018; MOORE / Meta-World+ form, ALGORITHMS.md section 4): twin
critics with Polyak targets, one learned temperature per task, one replay buffer per task.

The losses are pure functions of the networks and a batch; `SACLearner.update` applies them in
the usual order (critics, actor, temperatures, targets); `SACAlgorithm` runs one iteration:
collect a fragment, store its transitions, then `sac.updates_per_step` updates per vector step.
"""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mtrl.algos.base import Iteration, NonFiniteGuard
from mtrl.collect.requests import FragmentRequest, Requests
from mtrl.data.batch import Fragment
from mtrl.config import Config
from mtrl.errors import MtrlError
from mtrl.nn.sac import SACActor, SACPolicy, TwinQ
from mtrl.data.replay import TaskReplay
from mtrl.env.suite import TaskSuite


def alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor, task_id: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """-mean(log_alpha[c] * (log pi + target).detach()), target = -|A|: each sample moves only
    its own task's temperature, so no gradient crosses tasks."""
    return -(log_alpha[task_id] * (logp + target_entropy).detach()).mean()


def critic_loss(critic: TwinQ, target: TwinQ, actor: SACActor, alpha: torch.Tensor, batch: dict[str, torch.Tensor],
                gamma: float) -> torch.Tensor:  # fmt: skip
    """Soft Bellman error of both critics: y = r + gamma (1 - term) (min Q'(s', a') - alpha_c log pi(a'|s'))."""
    obs, act, task = batch["obs"], batch["actions"], batch["task_id"]
    with torch.no_grad():
        next_act, next_logp = actor.sample(batch["next_obs"], task)
        q1_t, q2_t = target(batch["next_obs"], next_act, task)
        soft_v = torch.min(q1_t, q2_t) - alpha[task] * next_logp
        y = batch["rewards"] + gamma * (1.0 - batch["terminated"].float()) * soft_v
    q1, q2 = critic(obs, act, task)
    return 0.5 * ((q1 - y).pow(2).mean() + (q2 - y).pow(2).mean())


def actor_loss(actor: SACActor, critic: TwinQ, alpha: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """mean(alpha_c log pi(a|s) - min Q(s, a)) with a reparameterised a; also returns log pi."""
    act, logp = actor.sample(batch["obs"], batch["task_id"])
    q1, q2 = critic(batch["obs"], act, batch["task_id"])
    return (alpha[batch["task_id"]] * logp - torch.min(q1, q2)).mean(), logp


@torch.no_grad()
def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for all parameters at once."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


class SACLearner:
    """Actor, twin critics, their targets and the per-task log-temperatures, with their optimisers."""

    def __init__(self, actor: SACActor, critic: TwinQ, num_tasks: int, action_dim: int, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, alpha_lr: float = 1e-4, gamma: float = 0.99, tau: float = 0.005,
                 guard: NonFiniteGuard | None = None) -> None:  # fmt: skip
        self.actor, self.critic, self.gamma, self.tau = actor, critic, gamma, tau
        self.guard = guard or NonFiniteGuard()
        self.target = copy.deepcopy(critic).requires_grad_(False)
        device = next(actor.parameters()).device
        self.log_alpha = torch.zeros(num_tasks, device=device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=actor_lr)
        self.critic_opt = torch.optim.Adam(critic.parameters(), lr=critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=alpha_lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on critics, actor and temperatures, then the Polyak target step."""
        alpha = self.log_alpha.detach().exp()
        q_loss = critic_loss(self.critic, self.target, self.actor, alpha, batch, self.gamma)
        self.guard.step(self.critic_opt, q_loss, list(self.critic.parameters()))
        self.critic.requires_grad_(False)  # the actor's loss differentiates through Q, not into it
        pi_loss, logp = actor_loss(self.actor, self.critic, alpha, batch)
        self.guard.step(self.actor_opt, pi_loss, list(self.actor.parameters()))
        self.critic.requires_grad_(True)
        a_loss = alpha_loss(self.log_alpha, logp, batch["task_id"], self.target_entropy)
        self.guard.step(self.alpha_opt, a_loss, [self.log_alpha])
        polyak(self.target, self.critic, self.tau)
        return {"critic": q_loss.item(), "actor": pi_loss.item(), "alpha_loss": a_loss.item(),
                "entropy": -logp.mean().item(), "alpha_mean": alpha.mean().item()}  # fmt: skip

    def state_dict(self) -> dict:
        return {"target": self.target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])


def fragment_transitions(frag: Fragment) -> dict[str, np.ndarray]:
    """The valid steps of a fragment as flat (s, a, r, s', terminated) transitions. s' is the next
    step's observation (under NEXT_STEP autoreset that is also the final observation of an ended
    episode), the recorded final observation at truncations, and the observation after the last
    step; after a termination s' is not used."""
    next_obs = np.concatenate([frag.obs[1:], frag.last_obs[None]], axis=0)
    if len(frag.trunc_idx):
        next_obs[frag.trunc_idx[:, 0], frag.trunc_idx[:, 1]] = frag.trunc_obs
    m = frag.valid
    return {"task_id": frag.task_id[m], "obs": frag.obs[m], "actions": frag.actions[m], "rewards": frag.rewards[m],
            "next_obs": next_obs[m], "terminated": frag.terminated[m]}  # fmt: skip


class SACAlgorithm:
    """Multi-task SAC: twin critics, per-task temperatures and replay. One iteration: collect a fragment (uniform random actions during the warm-up), add it to
    the per-task replay, then update. With rollout.pipeline the workers collect the next fragment
    while the learner updates: they act with weights refreshed every steps_per_env x
    updates_per_step updates. The collector is the fragments one; SAC turns each fragment into
    flat transitions for its replay (`fragment_transitions`)."""

    section = "sac"
    collector = "fragments"
    policy_kind = "sac"
    greedy_eval = True  # the deterministic (mean) action, as MOORE and Meta-World report SAC

    def __init__(self, policy: SACPolicy, cfg: Config, suite: TaskSuite, device: torch.device,
                 guard: NonFiniteGuard | None = None) -> None:  # fmt: skip
        space = suite.action_space
        if not isinstance(space, gym.spaces.Box) or not (np.all(space.low == -1) and np.all(space.high == 1)):
            raise MtrlError(f"algo=sac needs continuous actions in [-1, 1] (tanh-squashed); suite '{suite.name}' has {space}")
        self.policy, self.cfg, self.sac, self.device, self.tasks = policy, cfg, cfg.sac, device, suite.tasks
        k, act_dim = suite.num_tasks, int(np.prod(space.shape))
        s = cfg.sac
        self.learner = SACLearner(policy.actor, policy.critic, k, act_dim, s.actor_lr, s.critic_lr, s.alpha_lr, s.gamma, s.tau,
                                  guard)  # fmt: skip
        obs_space = suite.observation_space
        self.replay = TaskReplay(k, s.replay_size, obs_space.shape, obs_space.dtype, act_dim, int(s.replay_memory_gb * 2**30))
        self.rng = np.random.default_rng(cfg.seed)
        self.steps, self.updates, self._owed = 0, 0, 0.0

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        pass  # the action space is checked against the suite in __init__

    def requests(self, env_steps: int, task_probs: np.ndarray | None, gen: torch.Generator) -> Requests:
        return (yield FragmentRequest(task_probs, random_until=self.sac.warmup_steps))

    def learn(self, frag: Fragment, gen: torch.Generator) -> Iteration:
        self.steps += frag.num_steps
        tr = fragment_transitions(frag)
        self.replay.add(tr["task_id"], tr["obs"], tr["actions"], tr["rewards"], tr["next_obs"], tr["terminated"])
        totals: dict[str, float] = {}
        if self.steps >= self.sac.warmup_steps:
            self._owed += frag.valid.shape[0] * self.sac.updates_per_step
            n, self._owed = int(self._owed), self._owed - int(self._owed)
            for _ in range(n):
                batch = {key: torch.as_tensor(v).to(self.device) for key, v in self.replay.sample(self.sac.batch_per_task, self.rng).items()}
                for key, v in self.learner.update(batch).items():
                    totals[key] = totals.get(key, 0.0) + v / n
            self.updates += n
        k = len(self.tasks)
        alpha = self.learner.log_alpha.detach().exp().cpu().numpy()
        scalars = {f"sac/alpha/{name}": float(a) for name, a in zip(self.tasks, alpha)}
        scalars["sac/updates"] = float(self.updates)
        return Iteration(frag.num_steps, frag.episodes, totals, int(frag.env_errors.sum()), scalars,
                         np.bincount(tr["task_id"], minlength=k), np.full(k, np.nan))  # fmt: skip

    def set_progress(self, done: float) -> None:
        pass  # SAC keeps its learning rates

    def task_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        replay = self.replay.state_dict() if self.sac.checkpoint_replay else None
        return {**self.learner.state_dict(), "steps": self.steps, "updates": self.updates, "owed": self._owed,
                "rng": json.dumps(self.rng.bit_generator.state), "replay": replay}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
        self._owed = float(state.get("owed", 0.0))
        if "rng" in state:
            self.rng.bit_generator.state = json.loads(state["rng"])
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            print("mtrl: this checkpoint has no replay contents (sac.checkpoint_replay=false); SAC refills its buffers")
