"""Multi-task SAC pieces: the temperature loss worked case, per-task replay, Polyak targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtrl.algos.sac_learner import SACLearner, alpha_loss
from mtrl.data.replay import TaskReplay
from mtrl.errors import ConfigError
from mtrl.nn.network import PolicySpec
from mtrl.nn.sac import SACActor, TwinQ


def test_alpha_gradient_worked_case_and_no_cross_task_gradient():
    log_alpha = torch.tensor([math.log(2.0), 0.0], requires_grad=True)
    logp, task = torch.tensor([-2.0, -2.0, 6.0, 6.0]), torch.tensor([0, 0, 1, 1])
    alpha_loss(log_alpha, logp, task, target_entropy=-4.0).backward()
    assert torch.allclose(log_alpha.grad, torch.tensor([3.0, -1.0]))
    log_alpha.grad = None
    alpha_loss(log_alpha, logp[:2], task[:2], target_entropy=-4.0).backward()  # task 0's samples only
    assert log_alpha.grad[1] == 0 and log_alpha.grad[0] != 0


def replay(capacity=4, tasks=2, max_bytes=2**30):
    return TaskReplay(tasks, capacity, (3,), np.float32, 2, max_bytes)


def add(buf, task, values):
    """Transitions whose every field encodes `values` (obs = value, next_obs = value + 0.5)."""
    v = np.asarray(values, np.float32)
    t = np.full(len(v), task) if np.isscalar(task) else np.asarray(task)
    buf.add(t, np.repeat(v[:, None], 3, 1), np.repeat(v[:, None], 2, 1), v, np.repeat(v[:, None] + 0.5, 3, 1), v > 100)


def test_replay_wraps_around_per_task():
    buf = replay()
    add(buf, 0, [1, 2, 3])
    add(buf, [1, 0, 0, 0], [10, 4, 5, 6])  # task 0 wraps: 5 and 6 overwrite 1 and 2
    assert buf.size.tolist() == [4, 1] and buf.ptr.tolist() == [2, 1]
    assert sorted(buf.rewards[0].tolist()) == [3, 4, 5, 6] and buf.rewards[1, 0] == 10
    add(buf, 1, np.arange(20, 30))  # more than the capacity at once: the newest 4 stay
    assert sorted(buf.rewards[1].tolist()) == [26, 27, 28, 29] and buf.size[1] == 4


def test_replay_samples_each_task_from_its_own_buffer():
    buf = replay(capacity=50, tasks=3)
    add(buf, 0, np.arange(0, 30))
    add(buf, 2, np.arange(200, 210))  # task 1 has no data yet: it is left out, not padded
    out = buf.sample(64, np.random.default_rng(0))
    assert out["task_id"].tolist() == [0] * 64 + [2] * 64
    r = out["rewards"]
    assert ((r[:64] >= 0) & (r[:64] < 30)).all() and ((r[64:] >= 200) & (r[64:] < 210)).all()
    assert len(np.unique(r[:64])) > 15  # uniform over the filled slots, not the first few
    np.testing.assert_allclose(out["next_obs"][:, 0], r + 0.5)
    np.testing.assert_allclose(out["obs"][:, 1], r)


def test_replay_memory_bound_is_a_clear_error():
    with pytest.raises(
        ConfigError, match=r"sac.replay_size=1000000 per task x 10 tasks needs .* use sac.replay_size <= "
    ):
        TaskReplay(10, 1_000_000, (39,), np.float32, 4, max_bytes=2**30)


def test_sac_update_moves_targets_by_tau_and_each_temperature_by_its_task():
    spec = PolicySpec((5,), 3, 2, False, "multihead", 32, 2)
    torch.manual_seed(0)
    actor, critic = SACActor(spec), TwinQ(spec)
    learner = SACLearner(actor, critic, 3, 2, tau=0.1)
    with torch.no_grad():  # make the targets differ from the online critics
        for p in learner.target.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in learner.target.parameters()]
    batch = {
        "obs": torch.randn(8, 5),
        "actions": torch.rand(8, 2) * 2 - 1,
        "rewards": torch.randn(8),
        "next_obs": torch.randn(8, 5),
        "terminated": torch.zeros(8, dtype=torch.bool),
        "task_id": torch.tensor([0, 0, 0, 0, 2, 2, 2, 2]),
    }
    stats = learner.update(batch)
    assert all(np.isfinite(v) for v in stats.values())
    for old, new, online in zip(before, learner.target.parameters(), critic.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * online, atol=1e-6)
    assert (
        learner.log_alpha[1] == 0 and learner.log_alpha[0] != 0 and learner.log_alpha[2] != 0
    )  # task 1 had no samples


@pytest.mark.parametrize("autoreset", ["next_step", "same_step"])
def test_fragment_transitions_pair_each_step_with_its_true_next_observation(autoreset):
    """toy-point's observation carries t / 20, so s' must always be one tick after s, also at the
    20-step truncations (from the recorded final observation) and after the fragment's last step."""
    from mtrl.algos.sac import fragment_transitions
    from mtrl.collect.fragments import Collector
    from mtrl.config import load_config
    from mtrl.env.suite import get_suite
    from mtrl.run.trainer import policy_spec
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs/toy_point_sac.yaml")
    suite = get_suite("toy-point-mt2")
    c = Collector(suite, [0, 1, 0], [1, 2, 3], policy_spec(cfg, suite), autoreset_mode=autoreset)
    for random_actions in (True, False):
        frag = c.collect(47, random_actions)
        tr = fragment_transitions(frag)
        np.testing.assert_allclose(tr["next_obs"][:, 1], tr["obs"][:, 1] + 0.05, atol=1e-6)
        np.testing.assert_allclose(
            tr["next_obs"][:, 0], np.clip(tr["obs"][:, 0] + 0.2 * tr["actions"][:, 0], -1, 1), atol=1e-5
        )
        assert len(tr["obs"]) == frag.num_steps and frag.truncated.any()


def test_sac_learns_the_continuous_toy_within_3k_steps(tmp_path):
    """Random actions score about -12 per episode, heading the wrong way about -28, reaching and
    holding the goal about -1: the greedy policy must head for each task's own goal."""
    import json

    from mtrl.config import load_config
    from mtrl.run.trainer import train
    from tests.conftest import ROOT

    run = train(
        load_config(
            ROOT / "configs/toy_point_sac.yaml",
            [f"run_dir={tmp_path}", "train.total_steps=3000", "train.eval_episodes=4"],
        )
    )
    result = json.loads((run / "eval.json").read_text())
    assert result["mean_return"] >= -8.0 and min(t["mean_return"] for t in result["tasks"]) >= -9.0, result
    assert all(t["success_rate"] > 0.5 for t in result["tasks"]), result


def test_metaworld_seeds_pick_goal_variants_for_the_v3_evaluation_protocol():
    pytest.importorskip("metaworld")
    from mtrl.env.suite import get_suite

    suite = get_suite("metaworld-mt1-reach-v3")
    seeds = suite.eval_seeds(50, 7)
    assert [s % 50 for s in seeds] == list(range(50)) and suite.eval_seeds(50, 7) == seeds
    env = suite.make_env(0, 1)
    goals = [env.reset(seed=s)[0]["obs"][-3:] for s in seeds]
    assert len({tuple(np.round(g, 5)) for g in goals}) == 50  # every variant once
    np.testing.assert_allclose(env.reset(seed=seeds[3] + 50)[0]["obs"][-3:], goals[3])  # the seed fixes the variant


def test_task_loss_weights_worked_case_and_the_critic_loss_uses_them():
    """Soft Modularization's weights K softmax(-log alpha)[c]: alpha = (1, 2) gives
    2 * (1, 1/2) / (3/2) = (4/3, 2/3); each sample's squared error is scaled by its task's weight."""
    from mtrl.algos.sac_learner import critic_terms, task_loss_weights

    log_alpha = torch.tensor([0.0, math.log(2.0)], requires_grad=True)
    w = task_loss_weights(log_alpha, torch.tensor([0, 1, 1]))
    assert torch.allclose(w, torch.tensor([4 / 3, 2 / 3, 2 / 3])) and not w.requires_grad
    spec = PolicySpec((5,), 2, 2, False, "mlp", 16, 1)
    torch.manual_seed(0)
    actor, critic = SACActor(spec), TwinQ(spec)
    batch = {
        "obs": torch.randn(3, 5),
        "actions": torch.rand(3, 2),
        "rewards": torch.randn(3),
        "next_obs": torch.randn(3, 5),
        "terminated": torch.zeros(3, dtype=torch.bool),
        "task_id": torch.tensor([0, 1, 1]),
    }
    alpha = torch.ones(2)
    torch.manual_seed(1)
    plain = critic_terms(critic, critic, actor, alpha, batch, 0.99).terms
    torch.manual_seed(1)
    weighted = critic_terms(critic, critic, actor, alpha, {**batch, "weight": w}, 0.99).terms
    for (_, p), (_, q) in zip(plain.values(), weighted.values()):
        assert torch.allclose(q, p * w)


def test_sac_settings_reach_the_learner():
    """sac.init_temperature, sac.adam_eps and sac.max_grad_norm (each optimiser's global norm,
    the temperatures never clipped), as configs/metaworld_plus sets them."""
    spec = PolicySpec((5,), 3, 2, False, "multihead", 32, 2)
    torch.manual_seed(0)
    actor, critic = SACActor(spec), TwinQ(spec)
    learner = SACLearner(actor, critic, 3, 2, init_temperature=0.5, max_grad_norm=1e-3, adam_eps=1e-5)
    assert torch.allclose(learner.log_alpha.exp(), torch.full((3,), 0.5))
    assert all(
        g["eps"] == 1e-5 for opt in (learner.actor_opt, learner.critic_opt, learner.alpha_opt) for g in opt.param_groups
    )
    norms = []
    for opt in (learner.actor_opt, learner.critic_opt):  # the clipped norm, seen by the optimiser's step
        opt.step = lambda *a, _o=opt, **k: norms.append(
            float(
                torch.linalg.vector_norm(
                    torch.stack(
                        [
                            torch.linalg.vector_norm(p.grad)
                            for g in _o.param_groups
                            for p in g["params"]
                            if p.grad is not None
                        ]
                    )
                )
            )
        )
    batch = {
        "obs": torch.randn(8, 5),
        "actions": torch.rand(8, 2) * 2 - 1,
        "rewards": 100 * torch.randn(8),
        "next_obs": torch.randn(8, 5),
        "terminated": torch.zeros(8, dtype=torch.bool),
        "task_id": torch.tensor([0, 0, 1, 1, 2, 2, 2, 2]),
    }
    learner.update(batch)
    assert len(norms) == 2 and all(n <= 1e-3 * (1 + 1e-4) for n in norms)


def test_a_metaworld_plus_config_trains_on_real_metaworld(tmp_path):
    """configs/metaworld_plus/mt10_softmod.yaml (ReLU, clipping, Adam eps 1e-5, task loss weights,
    reward v2) for a few real MT10 updates, in-process."""
    pytest.importorskip("metaworld")
    from mtrl.config import load_config
    from mtrl.run.trainer import train
    from tests.conftest import ROOT

    cfg = load_config(
        ROOT / "configs/metaworld_plus/mt10_softmod.yaml",
        [
            "rollout.workers=0",
            "rollout.steps_per_env=10",
            "sac.warmup_steps=100",
            "sac.batch_per_task=4",
            "sac.replay_size=1000",
            "train.total_steps=300",
            "train.eval_every=null",
            "train.eval_episodes=0",
            f"run_dir={tmp_path}",
        ],
    )
    from mtrl.run.checkpoint import load_latest

    _, ckpt = load_latest(train(cfg))
    assert ckpt["env_steps"] == 300 and ckpt["optimizer"]["updates"] == 30  # 3 fragments of 10 vector steps
