"""Collect fixed-length fragments from a vector env of tasks with a CPU copy of the policy.

No Ray in this module: the Ray actor in `workers.py` and the in-process mode both wrap `Collector`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mtrl.data.batch import Episodes, Fragment
from mtrl.env.slot_state import restore_slots, slots_state
from mtrl.env.suite import TaskSuite, env_actions
from mtrl.env.vector import make_vector_env, step_flag
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import build_policy
from mtrl.nn.weights import load_actor_weights


class Collector:
    """Steps one gymnasium vector env (slot i runs task tasks[i]) and returns whole fragments.

    Episodes run on across fragments. Both autoreset modes are handled: with NEXT_STEP the step
    after an episode end is a reset step and is marked invalid; with SAME_STEP the final
    observation comes from info["final_obs"]. The fragment keeps the final observation of each
    truncated episode, for the learner to bootstrap from. Only the actor runs here.
    """

    def __init__(
        self,
        suite: TaskSuite,
        tasks: Sequence[int],
        seeds: Sequence[int],
        spec: PolicySpec,
        autoreset_mode: str = "next_step",
        max_episode_steps: int | None = None,
        backend: str = "gymnasium",
        curriculum: bool = False,
        reset_each_fragment: bool = False,
    ) -> None:
        self.suite = suite
        self.reset_each_fragment = reset_each_fragment
        self.tasks = np.asarray(tasks, dtype=np.int64)
        self.same_step = autoreset_mode == "same_step"
        # with a curriculum, slots draw their task at reset from this array (`set_task_probs`)
        self.task_probs = np.full(suite.num_tasks, 1.0 / suite.num_tasks) if curriculum else None
        self.envs = make_vector_env(suite, tasks, seeds, autoreset_mode, max_episode_steps, backend, self.task_probs)
        self.obs, _ = self.envs.reset(seed=[int(s) for s in seeds])
        self._fresh = True  # the envs were just reset: the first fragment needs no reset_each_fragment
        self.policy = build_policy(spec).eval()
        self.continuous = not spec.discrete
        self._rng = np.random.default_rng(int(seeds[0]) if len(seeds) else 0)  # warm-up random actions
        n = len(tasks)
        self._pending_reset = np.zeros(n, bool)
        self._ep_ret = np.zeros(n)
        self._ep_len = np.zeros(n, np.int64)
        self._ep_success = np.zeros(n, np.float32)
        self._ep_start = np.zeros(n, np.int64)  # where each slot's current episode starts in this fragment

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Load the learner's actor weights (tensors or numpy arrays; `actor_weights`)."""
        load_actor_weights(self.policy, weights)

    def set_task_probs(self, probs: np.ndarray) -> None:
        """The curriculum's task probabilities for the slots' next resets."""
        if self.task_probs is None:
            raise ValueError("this collector has fixed slot tasks (no curriculum)")
        self.task_probs[:] = probs

    def close(self) -> None:
        self.envs.close()

    @property
    def restorable(self) -> bool:
        """Whether `state_dict` works: gymnasium-backend slots (envpool's C++ envs cannot be saved)."""
        return isinstance(self.envs, gym.vector.SyncVectorEnv)

    def state_dict(self) -> dict[str, Any]:
        """Everything that the next fragment depends on besides the weights and torch's RNG:
        the env slots (`mtrl.env.slot_state`), episode accumulators and the warm-up action RNG.
        Tensors, numbers and strings only, for a weights_only checkpoint."""
        if not self.restorable:
            raise ValueError("only gymnasium-backend collectors can be saved (envpool's C++ envs cannot)")
        arrays = {
            **slots_state(self.envs),
            "pending_reset": self._pending_reset,
            "ep_ret": self._ep_ret,
            "ep_len": self._ep_len,
            "ep_success": self._ep_success,
            "task_id": np.asarray(self.obs["task_id"]),
        }
        if self.task_probs is not None:
            arrays["task_probs"] = self.task_probs
        state: dict[str, Any] = {k: torch.as_tensor(np.array(v, copy=True)) for k, v in arrays.items()}
        state["rng"] = json.dumps(self._rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output: replay every slot's episode so far (see `mtrl.env.slot_state`)."""
        arrays = {k: v.numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}
        if self.task_probs is not None:
            self.task_probs[:] = arrays["task_probs"]
        tasks = arrays["task_id"] if self.task_probs is not None else None
        obs = restore_slots(self.envs, arrays, tasks)
        self._fresh = False  # saved at a fragment boundary: the next fragment resets as it would have
        self.obs = {
            "obs": np.stack([o["obs"] for o in obs]),
            "task_id": np.array([o["task_id"] for o in obs], np.int64),
        }
        self._pending_reset = arrays["pending_reset"].copy()
        self._ep_ret, self._ep_len, self._ep_success = (arrays[k].copy() for k in ("ep_ret", "ep_len", "ep_success"))
        self._rng.bit_generator.state = json.loads(state["rng"])

    def collect(self, steps: int, random_actions: bool = False) -> Fragment:
        """Run `steps` vector steps and return them as one time-major fragment. With
        `random_actions` the actions are uniform over the action space (SAC's warm-up; logp 0)."""
        n = len(self.tasks)
        obs_space = self.suite.observation_space
        buf_obs = np.zeros((steps, n, *obs_space.shape), obs_space.dtype)
        buf_task = np.zeros((steps, n), np.int64)
        buf_act: np.ndarray | None = None
        logp, rewards = np.zeros((steps, n), np.float32), np.zeros((steps, n), np.float32)
        terminated, truncated, valid = (np.zeros((steps, n), bool) for _ in range(3))
        finished: list[Episodes] = []
        trunc_obs: list[np.ndarray] = []
        trunc_idx: list[np.ndarray] = []
        env_errors = np.zeros(n, np.int64)
        if self.reset_each_fragment and not self._fresh:
            self._reset_all()
        self._fresh = False
        self._ep_start[:] = 0
        time_idx = np.arange(steps)[:, None]
        for t in range(steps):
            buf_obs[t], buf_task[t] = self.obs["obs"], self.obs["task_id"]
            action_np, lp_np = self._act(random_actions)
            if buf_act is None:
                buf_act = np.zeros((steps, *action_np.shape), action_np.dtype)
            buf_act[t], logp[t] = action_np, lp_np
            valid[t] = ~self._pending_reset
            next_obs, rew, term, trunc, infos = self.envs.step(env_actions(self.suite.action_space, action_np))
            rewards[t], terminated[t], truncated[t] = rew, term, trunc
            if trunc.any():
                idx = np.flatnonzero(trunc)
                trunc_obs.append(self._final_obs(next_obs, infos, idx))
                trunc_idx.append(np.stack([np.full(len(idx), t), idx], axis=1))
            failed = step_flag(infos, "env_error", trunc, self.same_step) > 0
            if failed.any():  # drop the failed env's partial episode: its steps in this fragment become invalid
                env_errors += failed
                valid &= ~((time_idx >= self._ep_start) & (time_idx <= t) & failed)
                self._ep_ret[failed], self._ep_len[failed], self._ep_success[failed] = 0.0, 0, 0.0
            finished.append(self._track_episodes(buf_task[t], rew, term | trunc, valid[t], infos))
            self._ep_start[term | trunc] = t + 1
            self._pending_reset = (term | trunc) & (not self.same_step)
            self.obs = next_obs
        assert buf_act is not None  # set at the first step, and steps >= 1 (rollout.steps_per_env)
        return Fragment(
            buf_obs,
            buf_task,
            buf_act,
            logp,
            rewards,
            terminated,
            truncated,
            valid,
            np.concatenate(trunc_obs) if trunc_obs else np.zeros((0, *obs_space.shape), obs_space.dtype),
            np.concatenate(trunc_idx) if trunc_idx else np.zeros((0, 2), np.int64),
            self.obs["obs"].copy(),
            np.asarray(self.obs["task_id"], np.int64).copy(),
            Episodes.concat(finished),
            env_errors,
        )

    def _act(self, random_actions: bool) -> tuple[np.ndarray, np.ndarray]:
        """(actions, their log-probs) for every slot's current observation: the policy's, or uniform
        over the action space with log-prob 0 (SAC's warm-up)."""
        if random_actions:
            return self._random_actions(len(self.tasks)), np.zeros(len(self.tasks), np.float32)
        action, lp = self.policy.act(torch.from_numpy(self.obs["obs"]), torch.from_numpy(self.obs["task_id"]))
        return action.numpy(), lp.numpy()

    def _reset_all(self) -> None:
        """Start a new episode in every slot (each with its next derived seed); the episodes cut
        off here were bootstrapped at the last fragment's end and are not counted as finished."""
        self.obs, _ = self.envs.reset()
        self._pending_reset[:] = False
        self._ep_ret[:], self._ep_len[:], self._ep_success[:] = 0.0, 0, 0.0

    def _random_actions(self, n: int) -> np.ndarray:
        space = self.suite.action_space  # a Box or a Discrete: TaskSuite allows no other
        if self.continuous:
            assert isinstance(space, gym.spaces.Box)
            return self._rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)
        assert isinstance(space, gym.spaces.Discrete)
        return self._rng.integers(space.n, size=n)

    def _final_obs(self, next_obs: dict, infos: dict, idx: np.ndarray) -> np.ndarray:
        """The last observation of each truncated episode in slots `idx`."""
        if self.same_step:
            return np.stack([infos["final_obs"][i]["obs"] for i in idx])
        return next_obs["obs"][idx]

    def _track_episodes(
        self, task: np.ndarray, rew: np.ndarray, done: np.ndarray, valid: np.ndarray, infos: dict
    ) -> Episodes:
        """Accumulate per-slot episode stats; return the episodes that ended this step (`task`:
        each slot's task on this step)."""
        self._ep_ret += np.where(valid, rew, 0.0)
        self._ep_len += valid
        self._ep_success = np.maximum(self._ep_success, step_flag(infos, "success", done, self.same_step) * valid)
        ended = np.flatnonzero(done & valid)
        success = self._ep_success[ended] if self.suite.reports_success else np.full(len(ended), np.nan, np.float32)
        episodes = Episodes(task[ended], self._ep_ret[ended].copy(), self._ep_len[ended].copy(), success.copy())
        self._ep_ret[ended], self._ep_len[ended], self._ep_success[ended] = 0.0, 0, 0.0
        return episodes
