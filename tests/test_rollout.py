"""Rollout collection under both gymnasium autoreset modes, with truncation bootstrapping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import mtrl
from mtrl.algos.ppo import fragment_values
from mtrl.collect.fragments import Collector
from mtrl.nn.policy import build_policy, spec_for
from mtrl.nn.weights import actor_weights

HORIZON = 5


class CountEnv(gym.Env):
    """obs = [t / 10]; never terminates; truncated by a TimeLimit after HORIZON steps; reward 1."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t / 10], np.float32), 1.0, False, False, {"success": float(self.t == HORIZON)}


def count_suite() -> mtrl.TaskSuite:
    return mtrl.TaskSuite(
        "count-mt2",
        ("a", "b"),
        lambda task, seed: gym.wrappers.TimeLimit(CountEnv(), HORIZON),
        CountEnv.observation_space,
        CountEnv.action_space,
        reports_success=True,
    )


def _collector(suite, mode, n=3):
    spec = spec_for(suite.observation_space.shape, suite.action_space, suite.num_tasks, "multihead", 16, 1)
    torch.manual_seed(0)
    return Collector(suite, [i % suite.num_tasks for i in range(n)], list(range(n)), spec, mode)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_truncation_bootstrap_and_episode_boundaries(mode):
    c = _collector(count_suite(), mode)
    frag = c.collect(23)
    valid_obs = frag.obs[:, 0, 0][frag.valid[:, 0]]
    # Every episode is exactly obs 0.0 .. 0.4, whatever the autoreset mode.
    expected = np.tile(np.arange(HORIZON) / 10, 5)[: len(valid_obs)]
    np.testing.assert_allclose(valid_obs, expected, atol=1e-6)
    assert not frag.terminated.any()
    assert (frag.truncated[frag.valid] == np.isclose(frag.obs[frag.valid][:, 0], 0.4)).all()
    # Each truncation keeps its final obs (0.5, which no stored observation holds under
    # SAME_STEP); the learner bootstraps from V of it, and from nothing elsewhere.
    assert sorted(map(tuple, frag.trunc_idx)) == sorted(zip(*np.nonzero(frag.truncated)))
    np.testing.assert_allclose(frag.trunc_obs[:, 0], 0.5, atol=1e-6)
    values, bootstrap, last_value = fragment_values(c.policy, frag, torch.device("cpu"))
    with torch.no_grad():
        v_final = c.policy.value(torch.tensor([[0.5]]), torch.tensor([0])).item()
        v_last = c.policy.value(torch.as_tensor(frag.last_obs), torch.as_tensor(frag.last_task_id)).numpy()
        v_all = c.policy.value(torch.as_tensor(frag.obs[:, 1]), torch.as_tensor(frag.task_id[:, 1])).numpy()
    t_idx = np.flatnonzero(frag.truncated[:, 0])
    np.testing.assert_allclose(bootstrap[t_idx, 0], v_final, rtol=1e-5)
    assert (bootstrap[~frag.truncated] == 0).all()
    np.testing.assert_allclose(last_value, v_last, rtol=1e-5)
    np.testing.assert_allclose(values[:, 1], v_all, rtol=1e-5)
    # Finished episodes: length HORIZON, return HORIZON, success 1.
    assert len(frag.episodes.ret) > 0
    assert (frag.episodes.length == HORIZON).all() and (frag.episodes.ret == HORIZON).all()
    assert (frag.episodes.success == 1).all()
    if mode == "next_step":  # the step after each episode end is a reset step, not a transition
        done = frag.truncated[:-1]
        assert (~frag.valid[1:][done]).all() and frag.valid[1:][~done].all()
    else:
        assert frag.valid.all()


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_episode_stats_add_up_across_fragments(mode):
    c = _collector(mtrl.get_suite("toy-mt3"), mode, n=6)
    frags = [c.collect(17) for _ in range(3)]  # episodes span fragment boundaries
    rewards = sum(f.rewards[f.valid].sum() for f in frags)
    finished = sum(f.episodes.ret.sum() for f in frags)
    assert finished <= rewards + 1e-6
    assert rewards - finished <= c._ep_ret.sum() + 1e-6  # the rest belongs to unfinished episodes
    ep = mtrl.data.batch.Episodes.concat([f.episodes for f in frags])
    assert ((ep.success == 1) == (ep.ret == 8)).all()


def test_task_ids_travel_with_every_step():
    c = _collector(mtrl.get_suite("toy-mt3"), "next_step", n=6)
    frag = c.collect(10)
    assert (frag.task_id == np.array([0, 1, 2, 0, 1, 2])).all()


def test_workers_get_the_actor_weights_only():
    c = _collector(mtrl.get_suite("toy-mt3"), "next_step")
    torch.manual_seed(1)
    learner_policy = build_policy(c.policy.spec)
    weights = actor_weights(learner_policy)
    assert weights and not any(k.startswith("critic.") for k in weights)
    c.set_weights(weights)
    obs, task = torch.randn(4, 9), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(c.policy.distribution(obs, task).logits, learner_policy.distribution(obs, task).logits)
    with pytest.raises(ValueError, match="do not fit"):
        c.set_weights({**weights, "actor.bogus": np.zeros(1)})
