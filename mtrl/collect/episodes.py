"""Whole evaluation episodes: the one stepping loop for evaluation and video."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from mtrl.env.suite import TaskSuite, env_actions

if TYPE_CHECKING:
    from mtrl.nn.policy import Policy


@dataclass(frozen=True)
class EvalChunk:
    """A unit of evaluation work: one episode per entry, task tasks[i] from reset seed seeds[i],
    with actions sampled from torch seeded by `torch_seed` (so its result does not depend on which
    process runs it, or on what that process ran before)."""

    tasks: np.ndarray  # [n] task indices
    seeds: np.ndarray  # [n] reset seeds
    torch_seed: list[int]  # entropy for numpy's SeedSequence, which draws the torch seed


class ChunkResult(NamedTuple):
    """What a chunk gives back, per episode: the undiscounted return, the length and the success."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray


def run_chunks(
    policy: Policy, suite: TaskSuite, work: list[EvalChunk], greedy: bool, max_episode_steps: int | None
) -> list[ChunkResult]:
    """Run evaluation chunks here, one after the other (a progress bar on a terminal): the one
    runner that every other (the rollout actors, Ray tasks) calls on its share."""
    device = next(policy.parameters()).device
    outs = []
    with torch.random.fork_rng(devices=[]):
        for chunk in tqdm(work, desc="eval", unit="chunk", disable=None, leave=False, file=sys.stderr):
            torch.manual_seed(int(np.random.SeedSequence(chunk.torch_seed).generate_state(1)[0]))
            outs.append(
                ChunkResult(*run_episodes(policy, suite, chunk.tasks, chunk.seeds, greedy, max_episode_steps, device))
            )
    return outs


def split_work(work: list[EvalChunk], parts: int) -> list[list[EvalChunk]]:
    """`work` in at most `parts` contiguous, non-empty shares (so results concatenate in order)."""
    return [[work[i] for i in idx] for idx in np.array_split(np.arange(len(work)), parts) if len(idx)]


def run_episodes(
    policy: Policy,
    suite: TaskSuite,
    tasks: Sequence[int],
    seeds: Sequence[int],
    greedy: bool,
    max_episode_steps: int | None,
    device: torch.device,
    render: Callable[[int, gym.Env], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one episode in each of len(tasks) fresh envs (task tasks[i], reset seed seeds[i]),
    stepping only the envs whose episode is still running (a vector env would step all of them
    until the longest episode ends) and batching the policy over them. `render(i, env)` is
    called after the reset and after every step of env i (video frames). Returns per env the
    undiscounted return, length and success."""
    envs = [suite.make_env(int(t), int(s), max_episode_steps) for t, s in zip(tasks, seeds, strict=True)]
    try:
        obs = [env.reset(seed=int(s))[0]["obs"] for env, s in zip(envs, seeds)]
        n = len(envs)
        if render is not None:
            for slot, env in enumerate(envs):
                render(slot, env)
        task_ids = torch.as_tensor(np.array(tasks, np.int64), device=device)  # a copy: Ray's arrays are read-only
        live = np.ones(n, bool)
        ret, length, success = np.zeros(n), np.zeros(n), np.zeros(n, np.float32)
        while live.any():
            idx = np.flatnonzero(live)
            action, _ = policy.act(
                torch.as_tensor(np.stack([obs[i] for i in idx]), device=device),
                task_ids[torch.as_tensor(idx, device=device)],
                greedy=greedy,
            )
            for i, a in zip(idx, env_actions(suite.action_space, action.cpu().numpy())):
                o, rew, term, trunc, info = envs[i].step(a)
                obs[i] = o["obs"]
                if render is not None:
                    render(int(i), envs[i])
                if info.get("env_error"):  # the env failed and was rebuilt (mtrl.env.envguard): this slot starts over
                    ret[i], length[i], success[i] = 0.0, 0, 0.0
                    continue
                ret[i] += rew
                length[i] += 1
                success[i] = max(success[i], float(info.get("success", 0.0)))
                live[i] = not (term or trunc)
        return ret, length, success
    finally:
        for env in envs:
            env.close()
