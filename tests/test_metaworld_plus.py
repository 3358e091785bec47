"""configs/metaworld_plus/ against Meta-World+'s own settings, field by field.

The table is written from Meta-World+'s code, rainx0r/metaworld-algorithms at commit
30c9991f5e1e6e119d3f98266add3828390a038e (2026-05-20); each row names the file and line its value
comes from (paths under metaworld_algorithms/ shortened to cfg/, alg/, rl/, nn/; the examples
under examples/multi_task/ to ex/). Every result-deciding field of a resolved config must either
be in the table or be listed as not deciding the result, so a new config field cannot slip past;
what mtrl cannot match is listed in each config's header, and checked to be there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtrl.config import load_config, to_dict
from mtrl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PLUS = ROOT / "configs" / "metaworld_plus"

# Meta-World+'s MTSAC machinery, shared by every SAC example (MTSACConfig, OffPolicyTrainingConfig, MetaworldConfig)
SAC_MT10: dict[str, tuple[Any, str]] = {
    "env.suite": ("metaworld-mt10", "ex/*_mt10.py: env_id='MT10'"),
    "env.reward_version": ("v2", "envs/metaworld.py:16 reward_func_version='v2'"),
    "env.max_episode_steps": (None, "cfg/envs.py:14 max_episode_steps=500, the v3 envs' own limit"),
    "env.backend": ("gymnasium", "envs/metaworld.py:119 Meta-World's Python envs"),
    "rollout.num_envs": (10, "Metaworld __init__.py:491-509: one env per task"),
    "rollout.autoreset_mode": (
        "next_step",
        "no effect on SAC: s' of an ended episode is its final observation either way",
    ),
    "sac.batch_per_task": (128, "ex/mtmhsac_mt10.py:58 batch_size=1280; rl/buffers.py:357 split over the tasks"),
    "sac.replay_size": (100_000, "ex/mtmhsac_mt10.py:57 buffer_size=1e6; rl/buffers.py:230 capacity per task"),
    "sac.warmup_steps": (40_000, "cfg/rl.py:30 warmstart_steps=4000 vector steps; alg/base.py:596-602"),
    "sac.updates_per_step": (1.0, "alg/base.py:644-647 one gradient step per vector step"),
    "sac.actor_lr": (3e-4, "cfg/optim.py:15 lr=3e-4"),
    "sac.critic_lr": (3e-4, "cfg/optim.py:15 lr=3e-4"),
    "sac.alpha_lr": (3e-4, "alg/mtsac.py:100 temperature_optimizer_config (lr 3e-4)"),
    "sac.gamma": (0.99, "ex/mtmhsac_mt10.py:41 gamma=0.99"),
    "sac.tau": (0.005, "alg/mtsac.py:103 tau=0.005"),
    "sac.init_temperature": (1.0, "alg/mtsac.py:101 initial_temperature=1.0, one per task (alg/mtsac.py:44-59)"),
    "sac.max_grad_norm": (1.0, "ex/mtmhsac_mt10.py:44,50 OptimizerConfig(max_grad_norm=1.0)"),
    "sac.adam_eps": (1e-5, "cfg/optim.py:27 eps=1e-5"),
    "sac.task_loss_weights": (False, "alg/mtsac.py:104 use_task_weights=False"),
    "train.total_steps": (20_000_000, "ex/mtmhsac_mt10.py:56 total_steps=2e7, over all tasks (alg/base.py:596)"),
    "train.eval_every": (200_000, "cfg/rl.py:24 every 400 episodes = 200k env steps"),
    "train.eval_episodes": (50, "cfg/envs.py:15 evaluation_num_episodes=50"),
    "train.eval_greedy": (True, "alg/mtsac.py:76-80 dist.mode()"),
}
MULTIHEAD = {
    "policy.arch": ("multihead", "ex/mtmhsac_mt10.py:43 MultiHeadConfig: shared torso, a head per task"),
    "policy.hidden": (400, "cfg/nn.py:9 width=400"),
    "policy.layers": (3, "cfg/nn.py:12 depth=3"),
    "policy.activation": ("relu", "cfg/nn.py:26 Activation.ReLU"),
    "learner.aggregator": ("none", "ex/mtmhsac_mt10.py:44 OptimizerConfig: no gradient surgery"),
}
SAC_MT50 = {
    **SAC_MT10,
    "env.suite": ("metaworld-mt50", "ex/paco_mt10.py:29 env_id='MT50'"),
    "rollout.num_envs": (50, "Metaworld __init__.py:491-509: one env per task"),
    "sac.replay_size": (100_000, "ex/paco_mt10.py:57 buffer_size=100_000 * 50; rl/buffers.py:230 per task"),
    "sac.warmup_steps": (200_000, "cfg/rl.py:30 warmstart_steps=4000 vector steps of 50 envs"),
    "train.total_steps": (100_000_000, "ex/paco_mt10.py:56 total_steps=1e8"),
    "train.eval_every": (1_000_000, "ex/paco_mt10.py:59 evaluation_frequency=2000 episodes = 1e6 env steps"),
}
PPO_MT10: dict[str, tuple[Any, str]] = {
    "env.suite": ("metaworld-mt10", "ex/ppo_mt10.py:37 env_id='MT10'"),
    "env.reward_version": ("v2", "envs/metaworld.py:16 reward_func_version='v2'"),
    "env.max_episode_steps": (None, "cfg/envs.py:14 max_episode_steps=500, the v3 envs' own limit"),
    "env.backend": ("gymnasium", "envs/metaworld.py:119 Meta-World's Python envs"),
    "rollout.num_envs": (10, "one env per task"),
    "rollout.steps_per_env": (10_000, "ex/ppo_mt10.py:63 rollout_steps=10_000 per task (rl/buffers.py:418-420)"),
    "rollout.autoreset_mode": ("same_step", "Metaworld __init__.py:711 gymnasium's SAME_STEP"),
    "rollout.reset_each_fragment": (False, "alg/base.py:785-930 episodes run on across updates"),
    "policy.arch": ("mlp", "ex/ppo_mt10.py:44-46 VanillaNetworkConfig on cat(state, one-hot)"),
    "policy.hidden": (400, "cfg/networks.py:10 width=400"),
    "policy.layers": (3, "cfg/networks.py:10 depth=3"),
    "policy.activation": ("relu", "cfg/nn.py:26 Activation.ReLU"),
    "ppo.lr": (3e-4, "cfg/optim.py:15 lr=3e-4"),
    "ppo.gamma": (0.99, "ex/ppo_mt10.py:42 gamma=0.99"),
    "ppo.gae_lambda": (0.97, "ex/ppo_mt10.py:58 gae_lambda=0.97"),
    "ppo.clip": (0.2, "alg/ppo.py:114 clip_eps=0.2"),
    "ppo.epochs": (16, "ex/ppo_mt10.py:56 num_epochs=16"),
    "ppo.minibatches": (32, "ex/ppo_mt10.py:57 num_gradient_steps=32"),
    "ppo.ent_coef": (5e-3, "alg/ppo.py:116 entropy_coefficient=5e-3"),
    "ppo.max_grad_norm": (1.0, "ex/ppo_mt10.py:45 max_grad_norm=1.0"),
    "ppo.adam_eps": (1e-5, "cfg/optim.py:27 eps=1e-5"),
    "ppo.anneal_lr": (False, "cfg/optim.py:23-35 a constant learning rate"),
    "ppo.minibatch_size": (None, "ex/ppo_mt10.py:57 a count of minibatches, not a size"),
    "train.total_steps": (20_000_000, "ex/ppo_mt10.py:62 total_steps=2e7"),
    "train.eval_every": (1_000_000, "ex/ppo_mt10.py:64 evaluation_frequency=2000 episodes = 1e6 env steps"),
    "train.eval_episodes": (50, "cfg/envs.py:15 evaluation_num_episodes=50"),
    "train.eval_greedy": (True, "alg/ppo.py:60-66 dist.mode()"),
    "learner.aggregator": ("none", "cfg/optim.py OptimizerConfig: no gradient surgery"),
}
PPO_MT50 = {
    **PPO_MT10,
    "env.suite": ("metaworld-mt50", "ex/ppo_mt50.py:37 env_id='MT50'"),
    "rollout.num_envs": (50, "one env per task"),
    "rollout.steps_per_env": (10_000, "ex/ppo_mt50.py:59 rollout_steps=10_000 per task"),
    "ppo.epochs": (16, "ex/ppo_mt50.py:51 num_epochs=16"),
    "ppo.minibatches": (32, "ex/ppo_mt50.py:52 num_gradient_steps=32"),
    "ppo.critic_update": ("separate", "ex/ppo_mt50.py:46-50 a value network with its own optimiser"),
    "ppo.critic_epochs": (16, "alg/ppo.py:418-457 the value network takes the same 16 x 32 steps"),
    "ppo.critic_minibatch_size": (15_625, "500k transitions / 32 minibatches"),
    "ppo.critic_lr": (3e-4, "cfg/optim.py:15 lr=3e-4"),
    "train.total_steps": (100_000_000, "ex/ppo_mt50.py:58 total_steps=1e8"),
    "train.eval_every": (1_000_000, "ex/ppo_mt50.py:60 evaluation_frequency=2000 episodes = 1e6 env steps"),
}

TABLE: dict[str, dict[str, tuple[Any, str]]] = {
    "mt10_mtmhsac": {**SAC_MT10, **MULTIHEAD},
    "mt10_mtsac": {
        **SAC_MT10,
        "policy.arch": ("mlp", "ex/mtsac_mt10.py:43-45 VanillaNetworkConfig on cat(state, one-hot)"),
        "policy.hidden": (400, "cfg/nn.py:9 width=400"),
        "policy.layers": (3, "cfg/nn.py:12 depth=3"),
        "policy.activation": ("relu", "cfg/nn.py:26 Activation.ReLU"),
        "learner.aggregator": ("none", "ex/mtsac_mt10.py:44 OptimizerConfig"),
    },
    "mt10_pcgrad": {**SAC_MT10, **MULTIHEAD, "learner.aggregator": ("pcgrad", "ex/pcgrad_mt10.py:47,54 PCGradConfig")},
    "mt10_softmod": {
        **SAC_MT10,
        "policy.arch": ("softmod", "ex/softmodules_mt10.py:43-51 SoftModulesConfig"),
        "policy.softmod.depth": (2, "cfg/nn.py:79-98 depth=2"),
        "policy.softmod.num_modules": (2, "cfg/nn.py:79-98 num_modules=2"),
        "policy.softmod.module_width": (256, "cfg/nn.py:79-98 module_width=256"),
        "policy.softmod.embedding_dim": (400, "cfg/nn.py:79-98 embedding_dim=400"),
        "policy.softmod.gating_hidden": (256, "cfg/nn.py:79-98 width=256"),
        "sac.task_loss_weights": (True, "ex/softmodules_mt10.py:54 use_task_weights=True"),
        "learner.aggregator": ("none", "OptimizerConfig"),
    },
    "mt10_moore": {
        **SAC_MT10,
        "policy.arch": ("moore", "ex/moore_mt10.py:43 MOOREConfig"),
        "policy.moore.num_experts": (4, "cfg/nn.py:152-153 num_experts=4"),
        "policy.moore.head": ("multi", "nn/moore.py:76-91 a head per task"),
        "sac.alpha_lr": (1e-4, "ex/moore_mt10.py:55 temperature lr=1e-4"),
        "learner.aggregator": ("none", "OptimizerConfig"),
    },
    "mt10_care": {
        **SAC_MT10,
        "policy.arch": ("care", "cfg/nn.py:110-129 CAREConfig (no example)"),
        "policy.hidden": (400, "cfg/nn.py:9 width=400"),
        "policy.layers": (3, "cfg/nn.py:12 depth=3"),
        "policy.care.num_encoders": (6, "cfg/nn.py:127-129 num_experts=6"),
        "policy.care.encoder_width": (50, "cfg/nn.py:115 encoder_width=50"),
        "policy.care.encoder_depth": (2, "cfg/nn.py:118 encoder_depth=2"),
        "policy.care.context_dim": (50, "cfg/nn.py:124 embedding_dim=50"),
        "policy.care.temperature": (1.0, "cfg/nn.py:121 encoder_temperature=1.0"),
        "learner.aggregator": ("none", "OptimizerConfig"),
    },
    "mt10_paco": {
        **SAC_MT10,
        "policy.arch": ("paco", "cfg/nn.py:106 PaCoConfig (no MT10 example)"),
        "policy.hidden": (400, "cfg/nn.py:9 width=400"),
        "policy.layers": (3, "cfg/nn.py:12 depth=3"),
        "policy.paco.param_sets": (5, "cfg/nn.py:106 num_parameter_sets=5"),
        "learner.aggregator": ("none", "OptimizerConfig"),
    },
    "mt50_paco": {
        **SAC_MT50,
        "policy.arch": ("paco", "ex/paco_mt10.py:42 PaCoConfig"),
        "policy.hidden": (400, "cfg/nn.py:9 width=400"),
        "policy.layers": (3, "cfg/nn.py:12 depth=3"),
        "policy.paco.param_sets": (20, "ex/paco_mt10.py:42,49 num_parameter_sets=20"),
        "learner.aggregator": ("none", "OptimizerConfig"),
    },
    "mt10_ppo": {
        **PPO_MT10,
        "ppo.task_norm": (
            False,
            "ex/ppo_mt10.py:59 normalize_advantages=False (the nearest: one "
            "normalisation over the batch; a header difference)",
        ),
    },
    "mt50_ppo": {
        **PPO_MT50,
        "ppo.task_norm": (
            False,
            "alg/ppo.py:118,312-317 normalised per minibatch (the nearest: over the batch; a header difference)",
        ),
    },
}
# what the header of each config must list as a remaining difference (the topic before the colon)
SAC_DIFFS = ["init", "log-std clamp", "update schedule", "evaluation goals", "replay sampling", "paper-era runs"]
DIFFS = {
    "mt10_mtmhsac": SAC_DIFFS + ["torso input"],
    "mt10_mtsac": SAC_DIFFS,
    "mt10_pcgrad": SAC_DIFFS + ["torso input", "critic target", "projection order"],
    "mt10_softmod": SAC_DIFFS,
    "mt10_moore": SAC_DIFFS,
    "mt10_care": SAC_DIFFS + ["depths"],
    "mt10_paco": SAC_DIFFS + ["loss masking"],
    "mt50_paco": SAC_DIFFS + ["loss masking"],
    "mt10_ppo": ["baseline", "advantages", "std", "squashing", "truncation", "init", "evaluation goals"],
    "mt50_ppo": ["value function", "advantages", "std", "squashing", "truncation", "init", "evaluation goals"],
}
# resolved fields that do not decide the result (where and how often things run, memory, logging)
NOT_PROTOCOL = {
    "seed",
    "run_dir",
    "resume",
    "env.expected_suite",
    "rollout.workers",
    "rollout.pipeline",
    "rollout.max_worker_restarts",
    "sac.replay_memory_gb",
    "sac.checkpoint_replay",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.max_nonfinite_updates",
    "train.log_grad_every",
    "learner.device",
    "learner.threads",
    "policy.critic_ensemble",  # the same numbers in another memory layout (tests/test_critic_ensemble.py)
    "learner.compile",  # the same numbers up to float rounding (tests/test_compile.py)
    "learner.max_fallback_share",  # when a failing aggregator stops the run; these configs use none
    "learner.fallback_window",
    "learner.max_task_weight",  # when a task weighting falls back to uniform; these configs use none
    "learner.weighting_options",
    "ppo.vf_coef",  # inert here: no task weighting, and the PPO critics have their own Adam
    "learner.aggregator_options",
    "ray.address",
    "ray.num_cpus",
    "algo",
    # the per-step loop of SAC (one fragment of 50 vector steps, then its 50 updates): a header difference
    "rollout.steps_per_env",
}
# fields whose value is one of the header's differences (field: the difference's topic)
AS_DIFFERENCE = {
    "policy.paco.loss_threshold": "loss masking",
    "ppo.critic_update": "baseline",
    "ppo.critic_epochs": "baseline",
    "ppo.critic_minibatch_size": "baseline",
    "ppo.critic_lr": "baseline",
}
# policy fields an architecture does not read (its paper fixes them; moore / softmod size themselves by their options)
UNUSED = {
    "moore": {"policy.hidden", "policy.layers", "policy.activation"},
    "softmod": {"policy.hidden", "policy.layers", "policy.activation"},
    "care": {"policy.activation"},
    "paco": {"policy.activation"},
}
# settings of the other algorithm's section, and of features these configs leave off (checked to be off)
OFF = {"curriculum.name": None, "learner.weighting": "none", "rollout.reset_each_fragment": False}


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and not k.endswith("options"):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


@pytest.mark.parametrize("name", sorted(TABLE))
def test_config_matches_metaworld_plus(name: str) -> None:
    cfg = load_config(PLUS / f"{name}.yaml")
    resolved = flat(to_dict(cfg))
    rows = TABLE[name]
    wrong = [
        f"{key}: {resolved.get(key, '<missing>')!r}, Meta-World+ {value!r} ({src})"
        for key, (value, src) in rows.items()
        if resolved.get(key, "<missing>") != value
    ]
    assert not wrong, "\n".join(wrong)
    for key, value in OFF.items():
        assert resolved[key] == value, key
    own = "sac." if cfg.algo == "sac" else "ppo."
    arch = f"policy.{cfg.policy.arch}."
    deciding = [
        k
        for k in resolved
        if k.split(".")[0] in ("env", "rollout", "policy", "train", "learner", "sac", "ppo")
        and not (k.startswith(("sac.", "ppo.")) and not k.startswith(own))
        and not (k.startswith("policy.") and k.count(".") == 2 and not k.startswith(arch))
    ]
    for key in deciding:
        if key in AS_DIFFERENCE and key not in rows:
            assert AS_DIFFERENCE[key] in DIFFS[name], (
                f"{name}: {key} differs from Meta-World+ and its header must say so"
            )
    unclassified = [
        k
        for k in deciding
        if k not in rows
        and k not in NOT_PROTOCOL
        and k not in OFF
        and k not in AS_DIFFERENCE
        and k not in UNUSED.get(cfg.policy.arch, set())
        and k not in ("policy.num_experts", "policy.head", "policy.init")
    ]
    assert not unclassified, (
        f"{name}: fields neither checked against Meta-World+ nor listed as not deciding: {unclassified}"
    )


@pytest.mark.parametrize("name", sorted(DIFFS))
def test_header_lists_every_remaining_difference(name: str) -> None:
    lines = (PLUS / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# Differences from Meta-World+ that remain:")
    listed = {line[len("#   - ") :].split(":")[0] for line in lines[start + 1 :] if line.startswith("#   - ")}
    assert set(DIFFS[name]) <= listed, f"{name}: header lacks {set(DIFFS[name]) - listed}"
    assert "30c9991" in lines[1]  # the commit its values come from


def test_every_shipped_config_is_in_the_table() -> None:
    assert {p.stem for p in PLUS.glob("*.yaml")} == set(TABLE) == set(DIFFS)


def test_protocol_config_refuses_another_suite() -> None:
    with pytest.raises(ConfigError, match=r"env.suite=metaworld-mt50: .*env.expected_suite=metaworld-mt10"):
        load_config(PLUS / "mt10_mtmhsac.yaml", ["env.suite=metaworld-mt50"])
    load_config(PLUS / "mt10_mtmhsac.yaml", ["env.suite=metaworld-mt50", "env.expected_suite=null"])  # on purpose


def test_unknown_reward_version_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"env.reward_version: expected one of 'v1', 'v2', got 'v3'"):
        load_config(PLUS / "mt10_mtmhsac.yaml", ["env.reward_version=v3"])
