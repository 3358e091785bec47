"""mtrl inside RLlib 2.60: the RLModule for every architecture, head isolation, per-task advantage
normalisation after GAE, suites as RLlib envs, a real RLlib PPO run exported to `mtrl eval`, and a
curriculum driving real env runners."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from torch import nn

import mtrl
from mtrl.data.advantage import task_normalize
from mtrl.errors import CheckpointError, MtrlError
from mtrl.eval.evaluate import evaluate
from mtrl.rllib import (
    MultiTaskRLModule,
    TaskAdvantageNormalization,
    export_checkpoint,
    load_checkpoint_into,
    mtrl_model_config,
    ppo_config,
)
from mtrl.rllib.callbacks import push_task_probs
from mtrl.rllib.env import EPISODE_INFO, SuiteEnvCreator
from mtrl.run.checkpoint import load_latest, policy_from_checkpoint
from tests.conftest import run_cli

ARCHS = ["mlp", "multihead", "moe", "moore", "softmod", "care", "paco", "tiny_user_arch"]


class TinyUserArch(nn.Module):
    """A user's own architecture, registered like any plug-in: one linear layer per task."""

    def __init__(self, spec, out_dim, out_gain):  # noqa: ANN001
        super().__init__()
        self.heads = nn.Parameter(torch.zeros(spec.num_tasks, int(np.prod(spec.obs_shape)), out_dim))

    def forward(self, obs, task_id):  # noqa: ANN001, ANN201
        return torch.bmm(obs.float().flatten(1).unsqueeze(1), self.heads[task_id]).squeeze(1)


mtrl.register_arch("tiny_user_arch", TinyUserArch, overwrite=True)


def spaces(suite_name: str) -> tuple[gym.spaces.Dict, gym.spaces.Space]:
    suite = mtrl.get_suite(suite_name)
    return suite.task_observation_space, suite.action_space


def make_module(suite_name: str, arch: str, inference_only: bool = False, **settings) -> MultiTaskRLModule:
    obs_space, act_space = spaces(suite_name)
    return MultiTaskRLModule(
        observation_space=obs_space,
        action_space=act_space,
        inference_only=inference_only,
        model_config=mtrl_model_config(**{"arch": arch, "hidden": 32, "suite": suite_name, **settings}),
    )


def obs_batch(suite_name: str, n: int, seed: int = 0) -> dict:
    obs_space, _ = spaces(suite_name)
    obs_space.seed(seed)
    rows = [obs_space.sample() for _ in range(n)]
    return {
        Columns.OBS: {
            "obs": torch.as_tensor(np.stack([r["obs"] for r in rows])),
            "task_id": torch.arange(n) % obs_space["task_id"].n,
        }
    }


@pytest.mark.parametrize("suite_name", ["minigrid-mt3", "metaworld-mt10"])
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_action_distributions(suite_name, arch):
    module = make_module(suite_name, arch)
    _, act_space = spaces(suite_name)
    batch = obs_batch(suite_name, 6)
    discrete = isinstance(act_space, gym.spaces.Discrete)
    width = act_space.n if discrete else 2 * act_space.shape[0]  # Gaussian: cat(mean, log-std)
    for forward in (module.forward_exploration, module.forward_inference, module.forward_train):
        out = forward(batch)[Columns.ACTION_DIST_INPUTS]
        assert out.shape == (6, width) and torch.isfinite(out).all()
    dist = module.get_exploration_action_dist_cls().from_logits(
        module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    )
    actions = dist.sample()
    assert actions.shape == ((6,) if discrete else (6, act_space.shape[0]))
    assert torch.isfinite(dist.logp(actions)).all()
    greedy = dist.to_deterministic().sample()
    assert greedy.shape == actions.shape
    values = module.compute_values(batch)
    assert values.shape == (6,) and torch.isfinite(values).all()
    runner_copy = make_module(suite_name, arch, inference_only=True)
    assert not hasattr(runner_copy, "critic")  # env runners carry the actor only
    runner_copy.set_state(module.get_state(inference_only=True))
    torch.testing.assert_close(
        runner_copy.forward_inference(batch)[Columns.ACTION_DIST_INPUTS],
        module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS],
    )


@pytest.mark.parametrize("suite_name", ["minigrid-mt3", "metaworld-mt10"])
def test_task_c_loss_gives_no_gradient_to_other_tasks_heads(suite_name):
    module = make_module(suite_name, "moore", num_experts=2)
    batch = obs_batch(suite_name, 6)
    batch[Columns.OBS]["task_id"] = torch.full((6,), 1)
    inputs = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    dist = module.get_train_action_dist_cls().from_logits(inputs)
    loss = -dist.logp(dist.sample()).mean() + module.compute_values(batch).pow(2).mean()
    loss.backward()
    K = spaces(suite_name)[0]["task_id"].n
    others = [k for k in range(K) if k != 1]
    for net in (module.actor, module.critic):
        w = net.mixture.task_weights.weight.grad  # column c: task c's mixing weights
        assert w[:, 1].abs().sum() > 0 and (w[:, others] == 0).all()
        for layer in net.head.layers:
            g = layer.per_task(layer.weight.grad)
            assert g[1].abs().sum() > 0 and (g[others] == 0).all()
    if hasattr(module, "log_std"):
        assert module.log_std.grad[1].abs().sum() > 0 and (module.log_std.grad[others] == 0).all()


def test_connector_is_task_normalize_on_the_loss_mask():
    """The worked case of docs/algorithms/ppo.md (per-task normalisation), with two padded steps outside the loss mask."""
    adv = torch.tensor([10.0, 20.0, 30.0, 0.1, 0.2, 0.3, 99.0, -99.0])
    task = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    mask = torch.tensor([True] * 6 + [False, False])
    batch = {
        "default_policy": {
            Postprocessing.ADVANTAGES: adv.clone(),
            Columns.OBS: {"task_id": task},
            Columns.LOSS_MASK: mask,
        }
    }
    module = SimpleNamespace(observation_space=spaces("toy-mt3")[0])
    logged = {}
    metrics = SimpleNamespace(log_value=lambda key, value, **kw: logged.__setitem__(key, value))
    out = TaskAdvantageNormalization()(rl_module={"default_policy": module}, batch=batch, episodes=[], metrics=metrics)
    got = out["default_policy"][Postprocessing.ADVANTAGES]
    torch.testing.assert_close(got[:6], task_normalize(adv[:6], task[:6], 3))
    torch.testing.assert_close(got[:6], torch.tensor([-1.2247, 0.0, 1.2247] * 2), atol=1e-4, rtol=0)
    assert got[6] == 99.0 and got[7] == -99.0  # outside the mask: untouched, and not in the statistics
    assert (
        logged[("mtrl", "abs_advantage", "0")] == pytest.approx(20.0) and ("mtrl", "abs_advantage", "2") not in logged
    )


def test_sub_env_i_runs_task_i_mod_k_and_reports_each_episode():
    """2 remote runners x 3 sub-envs on toy-mt3: global sub-env i = j * 2 + (w - 1) runs task i mod 3."""
    tasks = {}
    for worker in (1, 2):
        creator = SuiteEnvCreator("toy-mt3")  # each runner unpickles its own copy
        for j in range(3):
            env = creator(_Ctx({"seed": 5}, worker_index=worker, num_workers=2))
            obs, _ = env.reset(seed=0)
            tasks[j * 2 + worker - 1] = int(obs["task_id"])
    assert tasks == {i: i % 3 for i in range(6)}
    env = SuiteEnvCreator("toy-mt3")(_Ctx({}, worker_index=0, num_workers=0))
    obs, _ = env.reset(seed=0)
    done, info = False, {}
    while not done:  # toy task 0: the correct action at step t is t mod 4; play it for a full episode
        obs, _, terminated, truncated, info = env.step(int(np.argmax(obs["obs"])) % 4)
        done = terminated or truncated
    assert info[EPISODE_INFO] == {"task": 0, "name": "sequence-0", "return": 8.0, "success": 1.0}
    with pytest.raises(MtrlError, match="3 finite non-negative"):
        env.set_task_probs([0.5, 0.5])
    assert push_task_probs(np.ones(2))(
        SimpleNamespace(
            env=SimpleNamespace(unwrapped=SimpleNamespace(call=lambda name, p: env.get_wrapper_attr(name)(p)))
        )
    ).startswith("MtrlError")


class _Ctx(dict):
    """RLlib's EnvContext: the env_config dict plus the runner's index and the number of runners."""

    def __init__(self, config: dict, worker_index: int, num_workers: int) -> None:
        super().__init__(config)
        self.worker_index, self.num_workers = worker_index, num_workers


def test_bad_settings_are_one_line_errors():
    with pytest.raises(MtrlError, match="unknown setting.*width"):
        mtrl_model_config(width=3)
    with pytest.raises(MtrlError, match="Dict\\(obs=Box, task_id=Discrete"):
        MultiTaskRLModule(
            observation_space=gym.spaces.Box(0, 1, (3,)),
            action_space=gym.spaces.Discrete(2),
            model_config=mtrl_model_config(),
        )
    with pytest.raises(MtrlError, match="unknown architecture 'mooore'"):
        make_module("toy-mt3", "mooore")
    with pytest.raises(MtrlError, match="unknown suite"):
        ppo_config("toy-mt33")
    with pytest.raises(MtrlError, match="unknown curriculum"):
        ppo_config("toy-mt3", curriculum="nope")
    with pytest.raises(MtrlError, match="inference-only"):
        export_checkpoint(make_module("toy-mt3", "moore", inference_only=True), "/nonexistent")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


TOY_BUDGET = 40  # iterations of 768 env steps: the stated budget is 30,720 env steps


def test_too_few_sub_envs_for_the_tasks_stop_the_build(local_ray):
    config = ppo_config("toy-mt3", arch="mlp").env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    with pytest.raises(MtrlError, match="2 sub-env\\(s\\) for the 3 tasks of 'toy-mt3': sequence-2 would never run"):
        config.build_algo()


def test_rllib_ppo_with_moore_learns_toy_then_mtrl_eval_scores_the_export(local_ray, tmp_path):
    """A real RLlib PPO run (1 remote env runner) with the MOORE module reaches mtrl's toy threshold
    (MTPPO's: a mean return of 7 of 8 over 16 sampled episodes per task) within 30,720 env steps,
    judged by mtrl's evaluation of the exported checkpoint after each iteration; `mtrl eval` on the
    export gives the same figure, and the export takes the RLlib module's greedy actions."""
    config = (
        ppo_config("toy-mt3", arch="moore", num_experts=2, overrides=("policy.hidden=64",))
        .env_runners(num_env_runners=1, num_envs_per_env_runner=12, rollout_fragment_length=64)
        .training(
            train_batch_size_per_learner=768,
            minibatch_size=192,
            num_epochs=4,
            lr=1e-3,
            entropy_coeff=0.01,
            use_kl_loss=False,
            grad_clip=0.5,
            vf_loss_coeff=0.5,
            lambda_=0.95,
        )
    )
    algo = config.build_algo()
    suite, scores = mtrl.get_suite("toy-mt3"), []
    try:
        for _ in range(TOY_BUDGET):
            result = algo.train()
            if min(t["return_mean"] for t in result["mtrl"].values()) < 6.0:  # RLlib's own per-task metrics
                continue
            ckpt = export_checkpoint(algo, tmp_path / "export")
            with torch.random.fork_rng():  # building the policy must not move the RNG stream RLlib's learner uses
                policy, _, _ = policy_from_checkpoint(load_latest(ckpt)[1], torch.device("cpu"))
            scores.append(evaluate(policy, suite, 16, seed=0).mean_return)
            if scores[-1] >= 7.0:
                break
        assert set(result["env_runners"]["mtrl"]) == {"sequence-0", "sequence-1", "sequence-2"}
        module = next(iter(algo.learner_group.foreach_learner(lambda learner: learner.module["default_policy"]))).get()
        steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
    finally:
        algo.stop()
    assert scores and scores[-1] >= 7.0, f"mtrl evaluations of the exports: {scores}"
    proc = run_cli("eval", str(tmp_path / "export"), "--episodes", "16", "--json", str(tmp_path / "eval.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "eval.json").read_text())["runs"][0]
    assert report["method"] == "rllib-ppo-moore"
    assert report["mean_return"] == pytest.approx(scores[-1]) and report["env_steps"] == steps <= TOY_BUDGET * 768 + 100
    batch = {
        Columns.OBS: {"obs": torch.eye(9).repeat(3, 1), "task_id": torch.arange(27) // 9}
    }  # every step of every task
    rllib_greedy = (
        module.get_inference_action_dist_cls()
        .from_logits(module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS])
        .to_deterministic()
        .sample()
    )
    mtrl_greedy, _ = policy.act(batch[Columns.OBS]["obs"], batch[Columns.OBS]["task_id"], greedy=True)
    assert torch.equal(rllib_greedy, mtrl_greedy)
    load_checkpoint_into(make_module("toy-mt3", "moore", num_experts=2, hidden=64), ckpt)  # and back
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint_into(make_module("toy-mt3", "moore", num_experts=3, hidden=64), ckpt)


def fixed_curriculum(tasks, cfg):  # noqa: ANN001, ANN201 - a registered curriculum with fixed probabilities
    probs = np.array([0.6, 0.3, 0.1])
    return SimpleNamespace(
        probs=lambda: probs,
        update=lambda stats: None,
        scores=lambda: {},
        state_dict=lambda: {},
        load_state_dict=lambda state: None,
    )


def test_env_runners_task_shares_follow_the_pushed_probabilities(local_ray):
    mtrl.register_curriculum("fixed_test", fixed_curriculum, overwrite=True)
    config = (
        ppo_config("toy-mt3", arch="multihead", curriculum="fixed_test")
        .env_runners(num_env_runners=1, num_envs_per_env_runner=6, rollout_fragment_length=100)
        .training(train_batch_size_per_learner=600, minibatch_size=300, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        episodes = np.zeros(3)
        for _ in range(3):
            result = algo.train()
            episodes += [result["mtrl"][t]["episodes"] for t in ("sequence-0", "sequence-1", "sequence-2")]
            assert [result["mtrl"][t]["task_prob"] for t in ("sequence-0", "sequence-1", "sequence-2")] == [
                0.6,
                0.3,
                0.1,
            ]
    finally:
        algo.stop()
    shares = episodes / episodes.sum()
    # about 1000 episodes of 1-8 steps: 4 standard errors of a multinomial share are below 0.07
    assert np.abs(shares - [0.6, 0.3, 0.1]).max() < 0.07, (episodes, shares)
