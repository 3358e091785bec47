"""GRPO and MT-GRPO: the worked cases of docs/algorithms/grpo.md, group seeding, filtering, task weights, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mtrl
from mtrl.algos.grpo import GroupBatch, grpo_terms
from mtrl.algos.grpo_weights import TaskWeights, iwu_gradient
from mtrl.algos.losses import reduce_terms
from mtrl.algos.mt_grpo import GroupSampler, inflation
from mtrl.collect.groups import GroupCollector
from mtrl.config import MTGRPOConfig, PPOConfig, load_config
from mtrl.data.advantage import group_relative, zero_variance_groups
from mtrl.data.batch import Episodes, Groups
from mtrl.data.reduce import rank_within
from mtrl.env.suite import get_suite
from mtrl.errors import ConfigError
from mtrl.nn.policy import build_policy
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import policy_spec, train
from tests.conftest import ROOT

TOY = ROOT / "configs/toy_mtppo.yaml"


def test_group_relative_advantage_worked_case():
    adv = group_relative(torch.tensor([1.0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))
    assert torch.allclose(adv, torch.tensor([0.866025, -0.866025, -0.866025, 0.866025]), atol=1e-6)


def test_group_relative_size_one_and_equal_groups_give_zero():
    r = torch.tensor([5.0, 1.0, 1.0, 1.0, 3.0, 0.0, 1.0, 0.0])
    g = torch.tensor([7, 2, 2, 2, 9, 9, 4, 4])  # ids need not be contiguous or sorted
    adv = group_relative(r, g)
    assert adv[0] == 0 and (adv[1:4] == 0).all()  # size 1; all equal
    assert torch.allclose(adv[4:6], torch.tensor([0.707106, -0.707106]), atol=1e-5)  # std = sqrt(4.5) unbiased
    assert torch.allclose(adv[6:], torch.tensor([0.707106, -0.707106]), atol=1e-5)
    assert sorted(zero_variance_groups(r.numpy(), g.numpy()).tolist()) == [2, 7]


def test_iwu_step_worked_case():
    z = torch.full((3,), 1 / 3)
    g = iwu_gradient(z, torch.tensor([0.01, 0.05, 0.0]), torch.tensor([0.2, 0.5, 0.8]), lam=0.2)
    assert torch.allclose(g, torch.tensor([-0.023333, 0.01, 0.013333]), atol=1e-6)
    z_new = torch.softmax(torch.zeros(3) - 0.025 * g, 0)  # the plain step xi <- xi - beta g
    assert torch.allclose(z_new, torch.tensor([0.333528, 0.333250, 0.333222]), atol=1e-6)


def test_iwu_with_adamw_moves_weight_to_the_worst_task():
    w = TaskWeights(3, MTGRPOConfig(lam=0.5))
    w.measure(
        Episodes(np.array([0, 1, 2]), np.zeros(3), np.ones(3, np.int64), np.array([0.1, 0.5, 0.9], np.float32)),
        "success",
    )
    for _ in range(20):
        w.step(torch.zeros(3))
    z = w.z()
    assert z[0] > z[1] > z[2] and torch.isclose(z.sum(), torch.tensor(1.0))


def test_ratio_preserving_inflation_worked_case():
    m, z_hat = inflation(np.array([0.5, 0.3, 0.2]), np.array([0.8, 0.1, 0.5]), cap=5.0)
    np.testing.assert_allclose(m, [5, 1.111111, 2], atol=1e-5)
    np.testing.assert_allclose(z_hat, [0.7732, 0.1031, 0.1237], atol=1e-4)
    m, _ = inflation(np.array([0.5, 0.5]), np.array([1.0, 0.0]), cap=5.0)  # every group filtered: capped
    np.testing.assert_allclose(m, [5, 1])


def fake_groups(tasks: np.ndarray, ids: np.ndarray, outcome: dict[int, list[float]], g: int = 4) -> Groups:
    """Groups of one-step episodes whose returns come from `outcome[task]` (one list per group)."""
    ret = np.concatenate([outcome[t] for t in tasks]).astype(np.float64)
    e = len(ret)
    return Groups(
        np.zeros((e, 2), np.float32),
        np.zeros(e, np.int64),
        np.zeros(e, np.float32),
        np.arange(e),
        np.repeat(ids, g),
        Episodes(np.repeat(tasks, g), ret, np.ones(e, np.int64), np.full(e, np.nan, np.float32)),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
    )


def answer(requests, collect):
    """Drive a sampler's request generator with collect(tasks, seeds, group_ids), as the pool does."""
    try:
        request = next(requests)
        while True:
            assert request.group_size == 4
            request = requests.send(collect(request.tasks, request.seeds, request.group_ids))
    except StopIteration as done:
        return done.value


def test_zero_variance_groups_are_dropped_and_counted_per_task():
    outcome = {0: [1, 1, 1, 1], 1: [0, 1, 0, 0], 2: [0, 0, 0, 0]}  # task 0 and 2 groups carry no signal
    calls = []

    def collect(tasks, seeds, ids):
        calls.append(tasks)
        return fake_groups(tasks, ids, outcome)

    sampler = GroupSampler(3, 6, ratio_preserving=False, cfg=MTGRPOConfig())
    got = answer(sampler.gather(np.full(3, 1 / 3), torch.Generator().manual_seed(0), "return", 4), collect)
    assert len(calls) == 1 and np.bincount(calls[0]).tolist() == [2, 2, 2]  # even split, no resampling
    assert got.generated.tolist() == [2, 2, 2] and got.zero.tolist() == [2, 0, 2]
    assert set(got.kept.episodes.task_id.tolist()) == {1} and len(got.kept.group) == 8
    assert got.env_steps == 24 and len(got.episodes.task_id) == 24  # dropped groups still cost env steps
    np.testing.assert_allclose(sampler.rho, [0.1, 0.0, 0.1])  # EMA (decay 0.9) of the filtered fractions 1, 0, 1


def test_ratio_preserving_sampler_resamples_deficits_and_caps_at_the_quota():
    outcome = {0: [1, 0, 0, 0], 1: [2, 2, 2, 2]}  # task 1 always filtered
    calls = []

    def collect(tasks, seeds, ids):
        calls.append(np.bincount(tasks, minlength=2))
        assert len(np.unique(ids)) == len(ids)
        return fake_groups(tasks, ids, outcome)

    sampler = GroupSampler(2, 20, ratio_preserving=True, cfg=MTGRPOConfig(resample_rounds=2, rho_ema=0.0))
    z = np.array([0.5, 0.5])
    got = answer(sampler.gather(z, torch.Generator().manual_seed(1), "return", 4), collect)
    assert len(calls) == 3  # the first round plus 2 deficit rounds, as task 1 never fills its quota
    kept = np.bincount(got.kept.episodes.task_id, minlength=2) // 4
    n = got.quota
    assert n.sum() == 20 and kept.tolist() == [n[0], 0]  # task 0 fills its quota, never more; task 1 cannot
    assert calls[1].tolist() == [max(n[0] - calls[0][0], 0), n[1]]  # deficits (inflation 1: rho was 0)
    assert calls[2].tolist() == [0, n[1]]
    np.testing.assert_allclose(sampler.rho, [0.0, 1.0])
    # the next iteration inflates task 1 by the cap: it gets ~5/6 of the generated groups
    m, z_hat = inflation(z, sampler.rho, 5.0)
    np.testing.assert_allclose(z_hat, [1 / 6, 5 / 6])


def test_rank_within():
    assert rank_within(np.array([2, 0, 2, 2, 0, 1])).tolist() == [0, 0, 1, 2, 1, 0]
    assert rank_within(np.zeros(0, np.int64)).tolist() == []


def test_a_task_with_weight_zero_gets_no_gradient():
    cfg = load_config(TOY, ["policy.arch=multihead"])
    policy = build_policy(policy_spec(cfg, get_suite("toy-mt3")))
    gen = torch.Generator().manual_seed(0)
    obs, task = torch.rand(12, 9, generator=gen), torch.tensor([0, 1, 2] * 4)
    mb = GroupBatch(
        obs, task, torch.randint(0, 4, (12,), generator=gen), torch.full((12,), -1.2), torch.randn(12, generator=gen)
    )
    loss = reduce_terms(grpo_terms(policy, mb, torch.tensor([0.5, 0.0, 0.5]), PPOConfig())).loss
    loss.backward()
    heads = policy.actor.head
    head_grad = heads.per_task(heads.weight.grad)
    assert head_grad[1].abs().max() == 0 and heads.bias.grad[1].abs().max() == 0
    assert head_grad[0].abs().max() > 0 and head_grad[2].abs().max() > 0
    trunk_grad = policy.actor.trunk[0].weight.grad.clone()
    policy.zero_grad()
    keep = task != 1  # the same loss without task 1's rows: identical gradients
    kept = GroupBatch(*(getattr(mb, f)[keep] for f in mb.__dataclass_fields__))
    loss2 = reduce_terms(grpo_terms(policy, kept, torch.tensor([0.5, 0.0, 0.5]), PPOConfig())).loss
    loss2.backward()
    assert torch.allclose(policy.actor.trunk[0].weight.grad, trunk_grad, atol=1e-7)


def test_group_members_start_from_the_same_state_on_real_minigrid():
    """MiniGrid-MemoryS11 places the cue object and the agent at random: the seed decides."""
    suite = get_suite("minigrid-mt3")
    cfg = load_config(ROOT / "configs/minigrid_mt3_grpo.yaml")
    collector = GroupCollector(suite, policy_spec(cfg, suite), max_episode_steps=6)
    tasks, seeds = np.array([2, 2, 2, 0]), np.array([11, 12, 13, 11])
    groups = collector.collect(tasks, seeds, np.array([5, 6, 7, 8]), 4)
    first = groups.obs[np.r_[0, np.flatnonzero(np.diff(groups.episode)) + 1]]  # each episode's first observation
    assert len(first) == 16 and groups.group.tolist() == np.repeat([5, 6, 7, 8], 4).tolist()
    per_group = first.reshape(4, 4, -1)
    assert (per_group == per_group[:, :1]).all()  # the 4 episodes of each group start identically
    assert len({per_group[i, 0].tobytes() for i in range(3)}) > 1  # other seeds, other starts
    assert (groups.episodes.length <= 6).all() and groups.num_steps == groups.episodes.length.sum()
    # the members then act independently: their action sequences differ
    acts = [groups.actions[groups.episode == e] for e in range(4)]
    assert len({a.tobytes() for a in acts}) > 1
    collector.close()


def test_grpo_config_refuses_envpool_and_pipeline():
    with pytest.raises(ConfigError, match="env.backend=gymnasium"):
        load_config(TOY, ["algo=grpo", "env.backend=envpool"])
    with pytest.raises(ConfigError, match="unknown config key 'grpo.group'"):
        load_config(TOY, ["algo=grpo", "grpo.group=4"])


@pytest.mark.parametrize("algo", ["grpo", "mt_grpo"])
def test_toy_suite_is_learned_by_grpo_within_30k_steps(tmp_path, algo):
    """Random play scores about 0.33 per episode (8 is the maximum)."""
    run = train(
        load_config(
            TOY,
            [
                f"algo={algo}",
                "grpo.outcome=return",
                "grpo.lr=1e-3",  # the toy config's ppo.lr, which GRPO read before config_version 2
                "rollout.workers=0",
                f"run_dir={tmp_path}",
                "train.total_steps=30000",
                "train.eval_episodes=16",
            ],
        )
    )
    result = json.loads((run / "eval.json").read_text())
    assert result["mean_return"] >= 6.0, result


def test_mt_grpo_logs_and_checkpoints_its_task_weights_and_resumes(tmp_path):
    ov = [
        "algo=mt_grpo",
        "grpo.outcome=return",
        "rollout.workers=0",
        f"run_dir={tmp_path}",
        "train.eval_episodes=0",
        "train.checkpoint_every=1",
        "grpo.groups=6",
    ]
    run = train(load_config(TOY, ov + ["train.total_steps=2000"]))
    _, ckpt = load_latest(run)
    state = ckpt["optimizer"]
    xi = state["task_weights"]["xi"]
    assert xi.shape == (3,) and xi.abs().sum() > 0  # the weights moved
    assert state["sampler"]["rho"].shape == (3,)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"])
    for task in ("sequence-0", "sequence-1", "sequence-2"):
        assert {f"grpo/z/{task}", f"grpo/filtered/{task}"} <= tags
    train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=4000"]))
    _, ckpt2 = load_latest(run)
    assert ckpt2["env_steps"] >= 4000 and not torch.equal(ckpt2["optimizer"]["task_weights"]["xi"], xi)


def test_group_starts_on_real_metaworld_depend_only_on_the_seed():
    """Meta-World draws a goal variant at every reset; reused envs must still start a group's
    episodes from the seed's state (envs/metaworld.py::SeededVariantReset)."""
    pytest.importorskip("metaworld")
    suite = get_suite("metaworld-mt1-pick-place-v3")
    cfg = load_config(TOY, ["env.suite=metaworld-mt1-pick-place-v3", "policy.arch=mlp"])
    collector = GroupCollector(suite, policy_spec(cfg, suite), max_episode_steps=4)

    def starts(seeds: list[int]) -> np.ndarray:
        groups = collector.collect(np.zeros(len(seeds), np.int64), np.array(seeds), np.arange(len(seeds)), 3)
        return groups.obs[::4].reshape(len(seeds), 3, -1)  # 4 steps per episode: every 4th row is a start

    first = starts([1, 2])
    assert (first == first[:, :1]).all() and not np.array_equal(first[0, 0], first[1, 0])
    again = starts([2, 1])  # the same envs, now with a history: the same seeds, the same starts
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])
    collector.close()


def test_an_episode_that_never_ends_stops_group_collection_with_a_clear_error(monkeypatch):
    import gymnasium as gym

    import mtrl.collect.groups as group_rollout
    from envs.toy import PointEnv
    from mtrl.errors import EnvError
    from mtrl.nn.policy import spec_for

    monkeypatch.setattr(group_rollout, "MAX_EPISODE_STEPS", 50)
    suite = mtrl.TaskSuite(
        name="endless",
        tasks=("forever",),
        build=lambda task, seed: PointEnv(0.5, length=10**9),
        observation_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    )
    spec = spec_for((2,), suite.action_space, 1, "mlp", 16, 1)
    with pytest.raises(EnvError, match="task 'forever': an episode ran 50 steps without ending"):
        GroupCollector(suite, spec).collect(np.array([0]), np.array([1]), np.array([0]), 2)
