"""The options behind MOORE's official protocol: separate critic fit, minibatches by size, no
clipping, per-fragment resets, PyTorch's init, the MTPPO network, and the paper configs."""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtrl.algos.learner import MinibatchOptimizer, minibatch_plan
from mtrl.algos.losses import reduce_terms
from mtrl.algos.ppo import PPOAlgorithm, PPOBatch, critic_terms, ppo_terms
from mtrl.collect.fragments import Collector
from mtrl.config import Config, PPOConfig, load_config
from mtrl.env.suite import get_suite
from mtrl.errors import ConfigError
from mtrl.nn.layers import TaskHeads
from mtrl.nn.policy import build_policy, spec_for
from tests.conftest import ROOT

PAPER = sorted((ROOT / "configs/moore_paper").glob("*.yaml"))


def _batch(n: int, num_tasks: int = 3, seed: int = 0) -> PPOBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 11, (n, 7, 7, 3), generator=g, dtype=torch.uint8)
    return PPOBatch(
        obs,
        torch.randint(0, num_tasks, (n,), generator=g),
        torch.randint(0, 7, (n,), generator=g),
        torch.full((n,), -math.log(7)),
        torch.randn(n, generator=g),
        torch.randn(n, generator=g),
        torch.zeros(n),
    )


def _policy(arch: str = "moore", init: str = "default", layers: int = 2):
    torch.manual_seed(0)
    return build_policy(spec_for((7, 7, 3), gym.spaces.Discrete(7), 3, arch, 128, layers, 2, "multi", init=init))


def test_minibatch_plan_by_size_keeps_the_last_partial_minibatch():
    # the official MT3 update: 6000 transitions in minibatches of 768 -> 7 full ones and one of 624
    assert minibatch_plan(6000, PPOConfig(minibatch_size=768)) == (768, True)
    assert minibatch_plan(6000, PPOConfig(minibatches=4)) == (1500, False)
    assert minibatch_plan(500, PPOConfig(minibatch_size=768)) == (500, True)
    sizes = []
    w = torch.nn.Parameter(torch.zeros(1))

    def loss(mb):
        sizes.append(len(mb))
        return (w * mb.advantages).mean(), {}

    MinibatchOptimizer([w], PPOConfig(minibatch_size=768, epochs=2)).update(_batch(6000), loss, torch.Generator())
    assert sizes == [768] * 7 + [624] + [768] * 7 + [624]
    sizes.clear()
    MinibatchOptimizer([w], PPOConfig(minibatches=4, epochs=1)).update(_batch(1001), loss, torch.Generator())
    assert sizes == [250] * 4  # by count: the remainder is left out, as before


def test_separate_critic_fit_touches_only_the_critic_and_the_policy_loss_has_no_value_term():
    policy = _policy()
    cfg = PPOConfig(critic_update="separate", critic_lr=1e-3, lr=1e-3, adam_eps=1e-8, max_grad_norm=None)
    algo = PPOAlgorithm(policy, Config(ppo=cfg), get_suite("minigrid-mt3"), torch.device("cpu"))
    actor = {n for n, _ in policy.named_parameters() if not n.startswith("critic.")}
    assert {id(p) for p in algo.learner.params} == {id(p) for n, p in policy.named_parameters() if n in actor}
    assert {id(p) for p in algo.critic_learner.params} == {
        id(p) for n, p in policy.named_parameters() if n not in actor
    }
    batch = _batch(600)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    steps = []
    stats = algo.critic_learner.update(
        batch, lambda mb: (steps.append(len(mb)), critic_terms(policy, mb))[1], torch.Generator(), 1, (len(batch), True)
    )
    assert steps == [600] and "critic_mse" in stats  # one full-batch step
    for n, p in policy.named_parameters():
        assert torch.equal(p, before[n]) == (n in actor), n
    terms = ppo_terms(policy, batch, cfg)
    assert "value" not in terms.terms
    loss = reduce_terms(terms).loss
    policy.zero_grad()
    loss.backward()
    assert all(p.grad is None for n, p in policy.named_parameters() if n not in actor)


def test_separate_critic_iteration_fits_critic_before_policy_on_returns_of_the_old_values(monkeypatch):
    """learn(): GAE returns with V before the fit (mushroom-rl's order), then the critic step, then the policy."""
    order = []
    cfg = PPOConfig(critic_update="separate", minibatch_size=64, epochs=1)
    policy = _policy()
    algo = PPOAlgorithm(policy, Config(ppo=cfg), get_suite("minigrid-mt3"), torch.device("cpu"))
    critic_update, actor_update = algo.critic_learner.update, algo.learner.update
    monkeypatch.setattr(
        algo.critic_learner, "update", lambda *a, **k: (order.append("critic"), critic_update(*a, **k))[1]
    )
    monkeypatch.setattr(algo.learner, "update", lambda *a, **k: (order.append("policy"), actor_update(*a, **k))[1])
    suite = get_suite("minigrid-mt3")
    from mtrl.collect.pool import WorkerPool

    run_cfg = load_config(ROOT / "configs/moore_paper/minigrid_mt3_moore.yaml", ["rollout.steps_per_env=40"])
    pool = WorkerPool(suite, policy.spec, run_cfg, seed=0)
    try:
        gen = torch.Generator().manual_seed(0)
        it = algo.learn(pool.serve(algo.requests(0, None, gen), policy, 0), gen)
    finally:
        pool.close()
    assert order == ["critic", "policy"]
    assert it.env_steps == 120 and {"critic_mse", "policy", "entropy"} <= it.losses.keys() and "value" not in it.losses


def test_max_grad_norm_null_does_not_clip():
    policy = _policy()
    batch = _batch(256)
    norms = {}
    for clip in (None, 1e-3):
        cfg = PPOConfig(max_grad_norm=clip, minibatch_size=256, epochs=1, lr=1e-12)
        stats = MinibatchOptimizer(list(policy.parameters()), cfg).update(
            batch, lambda mb: (policy.value(mb.obs, mb.task_id).pow(2).mean() * 1e3, {}), torch.Generator()
        )
        norms[clip] = stats["grad_norm"]
    assert norms[None] == pytest.approx(norms[1e-3]) and norms[None] > 1e-3  # the pre-clip norm is reported either way


@pytest.mark.parametrize(
    "override, match",
    [
        ("ppo.critic_lr=0.001", "only applies with ppo.critic_update=separate"),
        ("ppo.critic_minibatch_size=64", "only applies with ppo.critic_update=separate"),
        ("policy.layers=0", "is for policy.arch=multihead"),
        ("ppo.max_grad_norm=0", "must be > 0.0"),
        ("ppo.minibatch_size=0", "must be >= 1"),
    ],
)
def test_protocol_options_are_validated(override, match, capsys):
    with pytest.raises(ConfigError, match=match):
        load_config(ROOT / "configs/bench_throughput_minigrid_mt3.yaml", [override])  # joint critic, moore
    load_config(ROOT / "configs/minigrid_mt3_grpo.yaml", ["ppo.critic_update=separate"])  # critic-free: not read
    err = capsys.readouterr().err
    assert "algo=grpo reads nothing from ppo.*" in err and "ppo.critic_update=separate not used" in err


def test_reset_each_fragment_starts_every_fragment_with_fresh_episodes():
    """Real MiniGrid: with the option each fragment starts from the reset of every slot's next
    episode (seeded as `mtrl.env.slot_state` derives it) and no episode of it is longer than the
    fragment; without it the second fragment continues from where the first stopped."""
    from mtrl.env.slot_state import episode_seed

    suite, spec, seeds = get_suite("minigrid-mt3"), _policy().spec, [11, 12, 13]
    for reset in (True, False):
        torch.manual_seed(0)
        c = Collector(suite, [0, 1, 2], seeds, spec, "same_step", None, reset_each_fragment=reset)
        c.collect(30)
        last_obs, index = c.obs["obs"].copy(), [e.index for e in c.envs.envs]
        frag = c.collect(30)
        assert frag.num_steps == 90  # same_step: every vector step is a transition
        if reset:
            for i, env in enumerate(suite.make_env(t, 0) for t in range(3)):
                want = env.reset(seed=episode_seed(seeds[i], index[i] + 1))[0]["obs"]
                assert np.array_equal(frag.obs[0, i], want), i
            assert (frag.episodes.length <= 30).all()
        else:
            assert np.array_equal(frag.obs[0], last_obs)
        c.close()


def test_default_init_is_pytorchs_and_orthogonal_keeps_cleanrls_gains():
    default, ortho = _policy(init="default"), _policy(init="orthogonal")
    hidden, out = default.actor.head.layers
    assert hidden.weight.abs().max() <= 1 / math.sqrt(1024) and hidden.bias.abs().max() > 0
    assert out.weight.abs().max() <= 1 / math.sqrt(128) and out.weight.std() > 0.03  # U(+-0.088): std 0.051
    assert ortho.actor.head.layers[1].weight.std() < 0.002 and ortho.actor.head.layers[1].bias.abs().max() == 0


def test_multihead_without_trunk_is_moores_mtppo_network():
    """networks_ppo.MiniGridPPOMHNetwork: conv 3-16-32-64 (ReLU, ReLU, Tanh), flatten, per-task
    Linear(1024, 128) -> Tanh -> Linear(128, out)."""
    policy = _policy("multihead", layers=0)
    net = policy.actor
    obs = torch.randint(0, 11, (200, 7, 7, 3), dtype=torch.uint8)
    task = torch.arange(200) % 3
    conv = net.encoder.net
    feat = torch.tanh(conv(obs.float().permute(0, 3, 1, 2)))
    h_w, o_w = (net.head.layers[i].per_task(net.head.layers[i].weight) for i in (0, 1))
    want = torch.stack(
        [
            torch.tanh(f @ h_w[c] + net.head.layers[0].bias[c]) @ o_w[c] + net.head.layers[1].bias[c]
            for f, c in zip(feat, task)
        ]
    )
    assert torch.allclose(net(obs, task), want, atol=1e-5)
    assert [tuple(p.shape) for p in conv.parameters()][::2] == [(16, 3, 2, 2), (32, 16, 2, 2), (64, 32, 2, 2)]
    assert not hasattr(net, "trunk")


@pytest.mark.parametrize("batch", [5, 200])
def test_task_heads_batched_paths_agree_and_keep_heads_apart(batch):
    """The small-batch (all heads, gather) and large-batch (per-task block) paths are the same maths,
    and a loss on task 1's rows leaves every other head's gradient at zero."""
    torch.manual_seed(0)
    heads = TaskHeads(3, 16, 4, None)
    x, task = torch.randn(batch, 16), torch.randint(0, 3, (batch,))
    task[:3] = torch.tensor([0, 1, 2])
    w = heads.per_task(heads.weight)
    want = torch.stack([xi @ w[c] + heads.bias[c] for xi, c in zip(x, task)])
    out = heads(x, task)
    assert torch.allclose(out, want, atol=1e-6)
    out[task == 1].sum().backward()
    grad = heads.per_task(heads.weight.grad)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0
    assert heads.bias.grad[[0, 2]].abs().sum() == 0


@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_paper_configs_follow_the_official_protocol(path):
    """Each line of REFERENCE_PROTOCOLS.md 'MOORE on MiniGrid', read back from the config."""
    suite, prefix, method = re.match(
        r"minigrid_(mt\d)_(?:(pcgrad|upgrad|uncertainty|famo)_)?(moore|moe|mtppo|softmod|care|sparse_moe|dselect_k)$",
        path.stem,
    ).groups()
    cfg = load_config(path)
    weighting = prefix if prefix in ("uncertainty", "famo") else None
    assert cfg.learner.aggregator == (prefix if prefix and not weighting else "none")
    assert cfg.learner.weighting == (weighting or "none")
    k = get_suite(cfg.env.suite).num_tasks
    assert (cfg.env.suite, k) == (f"minigrid-{suite}", int(suite[2:]))
    r, p, t = cfg.rollout, cfg.ppo, cfg.train
    assert (r.workers, r.num_envs, r.steps_per_env, r.reset_each_fragment, r.autoreset_mode) == (
        0,
        k,
        2000,
        True,
        "same_step",
    )
    assert (
        t.total_steps == 100 * 2000 * k
        and t.eval_every == 2000 * k
        and t.eval_episodes == 16
        and t.eval_greedy is False
    )
    assert (p.epochs, p.minibatch_size, p.lr, p.critic_lr, p.adam_eps) == (8, 256 * k, 1e-3, 1e-3, 1e-8)
    assert (p.critic_update, p.critic_epochs, p.critic_minibatch_size, p.max_grad_norm) == ("separate", 1, 0, None)
    assert (p.ent_coef, p.clip, p.gamma, p.gae_lambda, p.task_norm, p.anneal_lr) == (0.01, 0.2, 0.99, 0.95, True, False)
    assert (cfg.policy.hidden, cfg.policy.init) == (128, "default")
    arch = {"mtppo": "multihead"}.get(method, method)
    assert cfg.policy.arch == arch
    if arch == "multihead":
        assert cfg.policy.layers == 0
    elif arch in ("softmod", "care"):  # not in MOORE's protocol: MOORE's widths (the configs' headers)
        own = cfg.policy.options[arch]
        assert (own.module_width, own.embedding_dim) == (128, 128) if arch == "softmod" else own.encoder_width == 128
    elif arch in ("sparse_moe", "dselect_k"):  # E = 4 experts, k = 2 used: MoE's 2 experts of compute per sample
        own = cfg.policy.options[arch]
        assert (own.num_experts, own.k, own.head) == (4, 2, "multi")
    else:
        own = cfg.policy.options[arch]
        assert (own.num_experts, own.head) == ({3: 2, 5: 3, 7: 4}[k], "multi")
