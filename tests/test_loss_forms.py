"""Every loss comes in two reductions: the mean over the minibatch (what a plain step takes) and
one value per task (what a gradient aggregator or GradNorm takes). They must describe the same
objective: for PPO, PPO's separate critic and SAC's critic and actor, the sample mean is the
task losses weighted by each task's share of the minibatch, sum_k (n_k / N) L_k; for GRPO and
MT-GRPO the task losses are already the task-weighted shares and sum to the plain loss. Checked
for the value and the gradient on every parameter, with uneven task counts and a task absent."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mtrl.config import load_config
from mtrl.data.reduce import segment_sum
from tests.conftest import ROOT

K = 3
TASKS = [
    torch.tensor([0] * 9 + [1] * 5 + [2] * 2),  # uneven counts
    torch.tensor([0] * 10 + [2] * 6),  # task 1 absent
]


def shuffled(task: torch.Tensor) -> torch.Tensor:
    return task[torch.randperm(len(task), generator=torch.Generator().manual_seed(0))]


def discrete_case(task: torch.Tensor) -> tuple[nn.Module, torch.Tensor, tuple[torch.Tensor, ...], torch.Generator]:
    """A multi-head policy with 4 discrete actions on 6-dim observations, the shuffled task ids,
    a minibatch's (obs, task_id, actions, old log-probs, advantages), and the generator for more."""
    from mtrl.nn.network import PolicySpec
    from mtrl.nn.policy import build_policy

    torch.manual_seed(0)
    policy = build_policy(PolicySpec((6,), K, 4, True, "multihead", 32))
    task, n, g = shuffled(task), len(task), torch.Generator().manual_seed(1)
    obs, actions = torch.rand(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)
    return policy, task, (obs, task, actions, torch.full((n,), -1.4), torch.randn(n, generator=g)), g


def grads_of(loss: torch.Tensor, module: nn.Module) -> dict[str, torch.Tensor]:
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    got = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {name: g for name, g in zip(params, got) if g is not None}


def assert_same_objective(
    mean_form: Callable[[], torch.Tensor],
    task_form: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    task: torch.Tensor,
    module: nn.Module,
    shares: str,
) -> None:
    """`mean_form()` against the task losses of `task_form()` combined as `shares` says: "counts"
    (sum_k n_k / N L_k) or "sum" (sum_k L_k); both computed from the same random draws."""
    torch.manual_seed(5)
    plain = mean_form()
    torch.manual_seed(5)
    per_task, present = task_form()
    counts = segment_sum(torch.ones(len(task)), task, K)[1]
    assert torch.equal(present, counts > 0)
    weights = counts / len(task) if shares == "counts" else present.float()
    combined = (weights * per_task).sum()
    torch.testing.assert_close(combined, plain, rtol=1e-5, atol=1e-6)
    mine, theirs = grads_of(combined, module), grads_of(plain, module)
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("critic_update", ["joint", "separate"])
def test_ppo_losses(task, critic_update):
    from mtrl.algos.ppo import PPOBatch, critic_loss, critic_task_losses, ppo_loss, ppo_task_losses

    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", [f"ppo.critic_update={critic_update}"]).ppo
    policy, task, fields, g = discrete_case(task)
    mb = PPOBatch(*fields, torch.randn(len(task), generator=g), torch.zeros(len(task)))  # + returns, values
    assert_same_objective(
        lambda: ppo_loss(policy, mb, cfg)[0], lambda: ppo_task_losses(policy, mb, cfg, K)[:2], task, policy, "counts"
    )
    assert_same_objective(
        lambda: critic_loss(policy, mb)[0], lambda: critic_task_losses(policy, mb, K)[:2], task, policy, "counts"
    )


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "task_loss_weights"])
def test_sac_losses(task, weighted):
    from mtrl.algos.sac_learner import (
        actor_loss,
        actor_task_losses,
        critic_loss,
        critic_task_losses,
        task_loss_weights,
    )
    from mtrl.nn.network import PolicySpec
    from mtrl.nn.sac import SACActor, TwinQ

    spec = PolicySpec((5,), K, 2, False, "multihead", 32, kind="sac")
    torch.manual_seed(0)
    actor, critic, target = SACActor(spec), TwinQ(spec), TwinQ(spec)
    task, n, g = shuffled(task), len(task), torch.Generator().manual_seed(1)
    batch = {
        "obs": torch.randn(n, 5, generator=g),
        "actions": torch.rand(n, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, 5, generator=g),
        "terminated": torch.rand(n, generator=g) < 0.3,
        "task_id": task,
    }
    alpha = torch.tensor([0.5, 1.0, 2.0])
    if weighted:
        batch["weight"] = task_loss_weights(alpha.log(), task)
    args = (critic, target, actor, alpha, batch, 0.99)
    assert_same_objective(lambda: critic_loss(*args), lambda: critic_task_losses(*args, K), task, critic, "counts")
    assert_same_objective(
        lambda: actor_loss(actor, critic, alpha, batch)[0],
        lambda: actor_task_losses(actor, critic, alpha, batch, K)[:2],
        task,
        actor,
        "counts",
    )


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.2, 3.0, 1.5]], ids=["grpo", "mt_grpo"])
def test_grpo_losses(task, weights):
    from mtrl.algos.grpo import GroupBatch, grpo_loss, grpo_task_losses

    cfg = load_config(ROOT / "configs/toy_mtppo.yaml").ppo
    policy, task, fields, _ = discrete_case(task)
    mb = GroupBatch(*fields)
    w = torch.tensor(weights)
    assert_same_objective(
        lambda: grpo_loss(policy, mb, w, cfg)[0], lambda: grpo_task_losses(policy, mb, w, cfg)[:2], task, policy, "sum"
    )
