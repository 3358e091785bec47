"""Restorable env slots: what makes an in-process resume bit-exact without pickling envs.

Every episode of a slot is reset with an explicit seed, a function of the slot's seed and the
episode's index (the first episode uses the slot seed itself), and the slot logs the actions of
its current episode. A slot's whole state is then (slot seed, episode index, actions so far):
integers and floats that a `weights_only` checkpoint can hold. Restoring re-creates the env,
resets it with that episode's seed and replays the actions, which brings any env that is
deterministic given its reset seed (MiniGrid, Meta-World, the toy suites) to the exact state it
was in, step counter and time limit included.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def episode_seed(slot_seed: int, index: int) -> int:
    """The reset seed of a slot's episode `index` (0: the slot seed itself)."""
    return slot_seed if index == 0 else int(np.random.SeedSequence([slot_seed, index]).generate_state(1)[0])


class SeededEpisodes(gym.Wrapper):
    """Reset each episode with `episode_seed(slot seed, index)` and log the current episode's actions."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.slot_seed, self.index = 0, -1
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:  # the vector env's first reset: a new slot seed
            self.slot_seed, self.index = int(seed), 0
        else:  # an autoreset
            self.index += 1
        self.actions = []
        return self.env.reset(seed=episode_seed(self.slot_seed, self.index), options=options)

    def step(self, action: Any):
        self.actions.append(np.array(action, copy=True))
        return self.env.step(action)

    def restore(self, slot_seed: int, index: int, actions: np.ndarray, options: dict[str, Any] | None = None) -> Any:
        """Bring the env to episode `index` of `slot_seed` after `actions`; returns its observation."""
        self.slot_seed, self.index = slot_seed, index
        obs, _ = self.env.reset(seed=episode_seed(slot_seed, index), options=options)
        for a in actions:
            obs, *_ = self.env.step(a)
        self.actions = [np.array(a, copy=True) for a in actions]
        return obs


def _seeded(env: gym.Env) -> SeededEpisodes:
    """A slot of a SyncVectorEnv that `mtrl.env.vector.make_vector_env` built: it wraps every one."""
    assert isinstance(env, SeededEpisodes)
    return env


def slots_state(envs: gym.vector.SyncVectorEnv) -> dict[str, Any]:
    """The state of every SeededEpisodes slot of a SyncVectorEnv, as arrays."""
    slots = [_seeded(e) for e in envs.envs]
    lengths = np.array([len(e.actions) for e in slots], np.int64)
    acts = [np.asarray(a) for e in slots for a in e.actions]
    return {
        "slot_seed": np.array([e.slot_seed for e in slots], np.int64),
        "index": np.array([e.index for e in slots], np.int64),
        "lengths": lengths,
        "actions": np.stack(acts) if acts else np.zeros((0,)),
        "autoreset": envs._autoreset_envs.copy(),  # NEXT_STEP: which slots reset on their next step
    }


def restore_slots(envs: gym.vector.SyncVectorEnv, state: dict[str, Any], tasks: np.ndarray | None) -> list[Any]:
    """Restore every slot from `slots_state` output; returns each slot's observation. `tasks`
    forces each slot's task (curriculum slots, whose draw depends on the probabilities then)."""
    if len(state["index"]) != len(envs.envs):
        raise ValueError(f"saved state has {len(state['index'])} env slots, this collector has {len(envs.envs)}")
    ends = np.cumsum(state["lengths"])
    obs = []
    for i, env in enumerate(map(_seeded, envs.envs)):
        acts = np.asarray(state["actions"])[ends[i] - state["lengths"][i] : ends[i]]
        options = None if tasks is None else {"task": int(tasks[i])}
        obs.append(env.restore(int(state["slot_seed"][i]), int(state["index"][i]), acts, options))
    envs._autoreset_envs = np.asarray(state["autoreset"], bool).copy()
    return obs
