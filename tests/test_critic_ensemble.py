"""policy.critic_ensemble: the twin critics stacked and vmapped (mtrl.nn.sac.CriticEnsemble) give
the numbers of the two modules, convert both ways with their Adam state, and refuse what they
cannot do with one line."""

from __future__ import annotations

import copy

import pytest
import torch

from mtrl.algos.sac_learner import SACLearner
from mtrl.errors import MtrlError
from mtrl.nn.moore import orthonormal_mix
from mtrl.nn.network import PolicySpec
from mtrl.nn.sac import CriticEnsemble, SACActor, TwinQ

ARCHS = ["mlp", "multihead", "moore", "moe", "softmod", "care"]


def spec(arch: str) -> PolicySpec:
    meta = ((0.0, 1.0), (1.0, 0.0), (1.0, 1.0)) if arch == "care" else None
    return PolicySpec((5,), 3, 2, False, arch, 32, 2, kind="sac", task_metadata=meta, activation="relu")


def batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(12, 5, generator=g),
        "actions": torch.rand(12, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(12, generator=g),
        "next_obs": torch.randn(12, 5, generator=g),
        "terminated": torch.rand(12, generator=g) < 0.2,
        "task_id": torch.arange(12) % 3,
    }


def update(learner: SACLearner, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)  # the actor's reparameterised samples
    return learner.update(batch(seed))


def learner(arch: str, ensemble: bool) -> SACLearner:
    torch.manual_seed(0)
    actor = SACActor(spec(arch))
    critic = CriticEnsemble(spec(arch)) if ensemble else TwinQ(spec(arch))
    return SACLearner(actor, critic, 3, 2, max_grad_norm=1.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_ensemble_computes_the_twin_critics_and_converts_both_ways(arch):
    torch.manual_seed(0)
    twins = TwinQ(spec(arch))
    torch.manual_seed(0)
    ensemble = CriticEnsemble(spec(arch))  # the same seed draws the same two critics
    b = batch(1)
    args = (b["obs"], b["actions"], b["task_id"])
    for mine, theirs in zip(ensemble(*args), twins(*args)):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    for p in ensemble.stacked.parameters():
        assert p.shape[0] == 2
    back = TwinQ(spec(arch))
    back.load_state_dict(ensemble.state_dict())  # ensemble -> two modules
    again = CriticEnsemble(spec(arch))
    again.load_state_dict(back.state_dict())  # two modules -> ensemble
    for key, value in ensemble.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


@pytest.mark.parametrize("arch", ["mlp", "moore"])
def test_updates_match_the_two_modules_and_adam_state_converts(arch):
    """Two updates in each layout from the same start land on the same weights; then the two-module
    learner's whole state (critics, targets, Adam moments) loads into an ensemble learner, and one
    more update on each gives the same weights again."""
    plain, stacked = learner(arch, False), learner(arch, True)
    stacked.critic.load_state_dict(plain.critic.state_dict())
    stacked.target.load_state_dict(plain.target.state_dict())
    for seed in (1, 2):
        a, b = update(plain, seed), update(stacked, seed)
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    twins = TwinQ(spec(arch))
    twins.load_state_dict(stacked.critic.state_dict())
    for key, value in plain.critic.state_dict().items():
        torch.testing.assert_close(twins.state_dict()[key], value, rtol=1e-4, atol=1e-5)

    resumed = learner(arch, True)  # a fresh ensemble learner resumed from the two-module state
    resumed.critic.load_state_dict(plain.critic.state_dict())
    resumed.actor.load_state_dict(plain.actor.state_dict())
    resumed.load_state_dict(copy.deepcopy(plain.state_dict()))
    moments = resumed.critic_opt.state_dict()["state"]
    assert all(m["exp_avg"].shape[0] == 2 and float(m["step"]) == 2 for m in moments.values())
    update(plain, 3)
    update(resumed, 3)
    twins.load_state_dict(resumed.critic.state_dict())
    for key, value in plain.critic.state_dict().items():
        torch.testing.assert_close(twins.state_dict()[key], value, rtol=1e-4, atol=1e-5)

    back = learner(arch, False)  # and the other way: the ensemble's state into two modules
    back.load_state_dict(copy.deepcopy(resumed.state_dict()))
    n = len(list(back.critic.parameters()))
    assert len(back.critic_opt.state_dict()["state"]) == n


def test_moore_fallback_under_vmap_matches_the_plain_forward():
    """Duplicate experts make the Gram matrix singular: the Cholesky fails and MOORE takes the
    Gram-Schmidt path; under vmap (one member duplicated, one not) each member takes its own path,
    and the backward stays finite."""
    torch.manual_seed(0)
    h = torch.randn(2, 6, 3, 8)
    h[0, :, 1] = h[0, :, 0]  # member 0: two identical experts
    w = torch.softmax(torch.randn(6, 3), -1)
    h.requires_grad_(True)
    out = torch.func.vmap(orthonormal_mix, in_dims=(0, None))(h, w)
    for i in range(2):
        torch.testing.assert_close(out[i], orthonormal_mix(h[i], w), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert h.grad is not None and bool(torch.isfinite(h.grad).all())


def test_what_the_ensemble_cannot_do_is_one_line(tmp_path):
    with pytest.raises(
        MtrlError, match=r"architecture 'paco' resets per-task parameters .* policy.critic_ensemble=false"
    ):
        CriticEnsemble(spec("paco"))
    from mtrl.config import load_config
    from mtrl.run.trainer import train
    from tests.conftest import ROOT

    with pytest.raises(MtrlError, match=r"critic_ensemble=true does not combine .*\(learner.aggregator=pcgrad"):
        load_config(ROOT / "configs/toy_point_sac.yaml", ["policy.critic_ensemble=true", "learner.aggregator=pcgrad"])
    cfg = load_config(ROOT / "configs/toy_mtppo.yaml", ["policy.critic_ensemble=true", f"run_dir={tmp_path}"])
    with pytest.raises(MtrlError, match=r"only SAC has twin critics"):
        train(cfg)


def test_a_run_resumes_with_its_critics_converted(tmp_path, capsys):
    """A toy SAC run written with two critic modules resumes with policy.critic_ensemble=true: the
    critics start from the checkpoint's weights and training continues to the new budget."""
    from mtrl.config import load_config
    from mtrl.run.checkpoint import load_latest
    from mtrl.run.trainer import train
    from tests.conftest import ROOT

    base = ["train.eval_episodes=0", "train.eval_every=null", "train.checkpoint_every=1", f"run_dir={tmp_path}"]
    train(load_config(ROOT / "configs/toy_point_sac.yaml", [*base, "train.total_steps=560"]))
    _, first = load_latest(tmp_path)
    run = train(
        load_config(
            ROOT / "configs/toy_point_sac.yaml",
            [*base, "train.total_steps=720", "policy.critic_ensemble=true", f"resume={tmp_path}"],
        )
    )
    assert "converting the twin critics of" in capsys.readouterr().out
    _, last = load_latest(run)
    assert last["env_steps"] >= 720 > first["env_steps"] and last["spec"]["critic_ensemble"] is True
    stacked = last["policy"]["critic.stacked.net.trunk.0.weight"]
    assert stacked.shape[0] == 2 and not torch.equal(stacked[0], first["policy"]["critic.q1.net.trunk.0.weight"])
