"""A tiny algorithm written as a user would, in one file outside mtrl: advantage actor-critic
(one gradient step per fragment on -log pi * A + c (V - R)^2, with GAE and per-task
normalisation from mtrl's PPO helpers). `register_algo("a2c", A2C)` makes it `algo=a2c`, and its
own hyperparameters the config section `a2c`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mtrl.algos.base import Iteration
from mtrl.algos.ppo import make_batch
from mtrl.collect.requests import FragmentRequest


@dataclass
class A2COptions:
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate", "lo": 0.0, "lo_open": True})
    value_coef: float = field(default=0.5, metadata={"help": "weight c of the value loss", "lo": 0.0})


class A2C:
    """Advantage actor-critic: one step per fragment (GAE settings from the ppo section)."""

    section = "a2c"
    options = A2COptions
    collector = "fragments"
    policy_kind = "actor_critic"
    greedy_eval = False

    def __init__(self, policy, cfg, suite, device, guard):  # noqa: ANN001
        self.policy, self.cfg, self.k, self.device, self.guard = policy, cfg.ppo, suite.num_tasks, device, guard
        self.own = cfg.sections["a2c"]
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.own.lr)

    @classmethod
    def check_config(cls, cfg) -> None:  # noqa: ANN001
        pass

    def requests(self, env_steps, task_probs, gen):  # noqa: ANN001, ANN201
        return (yield FragmentRequest(task_probs))

    def learn(self, frag, gen) -> Iteration:  # noqa: ANN001
        batch, abs_adv = make_batch(frag, self.policy, self.cfg, self.k, self.device)
        logp = self.policy.distribution(batch.obs, batch.task_id).log_prob(batch.actions)
        value = self.policy.value(batch.obs, batch.task_id)
        loss = -(logp * batch.advantages).mean() + self.own.value_coef * (value - batch.returns).pow(2).mean()
        self.guard.step(self.optimizer, loss, list(self.policy.parameters()), self.cfg.max_grad_norm)
        steps = np.bincount(frag.task_id[frag.valid], minlength=self.k)
        return Iteration(
            frag.num_steps, frag.episodes, {"loss": loss.item()}, int(frag.env_errors.sum()), {}, steps, abs_adv
        )

    def set_progress(self, done: float) -> None:
        pass

    def task_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
