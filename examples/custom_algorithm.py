"""A learning algorithm written outside mtrl: advantage actor-critic (A2C), registered as `algo=a2c`.

One gradient step per collected fragment on -log pi(a|s) * A + c * (V(s) - R)^2, with the values,
GAE and per-task advantage normalisation from mtrl's PPO helpers (GAE settings from the `ppo`
section). The class follows the `mtrl.algos.base.Algorithm` protocol; its options dataclass
becomes the config section `a2c` (`a2c.lr`, `a2c.value_coef`), checked like every other key.

    python examples/custom_algorithm.py                  # a quick check: 3k env steps on toy-mt3
    python examples/custom_algorithm.py --steps 150000   # learns all three toy tasks (tens of seconds)

From the `mtrl` command, import the file first:

    mtrl train --import examples/custom_algorithm.py toy_mtppo algo=a2c a2c.lr=2e-3
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
import torch

import mtrl
from mtrl.algos.base import Iteration
from mtrl.algos.ppo import make_batch
from mtrl.collect.requests import FragmentRequest


@dataclass
class A2COptions:
    # metadata: the help text of `mtrl train --help` and the range a value is checked against
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate", "lo": 0.0, "lo_open": True})
    value_coef: float = field(default=0.5, metadata={"help": "weight c of the value loss", "lo": 0.0})


class A2C:
    """Advantage actor-critic: one step per fragment (GAE settings from the ppo section)."""

    section = "a2c"  # its options are the config keys a2c.*
    options = A2COptions
    collector = "fragments"  # the workers collect fixed-length fragments of every env slot, as for PPO
    policy_kind = "actor_critic"  # mtrl builds an actor and a critic of the configured policy.arch
    greedy_eval = False  # evaluate with sampled actions (unless train.eval_greedy says otherwise)

    def __init__(self, policy, cfg, suite, device, guard):  # noqa: ANN001
        self.policy, self.cfg, self.k, self.device, self.guard = policy, cfg.ppo, suite.num_tasks, device, guard
        self.own = cfg.section("a2c")  # the validated A2COptions of this run
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.own.lr)

    @classmethod
    def check_config(cls, cfg) -> None:  # noqa: ANN001
        pass  # raise mtrl.errors.ConfigError here for settings this algorithm cannot run with

    def requests(self, env_steps, task_probs, gen):  # noqa: ANN001, ANN201
        # a generator: what the workers send back for the request is what learn() receives;
        # passing task_probs on lets a curriculum pick each slot's task
        return (yield FragmentRequest(task_probs))

    def learn(self, frag, gen) -> Iteration:  # noqa: ANN001
        batch, abs_adv = make_batch(frag, self.policy, self.cfg, self.k, self.device)
        logp = self.policy.distribution(batch.obs, batch.task_id).log_prob(batch.actions)
        value = self.policy.value(batch.obs, batch.task_id)
        loss = -(logp * batch.advantages).mean() + self.own.value_coef * (value - batch.returns).pow(2).mean()
        # the guard skips (and counts) a step whose loss or gradient is not finite
        self.guard.step(self.optimizer, loss, list(self.policy.parameters()), self.cfg.max_grad_norm)
        steps = np.bincount(frag.task_id[frag.valid], minlength=self.k)  # env steps per task, for the logs
        return Iteration(
            frag.num_steps, frag.episodes, {"loss": loss.item()}, int(frag.env_errors.sum()), {}, steps, abs_adv
        )

    def set_progress(self, done: float) -> None:
        pass  # no schedule; `done` is the fraction of train.total_steps behind us

    def task_weights(self) -> None:
        return None  # no task weights of its own (MT-GRPO has some, for curricula that follow them)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()  # what a checkpoint keeps beside the policy, for resume

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


# At import: `mtrl train --import` of this file can then name algo=a2c.
mtrl.register_algo("a2c", A2C)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="env steps, over all tasks (default 3000)")
    parser.add_argument("--lr", type=float, default=2e-3, help="a2c.lr (default 2e-3)")
    args = parser.parse_args()

    # toy_mtppo is a packaged config (`mtrl configs`): the toy suite, its rollout and policy settings;
    # algo=a2c replaces PPO, and the a2c section comes with it
    run_dir = mtrl.train("toy_mtppo", algo="a2c", a2c__lr=args.lr, rollout__workers=0, train__total_steps=args.steps)
    result = mtrl.evaluate(run_dir, episodes=8).runs[0].result
    print(result.table())
    print(f"a2c on toy-mt3 after {args.steps} env steps: mean return {result.mean_return:.2f} ({run_dir})")


if __name__ == "__main__":
    main()
