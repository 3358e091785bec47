"""The built-in algorithms' config sections (ppo, grpo, mt_grpo, sac) and `opt`, the field helper
every section uses (its default, help text and range). The other sections and the whole `Config`
are in `mtrl.config.schema`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def opt(default: Any, help: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A dataclass field with help text and an optional range [lo, hi] (or (lo, hi] if lo_open)."""
    meta = {"help": help, "lo": lo, "hi": hi, "lo_open": lo_open}
    if isinstance(default, (dict, list)):  # a mutable default: each config gets its own copy
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SurrogateConfig:
    """The clipped-surrogate policy update and its minibatch optimiser, shared by ppo and grpo /
    mt_grpo: each algorithm reads these keys from its own section (ppo.*, grpo.*)."""

    lr: float = opt(3e-4, "Adam learning rate", 0.0, None, lo_open=True)
    clip: float = opt(0.2, "PPO ratio clip range", 0.0, None, lo_open=True)
    epochs: int = opt(4, "passes of the policy update over each batch", 1)
    minibatches: int = opt(
        4,
        "minibatches per epoch: the shuffled batch in equal parts, a remainder left out "
        "(ignored when minibatch_size is set)",
        1,
    )
    minibatch_size: int | None = opt(
        None,
        "transitions per minibatch, instead of minibatches; the last, partial "
        "minibatch of each epoch is kept (MOORE / mushroom-rl)",
        1,
    )
    ent_coef: float = opt(0.01, "entropy bonus coefficient", 0.0)
    max_grad_norm: float | None = opt(
        0.5,
        "global gradient-norm clip of every optimiser step (null: no clipping, as MOORE's official code)",
        0.0,
        None,
        lo_open=True,
    )
    adam_eps: float = opt(
        1e-5, "Adam epsilon (1e-5 as CleanRL; torch's default 1e-8 as MOORE / mushroom-rl)", 0.0, None, lo_open=True
    )
    anneal_lr: bool = opt(False, "decay the learning rate(s) linearly to 0 over train.total_steps")


@dataclass
class PPOConfig(SurrogateConfig):
    gamma: float = opt(0.99, "discount factor", 0.0, 1.0)
    gae_lambda: float = opt(0.95, "GAE lambda", 0.0, 1.0)
    vf_coef: float = opt(0.5, "value loss coefficient (critic_update=joint)", 0.0)
    critic_update: Literal["joint", "separate"] = opt(
        "joint",
        "joint: 0.5 * vf_coef * the value MSE is part of every policy minibatch's loss, one Adam for "
        "both; separate: the critic has its own Adam and is fitted to the GAE returns (MSE) before the policy "
        "epochs, and the policy loss has no value term (MOORE / mushroom-rl)",
    )
    critic_epochs: int = opt(1, "critic_update=separate: passes of the critic fit over each batch", 1)
    critic_minibatch_size: int = opt(
        0,
        "critic_update=separate: transitions per critic minibatch, the last partial "
        "one kept; 0: one full-batch step per epoch (MOORE's official setting)",
        0,
    )
    critic_lr: float | None = opt(
        None, "critic_update=separate: the critic's Adam learning rate (null: ppo.lr)", 0.0, None, lo_open=True
    )
    task_norm: bool = opt(
        True,
        "normalise advantages per task, (A - mean) / (population std + 1e-8) over each "
        "task's steps in the batch (MOORE MTPPO); false: the same over the whole batch",
    )


@dataclass
class GRPOConfig(SurrogateConfig):
    group_size: int = opt(8, "G: episodes per group, all of one task from one reset seed (grpo, mt_grpo)", 1)
    groups: int = opt(24, "B: groups kept for each update, over all tasks (grpo: split evenly over tasks)", 1)
    outcome: Literal["auto", "success", "return"] = opt(
        "auto", "episode outcome R: success (0/1), or the undiscounted return; auto: success where the suite reports it"
    )
    task_norm: bool = opt(False, "normalise the advantages a second time per task (AgentRL)")


@dataclass
class MTGRPOConfig:
    lam: float = opt(0.5, "lambda in s_k = I_k + lambda * J_k (MT-GRPO; 0.1 to 1.2; large: worst-task minimax)", 0.0)
    lr: float = opt(0.025, "AdamW learning rate on the task logits xi (z = softmax(xi))", 0.0, None, lo_open=True)
    rho_ema: float = opt(0.9, "decay of the EMA of each task's zero-variance group fraction rho_k", 0.0, 1.0)
    max_inflation: float = opt(5.0, "cap on the oversampling factor 1 / (1 - rho_k)", 1.0)
    resample_rounds: int = opt(2, "rounds that regenerate groups for tasks short of their quota", 0)


@dataclass
class SACConfig:
    batch_per_task: int = opt(128, "transitions sampled from each task's replay per update", 1)
    replay_size: int = opt(200_000, "replay capacity per task (transitions)", 1)
    replay_memory_gb: float = opt(
        8.0, "memory budget for all replay buffers; a larger config is refused", 0.0, None, lo_open=True
    )
    warmup_steps: int = opt(10_000, "env steps (over all tasks) of uniform random actions before learning starts", 0)
    updates_per_step: float = opt(
        1.0, "gradient updates per vector-env step (every slot steps once); 1 as in MTSAC", 0.0, None, lo_open=True
    )
    actor_lr: float = opt(3e-4, "actor Adam learning rate", 0.0, None, lo_open=True)
    critic_lr: float = opt(3e-4, "critics' Adam learning rate", 0.0, None, lo_open=True)
    alpha_lr: float = opt(1e-4, "per-task temperature Adam learning rate", 0.0, None, lo_open=True)
    gamma: float = opt(0.99, "discount factor", 0.0, 1.0)
    tau: float = opt(0.005, "Polyak rate of the target critics", 0.0, 1.0, lo_open=True)
    init_temperature: float = opt(
        1.0, "every task's initial temperature alpha (MOORE, Meta-World+: 1)", 0.0, None, lo_open=True
    )
    max_grad_norm: float | None = opt(
        None,
        "global gradient-norm clip of the actor's and the critics' steps, each on its "
        "own (Meta-World+: 1.0); null: no clipping (MOORE)",
        0.0,
        None,
        lo_open=True,
    )
    adam_eps: float = opt(
        1e-8, "Adam epsilon of every SAC optimiser (torch's 1e-8 as MOORE; Meta-World+: 1e-5)", 0.0, None, lo_open=True
    )
    task_loss_weights: bool = opt(
        False,
        "weight each sample's critic and actor loss by K softmax(-log alpha)[task] "
        "(Soft Modularization's task re-weighting, Meta-World+'s use_task_weights)",
    )
    checkpoint_replay: bool = opt(
        True,
        "save the replay contents in checkpoints, for an exact resume (up to "
        "replay_memory_gb per checkpoint file); false: a resumed run refills them",
    )
