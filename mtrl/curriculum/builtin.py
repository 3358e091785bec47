"""The built-in curricula (docs/algorithms/curricula.md): uniform, learning_progress, plr, exp3,
worst_task and threshold. Each mixes in `curriculum.eps` of the uniform distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtrl.config import CurriculumConfig
from mtrl.config.algo_sections import opt
from mtrl.curriculum.stats import TaskStats
from mtrl.errors import MtrlError


def mix_uniform(p: np.ndarray, eps: float) -> np.ndarray:
    """(1 - eps) p + eps / K, after mapping non-finite or negative entries to 0 (all zero: uniform)."""
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
    return (1 - eps) * p + eps / len(p)


def softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = x / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def widen_range(lo: np.ndarray, hi: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each task's running (min, max) of `r`, ignoring NaN entries (tasks without data)."""
    seen = np.isfinite(r)
    return np.where(seen, np.minimum(lo, r), lo), np.where(seen, np.maximum(hi, r), hi)


@dataclass
class LearningProgressOptions:
    temperature: float = opt(0.1, "Boltzmann temperature on |Q|", 0.0, None, lo_open=True)
    alpha: float = opt(0.1, "step size of the progress estimate Q", 0.0, 1.0, lo_open=True)


@dataclass
class PLROptions:
    beta: float = opt(0.1, "rank-transform temperature beta (h = rank^(-1/beta))", 0.0, None, lo_open=True)
    rho: float = opt(0.1, "weight rho of the staleness distribution", 0.0, 1.0)


@dataclass
class Exp3Options:
    gamma: float = opt(0.01, "exploration rate gamma", 0.0, 1.0)


@dataclass
class WorstTaskOptions:
    temperature: float = opt(0.1, "Boltzmann temperature on the negated normalised returns", 0.0, None, lo_open=True)


@dataclass
class ThresholdOptions:
    level: float = opt(0.8, "success rate (or normalised return) that unlocks the next task", 0.0, 1.0)
    order: str | None = opt(None, "comma-separated task names in unlock order (null: the suite's order)")


class _State:
    """Plain numpy attributes named in `_fields`, saved and restored as float64 arrays."""

    _fields: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        return {f: np.asarray(getattr(self, f), np.float64).tolist() for f in self._fields}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in self._fields:
            setattr(self, f, np.asarray(state[f], np.float64))


class Uniform(_State):
    """Every task equally likely at every reset."""

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        self.k = len(tasks)

    def probs(self) -> np.ndarray:
        return np.full(self.k, 1.0 / self.k)

    def update(self, stats: TaskStats) -> None:
        pass

    def scores(self) -> dict[str, np.ndarray]:
        return {}


class LearningProgress(_State):
    """TSCL online (Matiisen et al. 2017): Q_k <- Q_k + alpha (r_k - r_k_prev - Q_k), sampled by
    a Boltzmann distribution on |Q_k|: tasks whose return changes fastest, up or down."""

    _fields = ("q", "prev")

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        self.eps, self.opt = cfg.eps, cfg.own()
        self.q, self.prev = np.zeros(len(tasks)), np.full(len(tasks), np.nan)

    def probs(self) -> np.ndarray:
        return mix_uniform(softmax(np.abs(self.q), self.opt.temperature), self.eps)

    def update(self, stats: TaskStats) -> None:
        r = stats.returns
        both = np.isfinite(r) & np.isfinite(self.prev)
        self.q = np.where(both, self.q + self.opt.alpha * (r - self.prev - self.q), self.q)
        self.prev = np.where(np.isfinite(r), r, self.prev)

    def scores(self) -> dict[str, np.ndarray]:
        return {"q": self.q}


class PrioritizedLevelReplay(_State):
    """PLR (Jiang et al. 2021): P = (1 - rho) P_S + rho P_C with P_S from the rank transform
    h_k = rank_k^(-1/beta) of score_k = mean |GAE|, and P_C ~ c - C_k the staleness (episodes
    since task k last had one). A task not scored yet ranks first, as an unseen level."""

    _fields = ("score", "last_seen", "episodes")

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        k = len(tasks)
        self.eps, self.opt = cfg.eps, cfg.own()
        self.score, self.last_seen, self.episodes = np.full(k, np.nan), np.zeros(k), np.zeros(1)

    def probs(self) -> np.ndarray:
        k = len(self.score)
        order = np.argsort(-np.where(np.isfinite(self.score), self.score, np.inf), kind="stable")
        rank = np.empty(k)
        rank[order] = np.arange(1, k + 1)
        h = rank ** (-1.0 / self.opt.beta)
        stale = self.episodes[0] - self.last_seen
        p_c = stale / stale.sum() if stale.sum() > 0 else np.full(k, 1.0 / k)
        return mix_uniform((1 - self.opt.rho) * h / h.sum() + self.opt.rho * p_c, self.eps)

    def update(self, stats: TaskStats) -> None:
        self.score = np.where(np.isfinite(stats.abs_advantage), stats.abs_advantage, self.score)
        self.episodes = self.episodes + np.nansum(stats.episodes)
        self.last_seen = np.where(stats.episodes > 0, self.episodes[0], self.last_seen)

    def scores(self) -> dict[str, np.ndarray]:
        return {"score": self.score, "staleness": self.episodes[0] - self.last_seen}


class Exp3(_State):
    """EXP3 (Auer et al. 2002) with every task that finished an episode as a pulled arm, rewarded
    by its absolute learning progress |r_k - r_k_prev| scaled to [0, 1] by the task's return range."""

    _fields = ("w", "last_p", "prev", "lo", "hi")

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        k = len(tasks)
        self.eps, self.opt = cfg.eps, cfg.own()
        self.w, self.prev = np.full(k, 1.0 / k), np.full(k, np.nan)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)
        self.last_p = self._exp3_probs()

    def _exp3_probs(self) -> np.ndarray:
        g = self.opt.gamma
        return (1 - g) * self.w / self.w.sum() + g / len(self.w)

    def probs(self) -> np.ndarray:
        self.last_p = self._exp3_probs()
        return mix_uniform(self.last_p, self.eps)

    def pull(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        """w_a <- w_a exp((r_a / p_a) gamma / K) for the pulled arms, then renormalise."""
        gain = np.zeros(len(self.w))
        gain[arms] = rewards / self.last_p[arms] * self.opt.gamma / len(self.w)
        self.w = self.w * np.exp(gain - gain.max())  # the shift cancels in the renormalisation
        self.w = self.w / self.w.sum()

    def update(self, stats: TaskStats) -> None:
        r = stats.returns
        seen = np.isfinite(r)
        self.lo, self.hi = widen_range(self.lo, self.hi, r)
        pulled = np.flatnonzero(seen & np.isfinite(self.prev))
        progress = np.abs(r - self.prev)[pulled] / np.maximum(self.hi - self.lo, 1e-8)[pulled]
        self.pull(pulled, np.clip(progress, 0.0, 1.0))
        self.prev = np.where(seen, r, self.prev)

    def scores(self) -> dict[str, np.ndarray]:
        return {"weight": self.w}


class WorstTask(_State):
    """MT-GRPO's task weights z when the algorithm has them, else a softmax over the negative
    normalised return (scaled by the range of all tasks' returns so far): the worst task is
    sampled most."""

    _fields = ("z", "ret", "range")

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        k = len(tasks)
        self.eps, self.opt = cfg.eps, cfg.own()
        self.z, self.ret, self.range = (
            np.full(k, 1.0 / k),
            np.full(k, np.nan),
            np.array([np.inf, -np.inf]),
        )

    def probs(self) -> np.ndarray:
        return mix_uniform(self.z, self.eps)

    def update(self, stats: TaskStats) -> None:
        if stats.task_weights is not None:
            self.z = np.asarray(stats.task_weights, np.float64)
            return
        r, seen = stats.returns, np.isfinite(stats.returns)
        self.ret = np.where(seen, r, self.ret)
        if seen.any():
            self.range = np.array([min(self.range[0], r[seen].min()), max(self.range[1], r[seen].max())])
        known = np.isfinite(self.ret)
        norm = np.where(known, (self.ret - self.range[0]) / max(self.range[1] - self.range[0], 1e-8), 0.0)
        self.z = softmax(-norm, self.opt.temperature)

    def scores(self) -> dict[str, np.ndarray]:
        return {"weight": self.z}


class Threshold(_State):
    """Success-threshold staging: tasks unlock one at a time in `curriculum.threshold.order` once every
    task before them has a last success rate >= `curriculum.threshold.level` (normalised return where the
    suite reports no success); slots sample the unlocked tasks uniformly."""

    _fields = ("unlocked", "level", "lo", "hi")

    def __init__(self, tasks: tuple[str, ...], cfg: CurriculumConfig) -> None:
        self.eps, self.opt = cfg.eps, cfg.own()
        order = self.opt.order
        names = [t.strip() for t in order.split(",")] if order else list(tasks)
        unknown = [n for n in names if n not in tasks]
        if unknown or sorted(names) != sorted(tasks):
            raise MtrlError(f"curriculum.threshold.order must name every task once ({', '.join(tasks)}); got {order!r}")
        k = len(tasks)
        self.rank = np.array([names.index(t) for t in tasks])  # rank[task] = its stage
        self.unlocked, self.level = np.ones(1), np.full(k, np.nan)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)

    def probs(self) -> np.ndarray:
        return mix_uniform((self.rank < self.unlocked[0]).astype(float), self.eps)

    def update(self, stats: TaskStats) -> None:
        r = stats.returns
        self.lo, self.hi = widen_range(self.lo, self.hi, r)
        level = np.where(np.isfinite(stats.success), stats.success, (r - self.lo) / np.maximum(self.hi - self.lo, 1e-8))
        self.level = np.where(np.isfinite(level), level, self.level)
        passed = np.nan_to_num(self.level, nan=-1.0) >= self.opt.level
        stages_passed = np.zeros(len(passed), bool)
        stages_passed[self.rank] = passed  # in stage order
        first_fail = int(np.argmin(stages_passed)) if not stages_passed.all() else len(passed)
        self.unlocked = np.array([max(self.unlocked[0], min(first_fail + 1, len(passed)))], np.float64)

    def scores(self) -> dict[str, np.ndarray]:
        return {"unlocked": (self.rank < self.unlocked[0]).astype(float)}
