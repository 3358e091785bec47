"""Multi-task SAC (Haarnoja et al. 2018; MOORE / Meta-World+ form, docs/algorithms/sac.md): twin
critics with Polyak targets, one learned temperature per task, one replay buffer per task.

The losses and the learner are in `mtrl.algos.sac_learner`; `SACAlgorithm` runs one iteration:
collect a fragment, store its transitions, then `sac.updates_per_step` updates per vector step.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch

from mtrl.algos.base import Iteration, NonFiniteGuard
from mtrl.algos.multitask import TaskGradients, take_faults, with_task_state, without_task_state
from mtrl.algos.sac_learner import learner_from_config
from mtrl.collect.requests import FragmentRequest, Requests
from mtrl.config import Config
from mtrl.data.batch import Fragment
from mtrl.data.replay import TaskReplay
from mtrl.env.suite import TaskSuite
from mtrl.errors import MtrlError
from mtrl.nn.sac import SACPolicy


def fragment_transitions(frag: Fragment) -> dict[str, np.ndarray]:
    """The valid steps of a fragment as flat (s, a, r, s', terminated) transitions. s' is the next
    step's observation (under NEXT_STEP autoreset that is also the final observation of an ended
    episode), the recorded final observation at truncations, and the observation after the last
    step; after a termination s' is not used."""
    next_obs = np.concatenate([frag.obs[1:], frag.last_obs[None]], axis=0)
    if len(frag.trunc_idx):
        next_obs[frag.trunc_idx[:, 0], frag.trunc_idx[:, 1]] = frag.trunc_obs
    m = frag.valid
    return {
        "task_id": frag.task_id[m],
        "obs": frag.obs[m],
        "actions": frag.actions[m],
        "rewards": frag.rewards[m],
        "next_obs": next_obs[m],
        "terminated": frag.terminated[m],
    }


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

    def __init__(
        self,
        policy: SACPolicy,
        cfg: Config,
        suite: TaskSuite,
        device: torch.device,
        guard: NonFiniteGuard | None = None,
    ) -> None:
        space = suite.action_space
        if not isinstance(space, gym.spaces.Box) or not (np.all(space.low == -1) and np.all(space.high == 1)):
            raise MtrlError(
                f"algo=sac needs continuous actions in [-1, 1] (tanh-squashed); suite '{suite.name}' has {space}"
            )
        self.policy, self.cfg, self.sac, self.device, self.tasks = policy, cfg, cfg.sac, device, suite.tasks
        k, act_dim = suite.num_tasks, int(np.prod(space.shape))
        s = cfg.sac
        guard = guard or NonFiniteGuard()
        self.grads = [
            TaskGradients(net, cfg.learner, suite.tasks, guard, log)
            for net, log in ((policy.actor, cfg.train.log_grad_every), (policy.critic, None))
        ]
        self.learner = learner_from_config(policy, s, k, act_dim, guard, *self.grads)
        obs_space = suite.observation_space
        assert obs_space.dtype is not None  # a Box always has one
        self.replay = TaskReplay(
            k, s.replay_size, obs_space.shape, obs_space.dtype, act_dim, int(s.replay_memory_gb * 2**30)
        )
        self.rng = np.random.default_rng(cfg.seed)
        self.steps, self.updates, self._owed = 0, 0, 0.0

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """The action space is checked against the suite in __init__."""
        if cfg.policy.critic_ensemble and (cfg.learner.aggregator != "none" or cfg.learner.weighting != "none"):
            raise MtrlError(
                "policy.critic_ensemble=true does not combine with a per-task gradient step (learner.aggregator="
                f"{cfg.learner.aggregator}, learner.weighting={cfg.learner.weighting}): the task "
                "Jacobian runs the critics' modules one by one; set policy.critic_ensemble=false"
            )

    def requests(self, env_steps: int, task_probs: np.ndarray | None, gen: torch.Generator) -> Requests:
        return (yield FragmentRequest(task_probs, random_until=self.sac.warmup_steps))

    def learn(self, frag: Fragment, gen: torch.Generator) -> Iteration:
        self.steps += frag.num_steps
        tr = fragment_transitions(frag)
        self.replay.add(tr["task_id"], tr["obs"], tr["actions"], tr["rewards"], tr["next_obs"], tr["terminated"])
        totals: dict[str, float] = {}
        self.grads[0].next_iteration()  # the first update of every train.log_grad_every-th iteration is measured
        if self.steps >= self.sac.warmup_steps:
            self._owed += frag.valid.shape[0] * self.sac.updates_per_step
            n, self._owed = int(self._owed), self._owed - int(self._owed)
            for _ in range(n):
                batch = {
                    key: torch.as_tensor(v).to(self.device)
                    for key, v in self.replay.sample(self.sac.batch_per_task, self.rng).items()
                }
                for key, v in self.learner.update(batch).items():
                    totals[key] = totals.get(key, 0.0) + v / n
            self.updates += n
        k = len(self.tasks)
        alpha = self.learner.log_alpha.detach().exp().cpu().numpy()
        scalars = {f"sac/alpha/{name}": float(a) for name, a in zip(self.tasks, alpha)}
        scalars["sac/updates"] = float(self.updates)
        scalars.update(self.grads[0].report())
        faults = take_faults(self.grads)
        if self.learner.loss_guards:  # PaCo's mask-out and w-reset events (faults/masked_tasks, faults/w_resets)
            faults.update(self.learner.take_guard_events())
        return Iteration(
            frag.num_steps,
            frag.episodes,
            totals,
            int(frag.env_errors.sum()),
            scalars,
            np.bincount(tr["task_id"], minlength=k),
            np.full(k, np.nan),
            faults,
        )

    def set_progress(self, done: float) -> None:
        pass  # SAC keeps its learning rates

    def task_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        replay = self.replay.state_dict() if self.sac.checkpoint_replay else None
        state = {
            **self.learner.state_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "owed": self._owed,
            "rng": json.dumps(self.rng.bit_generator.state),
            "replay": replay,
        }
        return with_task_state(state, self.grads)

    def load_state_dict(self, state: dict) -> None:
        state = without_task_state(state, self.grads)
        self.learner.load_state_dict(state)
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
        self._owed = float(state.get("owed", 0.0))
        if "rng" in state:
            self.rng.bit_generator.state = json.loads(state["rng"])
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            print("mtrl: this checkpoint has no replay contents (sac.checkpoint_replay=false); SAC refills its buffers")
