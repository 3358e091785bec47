"""Plug-ins from outside mtrl: an algorithm in one file plus one registration, an architecture
through the `mtrl.archs` entry point with no edit to mtrl, and malformed plug-ins of every kind
stopped with one line that names them (docs/architecture.md, "Plug-in contracts")."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from examples.custom_algorithm import A2C
from mtrl.algos.base import Iteration
from mtrl.algos.ppo import PPOAlgorithm
from mtrl.collect.requests import FragmentRequest
from mtrl.config import describe, load_config
from mtrl.curriculum import register_curriculum
from mtrl.curriculum.builtin import Uniform
from mtrl.errors import ConfigError, MtrlError
from mtrl.registry import ALGOS, ARCHS, register_algo, register_arch
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import train
from tests.conftest import ROOT, run_cli

TOY = ROOT / "configs/toy_mtppo.yaml"
FAST = ["rollout.workers=0", "train.eval_episodes=2", "learner.device=cpu"]


@pytest.fixture
def registered():
    """Registers plug-ins for one test and removes them afterwards."""
    names = []

    def add(registry, name, *args):
        {id(ALGOS): register_algo, id(ARCHS): register_arch}[id(registry)](name, *args)
        names.append((registry, name))

    yield add
    for registry, name in names:
        registry._items.pop(name, None)


def test_an_algorithm_in_one_file_plus_one_registration_trains_and_resumes(tmp_path, registered):
    registered(ALGOS, "a2c", A2C)
    run = tmp_path / "run"
    cfg = load_config(
        TOY, [*FAST, f"run_dir={run}", "algo=a2c", "a2c.lr=2e-3", "train.total_steps=3072", "train.checkpoint_every=2"]
    )
    assert cfg.section("a2c").lr == 2e-3 and cfg.section("a2c").value_coef == 0.5
    assert cfg.section("ppo") is cfg.ppo  # built-in and plug-in sections are read the same way
    with pytest.raises(KeyError, match="no algorithm section 'a3c'"):
        cfg.section("a3c")
    train(cfg)
    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 3072 and json.loads(ckpt["config"])["a2c"] == {"lr": 2e-3, "value_coef": 0.5}
    assert load_config(run / "config.yaml").sections["a2c"].lr == 2e-3  # the saved config reads back
    with pytest.raises(ConfigError, match="unknown config key 'a2c.gamma'"):
        load_config(TOY, ["algo=a2c", "a2c.gamma=0.9"])
    assert any("a2c.value_coef" in line for line in describe())
    assert json.loads((run / "eval.json").read_text())["suite"] == "toy-mt3"
    train(load_config(TOY, [*FAST, f"resume={run}", "algo=a2c", "train.total_steps=4608"]))
    assert load_latest(run)[1]["env_steps"] >= 4608
    out = run_cli("eval", str(run), "--episodes", "1")  # another process: a2c is not registered there
    assert out.returncode == 2 and "unknown algorithm 'a2c'" in out.stderr


def test_a_user_architecture_plugs_in_through_the_entry_point(tmp_path):
    (tmp_path / "userarch.py").write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        import torch
        from torch import nn
        import mtrl.registry

        @dataclass
        class Options:
            width: int = 8

        class Wide(nn.Module):
            '''One hidden layer of policy.wide.width units on cat(obs, task one-hot).'''
            def __init__(self, spec, out_dim, out_gain):
                super().__init__()
                self.k = spec.num_tasks
                self.net = nn.Sequential(nn.Linear(spec.obs_shape[0] + self.k, spec.option("width")), nn.Tanh(),
                                         nn.Linear(spec.option("width"), out_dim))
            def forward(self, obs, task_id):
                return self.net(torch.cat([obs.float(), nn.functional.one_hot(task_id, self.k).float()], -1))

        def register():
            mtrl.registry.register_arch("wide", Wide, Options)
    """)
    )
    dist = tmp_path / "userarch-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userarch\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtrl.archs]\nwide = userarch:register\n")
    env = {"PYTHONPATH": str(tmp_path)}
    listing = run_cli("archs", env=env)
    assert (
        listing.returncode == 0 and "wide: One hidden layer" in listing.stdout and "policy.wide.width" in listing.stdout
    )
    run = tmp_path / "run"
    out = run_cli(
        "train",
        str(TOY),
        *FAST,
        f"run_dir={run}",
        "policy.arch=wide",
        "policy.wide.width=12",
        "train.total_steps=1536",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    _, ckpt = load_latest(run)
    assert ckpt["policy"]["actor.net.0.weight"].shape[0] == 12 and dict(ckpt["spec"]["options"]) == {"width": 12}
    bad = run_cli(
        "train", str(TOY), *FAST, f"run_dir={tmp_path / 'bad'}", "policy.arch=wide", "policy.wide.depth=2", env=env
    )
    assert bad.returncode == 2 and "unknown config key 'policy.wide.depth'" in bad.stderr


class BadShape(torch.nn.Module):
    def __init__(self, spec, out_dim, out_gain):  # noqa: ANN001
        super().__init__()
        self.lin = torch.nn.Linear(spec.obs_shape[0], out_dim + 1)

    def forward(self, obs, task_id):  # noqa: ANN001, ANN201
        return self.lin(obs.float())


@pytest.mark.parametrize(
    "build, expected",
    [
        (
            BadShape,
            r"architecture 'bad': forward\(obs \[2, \d+\], task_id \[2\]\) returned \(2, 5\); expected a finite tensor of shape \(2, 4\)",
        ),
        (
            lambda spec, out_dim, gain: "not a module",
            "architecture 'bad': its builder returned str, expected a torch.nn.Module",
        ),
        (lambda spec, out_dim, gain: 1 / 0, "architecture 'bad': its builder raised ZeroDivisionError"),
    ],
)
def test_a_malformed_architecture_stops_with_one_line(tmp_path, registered, build, expected):
    registered(ARCHS, "bad", build)
    with pytest.raises(MtrlError, match=expected):
        train(load_config(TOY, [*FAST, f"run_dir={tmp_path}", "policy.arch=bad"]))
    assert not (tmp_path / "checkpoints").exists()


class BadLearn(A2C):
    def learn(self, frag, gen):  # noqa: ANN001, ANN201
        return {"loss": 0.0}


class BadSteps(A2C):
    def learn(self, frag, gen):  # noqa: ANN001, ANN201
        it = super().learn(frag, gen)
        return Iteration(it.env_steps, it.episodes, it.losses, it.env_errors, {}, it.task_steps[:2], it.task_abs_adv)


class BadRequest(A2C):
    def requests(self, env_steps, task_probs, gen):  # noqa: ANN001, ANN201
        return (yield "a fragment, please")


class BadGenerator(A2C):
    def requests(self, env_steps, task_probs, gen):  # noqa: ANN001, ANN201
        return FragmentRequest(task_probs)


@pytest.mark.parametrize(
    "cls, expected",
    [
        (BadLearn, "algorithm 'bad': learn\\(\\) returned dict; expected a mtrl.algos.base.Iteration"),
        (
            BadSteps,
            "algorithm 'bad': learn\\(\\) returned an Iteration with task_steps of shape \\(2,\\); .*shape \\(3,\\)",
        ),
        (
            BadRequest,
            "algorithm 'bad' asked the rollout workers for str; they answer FragmentRequest and GroupRequest",
        ),
        (BadGenerator, "algorithm 'bad': requests\\(\\) returned FragmentRequest; expected a generator"),
    ],
)
def test_a_malformed_algorithm_stops_at_its_first_iteration(tmp_path, registered, cls, expected):
    registered(ALGOS, "bad", cls)
    with pytest.raises(MtrlError, match=expected):
        train(load_config(TOY, [*FAST, f"run_dir={tmp_path}", "algo=bad"]))


def test_an_algorithm_class_without_the_protocol_is_refused_at_registration():
    class Half:
        collector = "fragments"

        def learn(self, data, gen):  # noqa: ANN001, ANN201
            return None

    with pytest.raises(
        MtrlError,
        match=r"register_algo\('half', 'Half'\): an algorithm class needs method check_config\(\), method "
        r"requests\(\).* attribute section \(str or NoneType\), attribute policy_kind",
    ):
        register_algo("half", Half)
    assert "half" not in ALGOS.names()
    assert PPOAlgorithm in (ALGOS.get(n) for n in ALGOS.names())


def test_a_curriculum_whose_scores_are_not_per_task_stops_with_one_line(tmp_path):
    """The README's curriculum is 'any object with probs(), update(stats), scores(), ...': scores()
    returning {"updates": 3.0} used to crash in the logger with a TypeError traceback."""

    class Counting(Uniform):
        def scores(self):  # noqa: ANN201
            return {"updates": 3.0}

    register_curriculum("counting", Counting, overwrite=True)
    with pytest.raises(
        MtrlError,
        match=r"curriculum 'counting': scores\(\) returned 'updates': 3.0; expected each "
        r"score to be an array of 3 numbers, one per task",
    ):
        train(load_config(TOY, [*FAST, f"run_dir={tmp_path}", "curriculum.name=counting"]))
    np.testing.assert_equal(Uniform(("a", "b"), load_config(TOY).curriculum).scores(), {})


def test_a_policy_kind_plugs_in_and_a_malformed_one_is_one_line(tmp_path):
    """An algorithm may name a policy kind registered from outside mtrl (here the built-in
    ActorCritic with a different value head); a builder that returns something else stops the
    run with one line naming the kind."""
    from mtrl.nn.policy import ActorCritic
    from mtrl.registry import POLICY_KINDS, register_policy_kind

    class WideCritic(ActorCritic):
        """ActorCritic whose values are doubled (a visible difference)."""

        def value(self, obs, task_id):
            return 2.0 * super().value(obs, task_id)

    class WideCriticPPO(PPOAlgorithm):
        policy_kind = "wide_critic"

    listing = run_cli("policy-kinds")
    assert listing.returncode == 0 and {ln.split(":")[0] for ln in listing.stdout.splitlines()} == {
        "actor_critic",
        "sac",
    }
    register_policy_kind("wide_critic", WideCritic)
    register_algo("wide_ppo", WideCriticPPO)
    try:
        run = train(load_config(TOY, [*FAST, "algo=wide_ppo", "train.total_steps=600", f"run_dir={tmp_path / 'a'}"]))
        assert load_latest(run)[1]["spec"]["kind"] == "wide_critic"
        register_policy_kind("wide_critic", lambda spec: torch.nn.Linear(2, 2), overwrite=True)
        with pytest.raises(MtrlError, match=r"policy kind 'wide_critic': its builder returned Linear without actor"):
            train(load_config(TOY, [*FAST, "algo=wide_ppo", f"run_dir={tmp_path / 'b'}"]))
    finally:
        POLICY_KINDS._items.pop("wide_critic", None)
        ALGOS._items.pop("wide_ppo", None)


def test_a_loss_guard_is_declared_at_registration_and_checked_when_built():
    from mtrl.nn.network import PolicySpec, is_loss_guard, task_network

    class Plain(torch.nn.Module):
        def __init__(self, spec, out_dim, out_gain) -> None:  # noqa: ANN001
            super().__init__()
            self.out = torch.nn.Linear(spec.obs_shape[0], out_dim)

        def forward(self, obs, task_id):  # noqa: ANN001, ANN201
            return self.out(obs)

    class Guarded(Plain):
        def extreme_tasks(self, task_losses):  # noqa: ANN001, ANN201
            return task_losses > 10

        def reset_tasks(self, extreme) -> int:  # noqa: ANN001
            return 0

    spec = lambda arch: PolicySpec((3,), 2, 2, True, arch, hidden=4, layers=1)  # noqa: E731
    try:
        register_arch("undeclared-test", Guarded)  # has the methods, but did not declare a guard
        register_arch("guarded-test", Guarded, loss_guard=True)
        register_arch("false-guard-test", Plain, loss_guard=True)
        assert not is_loss_guard(task_network(spec("undeclared-test"), 2, 1.0))  # no duck typing
        assert is_loss_guard(task_network(spec("guarded-test"), 2, 1.0))
        with pytest.raises(
            MtrlError,
            match="^architecture 'false-guard-test' is registered with loss_guard=True, but its network lacks extreme_tasks, reset_tasks",
        ):
            task_network(spec("false-guard-test"), 2, 1.0)
    finally:
        for name in ("undeclared-test", "guarded-test", "false-guard-test"):
            ARCHS._items.pop(name, None)


def test_requests_are_answered_by_their_type_whatever_collector_was_built_first():
    """A pool built for fragments answers a GroupRequest too (its group collector built on the
    first one), and the other way round: the declared collector only says what to build ahead."""
    import numpy as np

    from mtrl.collect.pool import WorkerPool
    from mtrl.collect.requests import GroupRequest
    from mtrl.data.batch import Fragment, Groups
    from mtrl.env.suite import get_suite
    from mtrl.nn.policy import build_policy
    from mtrl.run.trainer import policy_spec

    cfg = load_config(TOY, ["rollout.workers=0", "rollout.num_envs=3", "rollout.steps_per_env=8"])
    suite = get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    policy = build_policy(spec)

    def both():  # noqa: ANN202
        groups = yield GroupRequest(np.array([0, 2]), np.array([5, 6]), np.array([0, 1]), 2)
        fragment = yield FragmentRequest(None)
        return groups, fragment

    for declared in ("fragments", "groups"):
        pool = WorkerPool(suite, spec, cfg, seed=0, collector=declared)
        try:
            groups, fragment = pool.serve(both(), policy, 0, "both")
        finally:
            pool.close()
        assert isinstance(groups, Groups) and sorted(set(groups.episodes.task_id.tolist())) == [0, 2]
        assert isinstance(fragment, Fragment) and fragment.task_id.shape == (8, 3) and fragment.num_steps > 0
