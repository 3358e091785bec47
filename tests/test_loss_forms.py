"""Every loss has one form, per-sample terms (`LossTerms`), and one reducer (`reduce_terms`) with
two reductions: over the minibatch (what a plain step takes) and one value per task (what a
gradient aggregator or a task weighting takes). They must describe the same objective: for PPO,
PPO's separate critic and SAC's critic and actor, the sample mean is the task losses weighted by
each task's share of the minibatch, sum_k (n_k / N) L_k; for GRPO and MT-GRPO the task losses are
the task-weighted shares and sum to the plain loss. Checked for the value and the gradient on
every parameter, with uneven task counts and a task absent; and the reducer on a case by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mtrl.algos.losses import LossTerms, reduce_terms
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


def assert_same_objective(terms: Callable[[], LossTerms], task: torch.Tensor, module: nn.Module, shares: str) -> None:
    """The loss `terms()` reduced over the samples against its task losses combined as `shares`
    says: "counts" (sum_k n_k / N L_k) or "sum" (sum_k L_k); both from the same random draws."""
    torch.manual_seed(5)
    plain = reduce_terms(terms())
    torch.manual_seed(5)
    per_task = reduce_terms(terms(), K)
    counts = segment_sum(torch.ones(len(task)), task, K)[1]
    assert plain.present is None and per_task.loss.shape == (K,)
    assert torch.equal(per_task.present, counts > 0)
    weights = counts / len(task) if shares == "counts" else per_task.present.float()
    combined = (weights * per_task.loss).sum()
    torch.testing.assert_close(combined, plain.loss, rtol=1e-5, atol=1e-6)
    assert plain.values.keys() == per_task.values.keys()
    for name, value in plain.values.items():  # the logged term values agree too
        assert value == pytest.approx(per_task.values[name], rel=1e-5, abs=1e-6), name
    mine, theirs = grads_of(combined, module), grads_of(plain.loss, module)
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_reducer_on_a_case_by_hand():
    """Two terms, c = (1, -0.5); task 0 has samples 1, 3 (term a) and 0, 2 (term b), task 2 has 5
    and 4, task 1 none. Over the samples: mean a = 3, mean b = 2, L = 3 - 1 = 2. Per task:
    L_0 = 2 - 0.5 * 1 = 1.5, L_2 = 5 - 0.5 * 4 = 3, L_1 = 0 (absent). With task weights
    w = (1, 7, 3): task 1 is absent so sum w = 4; a's weighted mean is (2 + 3 * 5) / 4 = 4.25, b's
    (1 + 3 * 4) / 4 = 3.25, L = 4.25 - 1.625 = 2.625, and the shares are 1.5 / 4 and 9 / 4."""
    task = torch.tensor([0, 0, 2])
    lt = LossTerms({"a": (1.0, torch.tensor([1.0, 3.0, 5.0])), "b": (-0.5, torch.tensor([0.0, 2.0, 4.0]))}, task)
    plain, per_task = reduce_terms(lt), reduce_terms(lt, 3)
    assert plain.loss.item() == 2.0 and plain.values == {"a": 3.0, "b": 2.0}
    assert per_task.loss.tolist() == [1.5, 0.0, 3.0] and per_task.present.tolist() == [True, False, True]
    lt.task_weights = torch.tensor([1.0, 7.0, 3.0])
    weighted, shares = reduce_terms(lt), reduce_terms(lt, 3)
    assert weighted.loss.item() == 2.625 and weighted.values == {"a": 4.25, "b": 3.25}
    assert shares.loss.tolist() == [0.375, 0.0, 2.25] and shares.loss.sum().item() == 2.625


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("critic_update", ["joint", "separate"])
def test_ppo_losses(task, critic_update):
    from mtrl.algos.ppo import PPOBatch, critic_terms, ppo_terms

    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", [f"ppo.critic_update={critic_update}"]).ppo
    policy, task, fields, g = discrete_case(task)
    mb = PPOBatch(*fields, torch.randn(len(task), generator=g), torch.zeros(len(task)))  # + returns, values
    assert_same_objective(lambda: ppo_terms(policy, mb, cfg), task, policy, "counts")
    assert_same_objective(lambda: critic_terms(policy, mb), task, policy, "counts")


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "task_loss_weights"])
def test_sac_losses(task, weighted):
    from mtrl.algos.sac_learner import actor_terms, critic_terms, task_loss_weights
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
    assert_same_objective(lambda: critic_terms(critic, target, actor, alpha, batch, 0.99), task, critic, "counts")
    assert_same_objective(lambda: actor_terms(actor, critic, alpha, batch), task, actor, "counts")


@pytest.mark.parametrize("task", TASKS, ids=["uneven", "absent"])
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.2, 3.0, 1.5]], ids=["grpo", "mt_grpo"])
def test_grpo_losses(task, weights):
    from mtrl.algos.grpo import GroupBatch, grpo_terms

    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", ["algo=grpo"]).grpo
    policy, task, fields, _ = discrete_case(task)
    mb = GroupBatch(*fields)
    assert_same_objective(lambda: grpo_terms(policy, mb, torch.tensor(weights), cfg), task, policy, "sum")


def test_a_plugin_loss_that_returns_its_mean_still_steps_but_cannot_feed_an_aggregator():
    """The earlier contract of `MinibatchOptimizer.update`, (mean loss, statistics), takes plain
    steps; a per-task step needs the terms, and says so in one line instead of training as mean."""
    from mtrl.algos.base import NonFiniteGuard
    from mtrl.algos.learner import MinibatchOptimizer
    from mtrl.algos.multitask import TaskGradients
    from mtrl.algos.ppo import PPOBatch
    from mtrl.errors import ConfigError

    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", ["learner.aggregator=pcgrad"])
    policy, task, fields, g = discrete_case(TASKS[0])
    mb = PPOBatch(*fields, torch.randn(len(task), generator=g), torch.zeros(len(task)))

    def mean_loss(b: PPOBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return policy.value(b.obs, b.task_id).pow(2).mean(), {"mine": 1.0}

    before = [p.detach().clone() for p in policy.parameters()]
    stats = MinibatchOptimizer(list(policy.parameters()), cfg.ppo).update(mb, mean_loss, g, epochs=1)
    assert stats["mine"] == 1.0 and any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    grads = TaskGradients(policy, cfg.learner, ("a", "b", "c"), NonFiniteGuard())
    with pytest.raises(ConfigError, match="learner.aggregator=pcgrad .*need the loss per sample"):
        MinibatchOptimizer(list(policy.parameters()), cfg.ppo, grads=grads).update(mb, mean_loss, g, epochs=1)
