"""Collect whole episodes in groups for GRPO: G episodes of one task from one reset seed.

No Ray in this module: the Ray actor in `workers.py` and the in-process mode both wrap
`GroupCollector`. Group rollouts need every env reset with a chosen seed at a chosen moment, so
they step the reference gymnasium envs one by one (as gymnasium's SyncVectorEnv does) with batched
inference over the episodes still running; finished episodes cost no further env steps.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mtrl.data.batch import Episodes, Groups
from mtrl.env.suite import TaskSuite, env_actions
from mtrl.env.vector import IntSeq
from mtrl.errors import EnvError
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy
from mtrl.nn.weights import load_actor_weights

MAX_EPISODE_STEPS = 100_000  # an env that never ends would stall a group forever


class GroupCollector:
    """Runs groups of whole episodes with a CPU copy of the actor.

    Envs are built on first use and kept per task, so a worker holds as many envs of a task as
    the largest number of its episodes it ever ran at once.
    """

    def __init__(self, suite: TaskSuite, spec: PolicySpec, max_episode_steps: int | None = None) -> None:
        self.suite, self.max_episode_steps = suite, max_episode_steps
        self.policy = build_policy(spec).eval()
        self._envs: dict[int, list[gym.Env]] = defaultdict(list)

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Load the learner's actor weights (`mtrl.nn.weights.actor_weights`)."""
        load_actor_weights(self.policy, weights)

    def close(self) -> None:
        for envs in self._envs.values():
            for env in envs:
                env.close()

    def _take_envs(self, tasks: np.ndarray) -> list[gym.Env]:
        """One env per episode slot, reusing the cached envs of each task (built on demand)."""
        used: dict[int, int] = defaultdict(int)
        out = []
        for task in tasks.tolist():
            cache = self._envs[task]
            if used[task] == len(cache):
                seed = int(np.random.SeedSequence([task, len(cache)]).generate_state(1)[0])
                cache.append(self.suite.make_env(task, seed, self.max_episode_steps))
            out.append(cache[used[task]])
            used[task] += 1
        return out

    def collect(self, tasks: IntSeq, seeds: IntSeq, group_ids: IntSeq, group_size: int) -> Groups:
        """Run group g = G = `group_size` episodes of task tasks[g], each reset with seeds[g]; return
        the groups that finished cleanly (a group with an env failure is dropped and counted)."""
        g = group_size
        slot_task = np.repeat(np.asarray(tasks, np.int64), g)
        slot_seed = np.repeat(np.asarray(seeds, np.int64), g)
        envs = self._take_envs(slot_task)
        n = len(envs)
        obs = np.stack([env.reset(seed=int(s))[0]["obs"] for env, s in zip(envs, slot_seed)])
        ret, length = np.zeros(n), np.zeros(n, np.int64)
        success, failed = np.zeros(n, np.float32), np.zeros(n, bool)
        steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (slots, obs, actions, logp)
        active = np.arange(n)
        while len(active):
            action, logp = self.policy.act(torch.from_numpy(obs[active]), torch.from_numpy(slot_task[active]))
            action_np = action.numpy()
            steps.append((active, obs[active], action_np, logp.numpy()))
            action_np = env_actions(self.suite.action_space, action_np)
            done = np.zeros(len(active), bool)
            for j, i in enumerate(active.tolist()):  # gymnasium envs step one by one, as in SyncVectorEnv
                o, r, term, trunc, info = envs[i].step(action_np[j])
                obs[i] = o["obs"]
                ret[i] += r
                length[i] += 1
                success[i] = max(success[i], float(info.get("success", 0.0)))
                failed[i] |= bool(info.get("env_error", False))
                done[j] = term or trunc
            active = active[~done]
            if len(active) and length[active[0]] >= MAX_EPISODE_STEPS:
                task = self.suite.tasks[slot_task[active[0]]]
                raise EnvError(
                    f"suite '{self.suite.name}' task '{task}': an episode ran {MAX_EPISODE_STEPS} steps "
                    "without ending; GRPO needs whole episodes (set env.max_episode_steps)"
                )
        slots = np.concatenate([s[0] for s in steps])
        order = np.argsort(slots, kind="stable")  # episode by episode, each in time order
        slots = slots[order]
        group_failed = failed.reshape(-1, g).any(axis=1)
        keep_slot = ~np.repeat(group_failed, g)
        keep_step = keep_slot[slots]
        new_index = np.cumsum(keep_slot) - 1  # renumber the kept episodes 0..E-1
        if not self.suite.reports_success:
            success[:] = np.nan
        episodes = Episodes(slot_task[keep_slot], ret[keep_slot], length[keep_slot], success[keep_slot])
        return Groups(
            np.concatenate([s[1] for s in steps])[order][keep_step],
            np.concatenate([s[2] for s in steps])[order][keep_step],
            np.concatenate([s[3] for s in steps])[order][keep_step],
            new_index[slots[keep_step]],
            np.repeat(np.asarray(group_ids, np.int64), g)[keep_slot],
            episodes,
            np.array([int(failed.sum())], np.int64),
            np.array([int((~keep_step).sum())], np.int64),
        )
