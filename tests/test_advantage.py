"""GAE with terminations and truncations; per-task advantage normalisation."""

from __future__ import annotations

import numpy as np
import torch

from mtrl.data.advantage import gae, task_normalize


def _gae(rewards, values, last, term, trunc, boot, gamma=0.9, lam=0.8):
    a = lambda x, dt=np.float32: np.asarray(x, dt).reshape(-1, 1)  # noqa: E731
    adv, ret = gae(
        a(rewards), a(values), np.asarray([last], np.float32), a(term, bool), a(trunc, bool), a(boot), gamma, lam
    )
    return adv[:, 0], ret[:, 0]


def test_gae_matches_hand_computation_inside_one_episode():
    adv, ret = _gae([1, 0, 2], [0.5, 1.0, 1.5], 2.0, [0, 0, 0], [0, 0, 0], [0, 0, 0])
    d = [1 + 0.9 * 1.0 - 0.5, 0 + 0.9 * 1.5 - 1.0, 2 + 0.9 * 2.0 - 1.5]
    a2 = d[2]
    a1 = d[1] + 0.72 * a2
    a0 = d[0] + 0.72 * a1
    np.testing.assert_allclose(adv, [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + np.array([0.5, 1.0, 1.5]), rtol=1e-6)


def test_termination_does_not_bootstrap_and_stops_the_recursion():
    adv, _ = _gae([1, 1, 5], [0.5, 0.5, 9.0], 100.0, [0, 1, 0], [0, 0, 0], [0, 0, 0])
    assert adv[1] == np.float32(1 - 0.5)  # terminal: next value is 0, nothing flows back from t=2
    np.testing.assert_allclose(adv[0], (1 + 0.9 * 0.5 - 0.5) + 0.72 * adv[1], rtol=1e-6)


def test_truncation_bootstraps_from_the_final_observation_value():
    adv, _ = _gae([1, 1, 5], [0.5, 0.5, 9.0], 100.0, [0, 0, 0], [0, 1, 0], [0, 3.0, 0])
    np.testing.assert_allclose(adv[1], 1 + 0.9 * 3.0 - 0.5, rtol=1e-6)  # V(final obs) = 3, not V(next slot obs) = 9
    np.testing.assert_allclose(adv[0], (1 + 0.9 * 0.5 - 0.5) + 0.72 * adv[1], rtol=1e-6)


def test_fragment_end_bootstraps_from_last_value():
    adv, _ = _gae([0], [1.0], 4.0, [0], [0], [0])
    np.testing.assert_allclose(adv, [0.9 * 4.0 - 1.0], rtol=1e-6)


def test_task_normalize_worked_case():
    adv = torch.tensor([10, 20, 30, 0.1, 0.2, 0.3], dtype=torch.float64)
    out = task_normalize(adv, torch.tensor([0, 0, 0, 1, 1, 1]), num_tasks=2)
    np.testing.assert_allclose(out.numpy(), [-1.2247, 0, 1.2247] * 2, atol=1e-4)


def test_task_normalize_interleaved_and_absent_tasks():
    rng = np.random.default_rng(0)
    adv = torch.tensor(rng.normal(size=200) * 5 + 3)
    task = torch.tensor(rng.choice([0, 2, 3], size=200))  # task 1 absent
    out = task_normalize(adv, task, num_tasks=4)
    for k in (0, 2, 3):
        sel = out[task == k]
        assert abs(sel.mean().item()) < 1e-9 and abs(sel.std(unbiased=False).item() - 1) < 1e-6
    assert torch.isfinite(out).all()
