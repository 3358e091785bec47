"""Multi-task SAC's losses and learner (Haarnoja et al. 2018; MOORE / Meta-World+ form,
docs/algorithms/sac.md): twin critics with Polyak targets, one learned temperature per task.

The losses are pure functions of the networks and a batch, in their one per-sample form
(`LossTerms`); `SACLearner.update` applies them in the usual order (critics, actor, temperatures,
targets). With a gradient aggregator, a task weighting or a per-task loss guard, the critics' and
the actor's steps reduce them per task; the temperatures are task-specific already (each sample
moves only its own task's).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from mtrl.algos.base import NonFiniteGuard
from mtrl.algos.losses import LossTerms, reduce_terms
from mtrl.algos.multitask import TaskGradients
from mtrl.config import SACConfig
from mtrl.nn.network import aux_terms, is_loss_guard
from mtrl.nn.sac import Critics, SACActor, SACPolicy


def alpha_loss(
    log_alpha: torch.Tensor, logp: torch.Tensor, task_id: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """-mean(log_alpha[c] * (log pi + target).detach()), target = -|A|: each sample moves only
    its own task's temperature, so no gradient crosses tasks."""
    return -(log_alpha[task_id] * (logp + target_entropy).detach()).mean()


def critic_terms(
    critic: Critics, target: Critics, actor: SACActor, alpha: torch.Tensor, batch: dict[str, torch.Tensor], gamma: float
) -> LossTerms:
    """Both critics' squared soft Bellman errors per sample, each weighed 1/2,
    y = r + gamma (1 - term) (min Q'(s', a') - alpha_c log pi(a'|s'))."""
    obs, act, task = batch["obs"], batch["actions"], batch["task_id"]
    with torch.no_grad():
        next_act, next_logp = actor.sample(batch["next_obs"], task)
        q1_t, q2_t = target(batch["next_obs"], next_act, task)
        soft_v = torch.min(q1_t, q2_t) - alpha[task] * next_logp
        y = batch["rewards"] + gamma * (1.0 - batch["terminated"].float()) * soft_v
    q1, q2 = critic(obs, act, task)
    w = batch.get("weight", 1.0)  # Soft Modularization's task weights (`task_loss_weights`)
    terms = {"q1": (0.5, w * (q1 - y).pow(2)), "q2": (0.5, w * (q2 - y).pow(2)), **aux_terms(critic)}
    return LossTerms(terms, task)


def actor_terms(actor: SACActor, critic: Critics, alpha: torch.Tensor, batch: dict[str, torch.Tensor]) -> LossTerms:
    """alpha_c log pi(a|s) - min Q(s, a) per sample, with a reparameterised a; log pi in `extras`."""
    act, logp = actor.sample(batch["obs"], batch["task_id"])
    q1, q2 = critic(batch["obs"], act, batch["task_id"])
    terms = batch.get("weight", 1.0) * (alpha[batch["task_id"]] * logp - torch.min(q1, q2))
    return LossTerms({"actor": (1.0, terms), **aux_terms(actor)}, batch["task_id"], extras={"logp": logp})


def task_loss_weights(log_alpha: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
    """Soft Modularization's task re-weighting (Yang et al. 2020, as its authors' code and
    Meta-World+'s `use_task_weights`): each sample's critic and actor loss times
    K softmax(-log alpha)[c], so tasks whose temperature is still high (little learnt yet) weigh
    less; the weights average 1 over tasks and carry no gradient."""
    return (len(log_alpha) * torch.softmax(-log_alpha.detach(), 0))[task_id]


@torch.no_grad()
def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for all parameters at once."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def _critic_opt_layout(state: dict, n_now: int) -> dict:
    """The critics' Adam state for `n_now` parameters, converted where it was saved in the other
    layout of the twin critics: TwinQ's q1 then q2 parameters (2n) or the ensemble's stacked ones
    (n, each [2, ...]; `mtrl.nn.sac`). Adam is elementwise, so the moments stack and split as the
    weights do and the step continues unchanged."""
    n_saved = sum(len(g["params"]) for g in state["param_groups"])
    if len(state["param_groups"]) != 1 or (n_saved != 2 * n_now and 2 * n_saved != n_now):
        return state  # the same layout, or not a twin-critic state (load_state_dict judges it)
    per = state["state"]
    moments: dict[int, dict] = {}
    if n_saved == 2 * n_now:  # two modules -> ensemble
        for i in range(n_now):
            if i in per and i + n_now in per:
                a, b = per[i], per[i + n_now]
                moments[i] = {k: v if v.dim() == 0 else torch.stack([v, b[k]]) for k, v in a.items()}
    else:  # ensemble -> two modules
        for i in range(n_saved):
            if i in per:
                moments[i] = {k: v if v.dim() == 0 else v[0].clone() for k, v in per[i].items()}
                moments[i + n_saved] = {k: v if v.dim() == 0 else v[1].clone() for k, v in per[i].items()}
    return {"state": moments, "param_groups": [{**state["param_groups"][0], "params": list(range(n_now))}]}


class SACLearner:
    """Actor, twin critics, their targets and the per-task log-temperatures, with their optimisers."""

    def __init__(
        self,
        actor: SACActor,
        critic: Critics,
        num_tasks: int,
        action_dim: int,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        alpha_lr: float = 1e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        guard: NonFiniteGuard | None = None,
        actor_grads: TaskGradients | None = None,
        critic_grads: TaskGradients | None = None,
        *,
        init_temperature: float = 1.0,
        max_grad_norm: float | None = None,
        adam_eps: float = 1e-8,
        weight_tasks: bool = False,
    ) -> None:
        self.actor, self.critic, self.gamma, self.tau, self.num_tasks = actor, critic, gamma, tau, num_tasks
        self.clip, self.weight_tasks = max_grad_norm, weight_tasks
        self.guard = guard or NonFiniteGuard()
        self.actor_grads, self.critic_grads = actor_grads, critic_grads
        self.target = copy.deepcopy(critic).requires_grad_(False)
        device = next(actor.parameters()).device
        self.log_alpha = torch.full((num_tasks,), math.log(init_temperature), device=device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        # networks with a per-task loss guard (PaCo: `extreme_tasks`, `reset_tasks`), and its events
        self.loss_guards = [m for m in (*actor.modules(), *critic.modules()) if is_loss_guard(m)]
        self.guard_events = {"masked_tasks": 0, "w_resets": 0}
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=actor_lr, eps=adam_eps)
        self.critic_opt = torch.optim.Adam(critic.parameters(), lr=critic_lr, eps=adam_eps)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=alpha_lr, eps=adam_eps)  # never clipped (Meta-World+)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on critics, actor and temperatures, then the Polyak target step."""
        alpha = self.log_alpha.detach().exp()
        if self.weight_tasks:
            batch = {**batch, "weight": task_loss_weights(self.log_alpha, batch["task_id"])}
        q_loss, extreme = self._critic_step(alpha, batch)
        self.critic.requires_grad_(False)  # the actor's loss differentiates through Q, not into it
        pi_loss, logp = self._actor_step(alpha, batch, extreme)
        self.critic.requires_grad_(True)
        a_loss = alpha_loss(self.log_alpha, logp, batch["task_id"], self.target_entropy)
        self.guard.step(self.alpha_opt, a_loss, [self.log_alpha])
        polyak(self.target, self.critic, self.tau)
        if extreme is not None and bool(extreme.any()):  # PaCo's w-reset of the masked tasks, in every guarded network
            self.guard_events["masked_tasks"] += int(extreme.sum())
            self.guard_events["w_resets"] += sum(m.reset_tasks(extreme) for m in self.loss_guards)
        return {
            "critic": q_loss.item(),
            "actor": pi_loss.item(),
            "alpha_loss": a_loss.item(),
            "entropy": -logp.mean().item(),
            "alpha_mean": alpha.mean().item(),
        }

    def _critic_step(
        self, alpha: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The critics' step: on their per-task losses with an aggregator (or a task weighting) or
        a loss guard, else on the mean. Returns (the loss, the [K] tasks a loss guard masks out of
        this step, or None without a guard; PaCo, Sun et al. 2022 sec. 4.3)."""
        terms = lambda: critic_terms(self.critic, self.target, self.actor, alpha, batch, self.gamma)  # noqa: E731
        params, grads = list(self.critic.parameters()), self.critic_grads
        if grads is not None and grads.active:
            lt, features = grads.evaluate(terms, batch["task_id"])
            losses, present = self._per_task(lt)
            extreme = self._extreme(losses)
            grads.step(self.critic_opt, losses, present & ~extreme, features, params, self.clip)
            return losses[present].mean(), extreme
        if self.loss_guards:
            losses, present = self._per_task(terms())
            extreme = self._extreme(losses)
            self.guard.step(self.critic_opt, self._masked_mean(losses, present & ~extreme), params, self.clip)
            return losses[present].mean(), extreme
        q_loss = reduce_terms(terms()).loss
        self.guard.step(self.critic_opt, q_loss, params, self.clip)
        return q_loss, None

    def _actor_step(
        self, alpha: torch.Tensor, batch: dict[str, torch.Tensor], extreme: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's step through the frozen critics: on its per-task losses with an aggregator
        (or a task weighting), or with tasks masked out (`extreme`); else on the mean, after
        measuring the task gradients when diagnostics are due. Returns (the loss, log pi of the
        sampled actions)."""
        grads, params = self.actor_grads, list(self.actor.parameters())
        masked = extreme is not None and bool(extreme.any())
        per_task = grads if grads is not None and (grads.active or grads.diagnose) else None
        terms = lambda: actor_terms(self.actor, self.critic, alpha, batch)  # noqa: E731
        if per_task is not None or masked:
            lt, features = per_task.evaluate(terms, batch["task_id"]) if per_task is not None else (terms(), [])
            losses, present = self._per_task(lt)
            if masked:
                present = present & ~extreme  # type: ignore[operator]
            if per_task is not None and per_task.active:
                per_task.step(self.actor_opt, losses, present, features, params, self.clip)
                return losses[present].mean(), lt.extras["logp"]
            if masked:
                pi_loss = self._masked_mean(losses, present)
                self.guard.step(self.actor_opt, pi_loss, params, self.clip)
                return pi_loss, lt.extras["logp"]
            assert per_task is not None  # diagnostics due with aggregator none: measure, then the usual step
            per_task.measure(losses, present, features, params)
        lt = terms()
        pi_loss = reduce_terms(lt).loss
        self.guard.step(self.actor_opt, pi_loss, params, self.clip)
        return pi_loss, lt.extras["logp"]

    def _per_task(self, lt: LossTerms) -> tuple[torch.Tensor, torch.Tensor]:
        """A loss reduced per task: (losses [K], which tasks have samples [K])."""
        r = reduce_terms(lt, self.num_tasks)
        assert r.present is not None
        return r.loss, r.present

    def _extreme(self, task_losses: torch.Tensor) -> torch.Tensor:
        """[K] bool: the tasks any loss guard masks out (none without guards)."""
        extreme = torch.zeros(self.num_tasks, dtype=torch.bool, device=task_losses.device)
        for m in self.loss_guards:
            extreme |= m.extreme_tasks(task_losses)
        return extreme

    @staticmethod
    def _masked_mean(task_losses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The mean over the kept tasks' losses; 0 (with a graph, so the step is a no-op) when none is kept."""
        return task_losses[keep].mean() if bool(keep.any()) else task_losses.sum() * 0.0

    def take_guard_events(self) -> dict[str, int]:
        """The loss-guard events since the last call (masked tasks, w resets)."""
        events, self.guard_events = self.guard_events, {"masked_tasks": 0, "w_resets": 0}
        return events

    def state_dict(self) -> dict:
        return {
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(_critic_opt_layout(state["critic_opt"], len(list(self.critic.parameters()))))
        self.alpha_opt.load_state_dict(state["alpha_opt"])


def learner_from_config(
    policy: SACPolicy,
    sac: SACConfig,
    num_tasks: int,
    action_dim: int,
    guard: NonFiniteGuard | None = None,
    actor_grads: TaskGradients | None = None,
    critic_grads: TaskGradients | None = None,
) -> SACLearner:
    """The learner of a SAC policy with the settings of its config section `sac`."""
    return SACLearner(
        policy.actor,
        policy.critic,
        num_tasks,
        action_dim,
        sac.actor_lr,
        sac.critic_lr,
        sac.alpha_lr,
        sac.gamma,
        sac.tau,
        guard,
        actor_grads,
        critic_grads,
        init_temperature=sac.init_temperature,
        max_grad_norm=sac.max_grad_norm,
        adam_eps=sac.adam_eps,
        weight_tasks=sac.task_loss_weights,
    )
