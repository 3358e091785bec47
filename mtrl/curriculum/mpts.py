"""Model Predictive Task Sampling (MPTS; Wang et al. 2025, "Model Predictive Task Sampling for
Efficient and Robust Adaptation", code thu-rllab/MPTS), as a curriculum (`curriculum.name=mpts`).

A risk learner predicts each task's risk, here the negative mean return of its finished episodes,
standardised over the tasks seen in the iteration (the authors' RL setting). It is a small
neural process, as the authors' `RiskLearner(x_dim, 1, r_dim=10, z_dim=10, h_dim=10)`:

    encoder  [x, y] -> h -> ReLU -> h -> ReLU -> r,   r averaged over the iteration's tasks
    latent   r -> h -> ReLU -> (mu_z, sigma_z = 0.1 + 0.9 sigmoid(.))
    decoder  [x, z] -> h -> ReLU -> h -> ReLU -> h -> ReLU -> risk

with x the task's one-hot (the authors' tasks are continuous parameters). Each iteration it takes
`train_steps` Adam steps on MSE(decoder(x, z ~ q), y) + kl_weight KL(q || prior) over that
iteration's (task, risk) pairs, the prior becoming the detached posterior after every step
(streaming variational inference: older iterations live on only through the prior).

Selection: from the posterior of the last batch, `z_samples` draws of z give each task's predicted
risk; the acquisition is gamma_mean * mean + gamma_std * std (an upper confidence bound on the
risk). The `select` riskiest tasks share 1 - `random_ratio` of the sampling mass and every task
gets random_ratio / K (the authors' top half plus random candidates); uniform for the first
`warmup` iterations, as theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from mtrl.config import CurriculumConfig
from mtrl.config.algo_sections import opt
from mtrl.curriculum.builtin import mix_uniform
from mtrl.curriculum.stats import TaskStats
from mtrl.errors import MtrlError


@dataclass
class MPTSOptions:
    gamma_mean: float = opt(1.0, "acquisition weight of the predicted risk's mean (the authors' gamma_0)")
    gamma_std: float = opt(5.0, "acquisition weight of its standard deviation over z (gamma_1)", 0.0)
    select: int | None = opt(None, "tasks chosen by acquisition each iteration (null: half of them, rounded up)", 1)
    random_ratio: float = opt(0.5, "share of the sampling mass spread over all tasks", 0.0, 1.0)
    warmup: int = opt(5, "iterations of uniform sampling before the risk model is used", 0)
    z_samples: int = opt(50, "draws of z for the acquisition", 2)
    train_steps: int = opt(10, "risk-model Adam steps per iteration", 1)
    lr: float = opt(0.005, "risk-model Adam learning rate", 0.0, None, lo_open=True)
    kl_weight: float = opt(1e-4, "weight of KL(q || prior) in the risk model's loss", 0.0)
    hidden: int = opt(10, "width h = r = z of the risk model", 1)
    seed: int = opt(0, "seed of the risk model's initialisation and z draws", 0)


class RiskModel(nn.Module):
    """The neural process of the module docstring: encode (x, y) pairs, decode a risk for x."""

    def __init__(self, x_dim: int, h: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(x_dim + 1, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h))
        self.latent = nn.Sequential(nn.Linear(h, h), nn.ReLU())
        self.mu, self.sigma = nn.Linear(h, h), nn.Linear(h, h)
        self.decoder = nn.Sequential(
            nn.Linear(x_dim + h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)
        )

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | the pairs): (mu [h], sigma [h])."""
        r = self.latent(self.encoder(torch.cat([x, y[:, None]], 1)).mean(0))
        return self.mu(r), 0.1 + 0.9 * torch.sigmoid(self.sigma(r))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Risk for every x [N, d] under every z [S, h]: [S, N]."""
        s, n = z.shape[0], x.shape[0]
        xz = torch.cat([x.expand(s, n, -1), z[:, None, :].expand(s, n, -1)], -1)
        return self.decoder(xz).squeeze(-1)


class ModelPredictive:
    """MPTS: sample the tasks a learned risk model predicts to go worst (with its uncertainty)."""

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        self.eps, self.opt = cfg.eps, cfg.own()
        self.k = len(tasks)
        self.gen = torch.Generator().manual_seed(self.opt.seed)
        with torch.random.fork_rng():  # the model's init from its own seed, not the run's stream
            torch.manual_seed(self.opt.seed)
            self.model = RiskModel(self.k, self.opt.hidden)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.opt.lr)
        h = self.opt.hidden
        self.prior = (torch.zeros(h), torch.ones(h))
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None  # the last iteration's (x, y)
        self.iteration = 0
        self.predicted = (np.full(self.k, np.nan), np.full(self.k, np.nan))  # risk mean, std per task
        self.observed = np.full(self.k, np.nan)
        self.p = np.full(self.k, 1.0 / self.k)

    def probs(self) -> np.ndarray:
        return mix_uniform(self.p, self.eps)

    def update(self, stats: TaskStats) -> None:
        seen = np.flatnonzero(np.isfinite(stats.returns))
        self.iteration += 1
        if len(seen) >= 2:
            risk = -stats.returns[seen]
            y = (risk - risk.mean()) / (risk.std() + 1e-8)  # standardised over the iteration's tasks
            self.observed = np.full(self.k, np.nan)
            self.observed[seen] = y
            self.batch = (torch.eye(self.k)[seen], torch.as_tensor(y, dtype=torch.float32))
            self._fit(*self.batch)
        if self.batch is not None:
            self._acquire()

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for _ in range(self.opt.train_steps):
            mu, sigma = self.model.posterior(x, y)
            z = mu + sigma * torch.randn(mu.shape, generator=self.gen)
            loss = nn.functional.mse_loss(self.model.decode(x, z[None])[0], y)
            kl = torch.distributions.kl_divergence(Normal(mu, sigma), Normal(*self.prior)).sum()
            loss = loss + self.opt.kl_weight * kl
            if not bool(torch.isfinite(loss)):
                raise MtrlError(f"curriculum 'mpts': the risk model's loss is {loss.item()} (expected a finite number)")
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.prior = (mu.detach(), sigma.detach())

    @torch.no_grad()
    def _acquire(self) -> None:
        assert self.batch is not None
        mu, sigma = self.model.posterior(*self.batch)
        z = mu + sigma * torch.randn(self.opt.z_samples, len(mu), generator=self.gen)
        risk = self.model.decode(torch.eye(self.k), z)  # [S, K]
        mean, std = risk.mean(0), risk.std(0)
        if not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise MtrlError("curriculum 'mpts': the risk model predicted non-finite risks")
        self.predicted = (mean.numpy().astype(np.float64), std.numpy().astype(np.float64))
        if self.iteration <= self.opt.warmup:
            return
        score = self.opt.gamma_mean * mean + self.opt.gamma_std * std
        m = min(self.k, self.opt.select or math.ceil(self.k / 2))
        top = torch.topk(score, m).indices.numpy()
        r = self.opt.random_ratio
        self.p = np.full(self.k, r / self.k)
        self.p[top] += (1 - r) / m

    def scores(self) -> dict[str, np.ndarray]:
        """The predicted risk per task (mean and std over z) beside the observed one, standardised alike."""
        return {"predicted_risk": self.predicted[0], "risk_std": self.predicted[1], "observed_risk": self.observed}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "prior": list(self.prior),
            "batch": list(self.batch) if self.batch is not None else None,
            "iteration": self.iteration,
            "generator": self.gen.get_state(),
            "p": torch.as_tensor(self.p),
            "predicted": [torch.as_tensor(a) for a in self.predicted],
            "observed": torch.as_tensor(self.observed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.prior = (state["prior"][0], state["prior"][1])
        self.batch = (state["batch"][0], state["batch"][1]) if state["batch"] is not None else None
        self.iteration = int(state["iteration"])
        self.gen.set_state(state["generator"])
        self.p = state["p"].numpy()
        self.predicted = (state["predicted"][0].numpy(), state["predicted"][1].numpy())
        self.observed = state["observed"].numpy()
