"""The config schema: one dataclass per section, every field with its help text, type and range.

The metadata drives validation errors and `mtrl train --help` (see `mtrl.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mtrl.config.algo_sections import GRPOConfig, MTGRPOConfig, PPOConfig, SACConfig, opt
from mtrl.registry import CURRICULA

CONFIG_VERSION = 2  # the config format this mtrl writes (mtrl.config.migrate reads the older ones)


@dataclass
class EnvConfig:
    suite: str = opt("toy-mt3", "registered suite name (see `mtrl suites`)")
    max_episode_steps: int | None = opt(None, "cut episodes at this many steps (null: the suite's own limit)", 1)
    backend: Literal["gymnasium", "envpool"] = opt(
        "gymnasium",
        "env implementation for rollouts: the reference Python envs, or envpool's C++ ports "
        "(pip install 'mtrl[fast]'; tasks without a port stay on gymnasium). Evaluation always uses gymnasium",
    )
    reward_version: Literal["v1", "v2"] | None = opt(
        None,
        "the suite's reward function, for suites that have several (Meta-World's reward_function_version: v2, "
        "the v3 envs' default and Meta-World+'s, or v1, the original paper's); null: the suite's default",
    )
    expected_suite: str | None = opt(
        None,
        "the suite a protocol config was written for (configs/metaworld_plus/ set "
        "it); any other env.suite stops the run. null: no check",
    )


@dataclass
class RolloutConfig:
    workers: int = opt(2, "Ray rollout actors; 0 runs the same collection code in-process", 0)
    num_envs: int = opt(12, "env slots in total, split evenly over the workers; slot i runs task i mod K", 1)
    steps_per_env: int = opt(128, "steps each env slot collects per iteration (fragment length)", 1)
    autoreset_mode: Literal["next_step", "same_step"] = opt("next_step", "gymnasium vector autoreset mode")
    pipeline: bool = opt(
        False,
        "workers collect the next batch while the learner updates (one update of "
        "policy lag; PPO's ratio uses the behaviour log-probs). Needs rollout.workers >= 1",
    )
    max_worker_restarts: int = opt(10, "restarts of dead worker actors allowed over the run before it stops", 0)
    reset_each_fragment: bool = opt(
        False,
        "reset every env slot at the start of each fragment (MOORE's official "
        "collection); an episode cut at a fragment's end bootstraps from V(last "
        "observation) and is not counted as finished. false: episodes run on across fragments",
    )


@dataclass
class PolicyConfig:
    arch: str = opt(
        "multihead",
        "a registered architecture (`mtrl archs`): mlp (trunk + task one-hot), multihead (a head per "
        "task), moore / moe ((orthogonal) mixture of experts); its own options are the section policy.<arch>",
    )
    hidden: int = opt(128, "width of the trunk's hidden layers (moore/moe: of the per-task head)", 1)
    layers: int = opt(
        2,
        "hidden layers in the shared trunk (mlp, multihead); multihead with 0: no shared trunk, "
        "per-task heads Linear(D, hidden) -> Tanh -> Linear on the encoder's features, tanh-squashed "
        "for images (MOORE's MTPPO network)",
        0,
    )
    init: Literal["orthogonal", "default"] = opt(
        "orthogonal",
        "init of the trunk and head layers: orthogonal weights (gain sqrt 2; output 0.01 for the "
        "actor, 1 for the critic) and zero biases, as CleanRL; default: PyTorch's default layer init, as MOORE's "
        "official code (experts and conv encoders always use PyTorch's default)",
    )
    activation: Literal["tanh", "relu"] = opt(
        "tanh",
        "the hidden activation of the mlp and multihead trunks (tanh: "
        "CleanRL's PPO; relu: Meta-World+'s SAC); the other architectures "
        "keep their papers' own",
    )
    critic_ensemble: bool = opt(
        False,
        "SAC: run the twin critics as one ensemble, their weights stacked [2, ...] and both evaluated "
        "in one vmapped call (as Meta-World+); the same numbers as two modules, one batched matmul per layer. "
        "On this CPU it measured no faster (docs/benchmarks.md); meant for GPUs. Not with a gradient "
        "aggregator, a task weighting or PaCo's loss guard",
    )
    # each architecture's own options by name, from the sections policy.<arch> (mtrl.config.load)
    options: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})


@dataclass
class CurriculumConfig:
    name: str | None = opt(
        None,
        "task sampler that picks each env slot's next task at reset (`mtrl curricula`: uniform, "
        "learning_progress, plr, exp3, worst_task, threshold); its own options are the section "
        "curriculum.<name>; null: slot i always runs task i mod K",
    )
    eps: float = opt(0.05, "share of the uniform distribution mixed in, so every task keeps >= eps/K", 0.0, 1.0)
    # each curriculum's own options by name, from the sections curriculum.<name> (mtrl.config.sections)
    options: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def own(self) -> Any:
        """The active curriculum's own options (its registered dataclass; its defaults where this
        config was built without them), or None if it has none."""
        if self.name is None:
            return None
        if self.name not in self.options:
            options = CURRICULA.get(self.name).options
            return options() if options is not None else None
        return self.options[self.name]


@dataclass
class TrainConfig:
    total_steps: int = opt(50_000, "env steps to train for, summed over all tasks", 1)
    checkpoint_every: int = opt(10, "write a checkpoint every this many iterations", 1)
    keep_checkpoints: int = opt(3, "how many recent checkpoints to keep", 1)
    eval_episodes: int | None = opt(None, "episodes per task in each evaluation (null: suite protocol; 0: none)", 0)
    eval_every: int | None = opt(
        None,
        "also evaluate before training and then every this many env steps (logged as "
        "eval/ in TensorBoard and appended to eval_curve.csv; own RNG streams, not counted "
        "in total_steps); null: only the final evaluation",
        1,
    )
    eval_greedy: bool | None = opt(
        None,
        "evaluate with the most likely (mean) action; null: the algorithm's protocol "
        "(sampled actions for ppo, grpo and mt_grpo, as MOORE; the mean action for sac)",
    )
    max_nonfinite_updates: int = opt(
        10,
        "stop after this many optimiser steps in a row with a NaN/inf loss or "
        "gradient (each is skipped and counted in faults/nonfinite_updates)",
        1,
    )
    log_grad_every: int | None = opt(
        None,
        "every this many iterations, log the per-task gradients on the shared "
        "parameters: norms, pairwise cosines, the conflicting fraction and the "
        "aggregator's task weights (grad/ in TensorBoard); null: never",
        1,
    )


@dataclass
class LearnerConfig:
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "learner device; auto picks CUDA when present")
    threads: int | None = opt(None, "torch CPU threads for the learner (null: torch's default)", 1)
    aggregator: str = opt(
        "none",
        "how the per-task gradients on the shared parameters combine (`mtrl aggregators`): "
        "none (today's single loss, averaged over all samples), or a gradient aggregator such as "
        "pcgrad, upgrad, cagrad, mgda, nash_mtl; task-specific parameters keep their own gradients",
    )
    aggregator_options: dict[str, Any] = opt(
        {}, "the aggregator's own options, e.g. {c: 0.4} for cagrad (as torchjd.aggregation takes them)"
    )
    weighting: str = opt(
        "none",
        "task loss weighting (`mtrl weightings`): none, gradnorm (Chen et al. 2018), uncertainty (Kendall et al. "
        "2018), dwa (Liu et al. 2019), famo (Liu et al. 2023), igb (Dai et al. 2023), or a plug-in's; the weights multiply the per-task losses before the step "
        "(and before learner.aggregator); logged as weighting/<task>",
    )
    weighting_options: dict[str, Any] = opt(
        {}, "the weighting's own options, e.g. {alpha: 1.5, lr: 0.025} for gradnorm (docs/algorithms/aggregators.md)"
    )
    max_fallback_share: float = opt(
        0.5,
        "stop the run when the aggregator declared a failure (AggregatorFailed, a solver that did not "
        "converge, a non-finite direction) in more than this share of its last fallback_window steps, "
        "each of which took the mean of the task gradients instead",
        0.0,
        1.0,
    )
    fallback_window: int = opt(20, "steps over which learner.max_fallback_share is judged", 1)
    max_task_weight: float = opt(
        100.0,
        "a step whose task weighting's weights average above this, or are all 0, takes uniform weights "
        "instead (faults/weighting_fallbacks; learner.max_fallback_share applies as to the aggregator)",
        0.0,
        None,
        lo_open=True,
    )
    compile: bool = opt(
        False,
        "torch.compile (TorchInductor) the policy's actor and critic networks in the learner's process: "
        "the MOORE protocol's PPO update on MiniGrid MT3 took 0.78x the eager time on the development CPU; "
        "compiling costs a minute or so at the start (a C++ compiler is needed). Not with a gradient "
        "aggregator or a task weighting (their task-grouped pass replaces module forwards at run time)",
    )


@dataclass
class RayConfig:
    address: str | None = opt(None, "null starts an embedded local Ray; 'auto' or host:port joins a cluster")
    num_cpus: int | None = opt(None, "CPUs for the embedded local Ray (null: all)", 1)


@dataclass
class Config:
    config_version: int = opt(
        CONFIG_VERSION,
        "the config format's version; an older one loads through mtrl's migration, which names each "
        "key it renames (docs/configuration.md, Config versions)",
        1,
        CONFIG_VERSION,
    )
    algo: str = opt(
        "ppo",
        "training algorithm, a registered name (`mtrl algos`): ppo (PPO with GAE), grpo (critic-free GRPO "
        "on groups of episodes), mt_grpo (MT-GRPO: task weights + ratio-preserving sampling), sac (multi-task SAC: "
        "continuous actions, per-task replay and temperatures). Each reads its own section: ppo.*, grpo.* "
        "(mt_grpo: grpo.* and mt_grpo.*), sac.*",
    )
    seed: int = opt(0, "random seed for envs, policy init and sampling", 0)
    run_dir: str | None = opt(None, "output directory (null: runs/<suite>-<algo>-s<seed>-<time>)")
    resume: str | None = opt(None, "run directory to continue from its last checkpoint")
    plugins: list[str] = opt(
        [],
        "modules (names, or paths to .py files) imported before any name is resolved, so that the suites, "
        "algorithms, architectures, curricula and aggregators they register can be named here (`mtrl train "
        "--import MODULE` adds one); the working directory is searched first",
    )
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    mt_grpo: MTGRPOConfig = field(default_factory=MTGRPOConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # plug-in algorithms' own sections by name (mtrl.config.sections)
    sections: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})

    def section(self, name: str) -> Any:
        """The algorithm section `name` (`<name>.*` in YAML), built-in (ppo, grpo, mt_grpo, sac: typed
        fields) or a plug-in's (`sections`): one way for every algorithm to read its own settings."""
        if name in BUILTIN_ALGO_SECTIONS:
            return getattr(self, name)
        if name not in self.sections:
            raise KeyError(f"no algorithm section {name!r} in this config (sections: {', '.join(self.sections)})")
        return self.sections[name]


BUILTIN_ALGO_SECTIONS = ("ppo", "grpo", "mt_grpo", "sac")
