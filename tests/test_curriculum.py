"""Curricula: worked cases, properties of every sampler, wiring into real workers, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mtrl
from mtrl.collect.pool import WorkerPool
from mtrl.config import CurriculumConfig, load_config
from mtrl.curriculum import TaskStats, make_curriculum, register_curriculum
from mtrl.curriculum.builtin import Exp3Options, PLROptions, ThresholdOptions, Uniform
from mtrl.errors import ConfigError
from mtrl.nn.policy import build_policy
from mtrl.registry import CURRICULA
from mtrl.run.checkpoint import load_latest
from mtrl.run.trainer import policy_spec, train
from tests.conftest import ROOT, run_cli

TOY = ROOT / "configs/toy_mtppo.yaml"
TASKS = ("a", "b", "c")
BUILTINS = ["uniform", "learning_progress", "plr", "exp3", "worst_task", "threshold", "mpts"]


def stats(returns, abs_adv=(np.nan,) * 3, episodes=(1, 1, 1), success=(np.nan,) * 3, it=0, z=None) -> TaskStats:
    f = lambda x: np.asarray(x, np.float64)  # noqa: E731
    return TaskStats(it, f(returns), f(success), f(abs_adv), np.asarray(episodes), z)


def test_learning_progress_worked_case():
    lp = make_curriculum(("a", "b"), CurriculumConfig(name="learning_progress", eps=0.0))
    lp.update(stats([0.2, 0.5], episodes=[1, 1]))  # first sight: no progress yet
    np.testing.assert_allclose(lp.probs(), [0.5, 0.5])
    lp.update(stats([0.4, 0.5], episodes=[1, 1]))  # Q = 0.1 * (0.4 - 0.2 - 0) = 0.02 for task a
    np.testing.assert_allclose(lp.scores()["q"], [0.02, 0.0])
    np.testing.assert_allclose(lp.probs(), [0.549834, 0.450166], atol=1e-6)  # softmax(|Q| / 0.1)


def test_plr_worked_case():
    plr = make_curriculum(TASKS, CurriculumConfig(name="plr", eps=0.0, options={"plr": PLROptions(beta=0.1, rho=0.1)}))
    plr.update(stats([0, 0, 0], abs_adv=[0.5, 2.0, 1.0], episodes=[10, 0, 0]))  # c = 10: a seen at 10
    plr.update(stats([0, 0, 0], abs_adv=[np.nan] * 3, episodes=[0, 10, 0]))  # c = 20: b seen at 20
    plr.update(stats([0, 0, 0], abs_adv=[np.nan] * 3, episodes=[10, 0, 0]))  # c = 30: a seen at 30
    # ranks (3, 1, 2) -> h = (3^-10, 1, 2^-10); staleness (0, 10, 30) -> P_C = (0, 1/4, 3/4)
    h = np.array([3.0**-10, 1.0, 2.0**-10])
    expected = 0.9 * h / h.sum() + 0.1 * np.array([0, 0.25, 0.75])
    np.testing.assert_allclose(plr.probs(), expected, atol=1e-9)
    np.testing.assert_allclose(plr.probs(), [1.5226e-5, 0.924107, 0.075878], atol=1e-5)


def test_exp3_worked_case():
    exp3 = make_curriculum(
        ("a", "b"), CurriculumConfig(name="exp3", eps=0.0, options={"exp3": Exp3Options(gamma=0.01)})
    )
    np.testing.assert_allclose(exp3.probs(), [0.5, 0.5])
    exp3.pull(np.array([0]), np.array([1.0]))  # w_a = 0.5 exp((1 / 0.5) * 0.01 / 2), renormalised
    np.testing.assert_allclose(exp3.scores()["weight"], [0.5025, 0.4975], atol=1e-6)
    np.testing.assert_allclose(exp3.probs(), [0.502475, 0.497525], atol=1e-6)  # 0.99 w + 0.01 / 2


def test_worst_task_follows_mt_grpo_weights_or_the_lowest_return():
    wt = make_curriculum(TASKS, CurriculumConfig(name="worst_task", eps=0.0))
    wt.update(stats([0.9, 0.1, 0.5]))
    p = wt.probs()
    assert p[1] > p[2] > p[0]
    wt.update(stats([0.9, 0.1, 0.5], z=np.array([0.2, 0.3, 0.5])))
    np.testing.assert_allclose(wt.probs(), [0.2, 0.3, 0.5])


def test_threshold_unlocks_tasks_in_the_given_order():
    th = make_curriculum(
        TASKS,
        CurriculumConfig(name="threshold", eps=0.0, options={"threshold": ThresholdOptions(level=0.8, order="c,a,b")}),
    )
    np.testing.assert_allclose(th.probs(), [0, 0, 1])
    th.update(stats([0, 0, 0], success=[0.0, 0.0, 0.9]))
    np.testing.assert_allclose(th.probs(), [0.5, 0, 0.5])
    th.update(stats([0, 0, 0], success=[np.nan, np.nan, 0.1]))  # an unlocked task never locks again
    np.testing.assert_allclose(th.probs(), [0.5, 0, 0.5])
    with pytest.raises(mtrl.MtrlError, match="curriculum.threshold.order"):
        make_curriculum(
            TASKS, CurriculumConfig(name="threshold", options={"threshold": ThresholdOptions(order="a,b,x")})
        )


finite_or_nan = st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")))
stat_lists = st.lists(
    st.tuples(*[st.tuples(finite_or_nan, finite_or_nan, st.integers(0, 5))] * 3), min_size=0, max_size=6
)


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=40, deadline=None)
@given(history=stat_lists, eps=st.floats(0.0, 1.0))
def test_every_sampler_gives_a_distribution_with_the_eps_floor(name, history, eps):
    """Whatever the stats (none, NaN for tasks without a finished episode, huge values), the
    probabilities stay finite, sum to 1 and give every task at least eps / K."""
    cur = make_curriculum(TASKS, CurriculumConfig(name=name, eps=eps))
    for it, per_task in enumerate(history):
        ret, adv, eps_count = (np.array(col, np.float64) for col in zip(*per_task))
        cur.update(stats(np.where(eps_count > 0, ret, np.nan), abs_adv=adv, episodes=eps_count.astype(int), it=it))
        p = cur.probs()
        assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-9 and (p >= eps / 3 - 1e-12).all(), (p, per_task)
    p = cur.probs()
    assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-9 and (p >= eps / 3 - 1e-12).all()


def test_ray_workers_sample_tasks_as_the_curriculum_says():
    """p = (1, 0, 0) mixed with eps = 0.1 -> (0.933, 0.033, 0.033), on real MiniGrid with Ray."""
    pytest.importorskip("ray")
    cfg = load_config(
        ROOT / "configs/minigrid_mt3_mtppo.yaml",
        [
            "curriculum.name=uniform",
            "rollout.workers=2",
            "rollout.num_envs=8",
            "rollout.steps_per_env=60",
            "env.max_episode_steps=3",
            "ray.num_cpus=2",
        ],
    )
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    probs = 0.9 * np.array([1.0, 0.0, 0.0]) + 0.1 / 3
    try:
        policy = build_policy(spec)
        pool.collect(policy, probs)  # episodes begun under the initial uniform probabilities end here
        frag = pool.collect(policy, probs)
    finally:
        pool.close()
    counts = np.bincount(frag.episodes.task_id, minlength=3)
    share = counts / counts.sum()
    assert counts.sum() >= 120 and abs(share[0] - probs[0]) < 0.06 and share[1] > 0 and share[2] > 0, counts
    assert set(np.unique(frag.task_id[frag.valid])) == {0, 1, 2}  # slots switch tasks at reset


def test_curriculum_state_is_checkpointed_and_resume_continues_it(tmp_path):
    ov = [
        f"run_dir={tmp_path}",
        "rollout.workers=0",
        "curriculum.name=learning_progress",
        "train.checkpoint_every=1",
        "rollout.steps_per_env=16",
        "train.eval_episodes=0",
        "curriculum.worst_task.temperature=0.05",
    ]
    run = train(load_config(TOY, ov + ["train.total_steps=1500"]))
    _, ckpt = load_latest(run)
    saved = make_curriculum(("sequence-0", "sequence-1", "sequence-2"), load_config(TOY, ov).curriculum)
    saved.load_state_dict(ckpt["curriculum"])
    assert np.abs(saved.scores()["q"]).sum() > 0
    train(load_config(run / "config.yaml", [f"resume={run}", "train.total_steps=2000"]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb")).Reload()
    first_after = [
        [e.value for e in acc.Scalars(f"curriculum/prob/sequence-{k}") if e.step > ckpt["env_steps"]][0]
        for k in range(3)
    ]
    np.testing.assert_allclose(first_after, saved.probs(), atol=1e-6)  # continued from the saved state
    steps = [acc.Scalars(f"task/sequence-{k}/env_steps")[-1].value for k in range(3)]
    assert sum(steps) == load_latest(run)[1]["env_steps"]


def test_evaluation_covers_every_task_whatever_the_curriculum(tmp_path):
    run = train(
        load_config(
            TOY,
            [
                f"run_dir={tmp_path}",
                "rollout.workers=0",
                "curriculum.name=threshold",
                "curriculum.threshold.level=1.0",
                "train.total_steps=600",
                "train.eval_episodes=2",
            ],
        )
    )
    result = json.loads((run / "eval.json").read_text())
    assert [t["task"] for t in result["tasks"]] == ["sequence-0", "sequence-1", "sequence-2"]
    assert all(t["episodes"] == 2 for t in result["tasks"])


def test_a_registered_curriculum_is_used_by_training(tmp_path):
    calls = []

    class Counting(Uniform):
        def update(self, stats):
            calls.append(stats.iteration)

    register_curriculum("counting-test", Counting, overwrite=True)
    try:
        train(
            load_config(
                TOY,
                [
                    f"run_dir={tmp_path}",
                    "rollout.workers=0",
                    "curriculum.name=counting-test",
                    "rollout.steps_per_env=16",
                    "train.total_steps=600",
                    "train.eval_episodes=0",
                ],
            )
        )
    finally:
        CURRICULA._items.pop("counting-test")
    assert calls == list(range(1, len(calls) + 1)) and len(calls) >= 3


class WrongShape(Uniform):
    def probs(self):
        return np.ones(2) / 2  # the toy suite has 3 tasks


class Raises(Uniform):
    def update(self, stats):
        raise ZeroDivisionError("division by zero")


@pytest.mark.parametrize(
    "factory, match",
    [
        (WrongShape, r"curriculum 'bad-test': probs\(\) returned \[0.5 0.5\] \(shape \(2,\)\); expected 3 finite"),
        (Raises, r"curriculum 'bad-test': update\(\) raised ZeroDivisionError: division by zero"),
        (lambda tasks, cfg: object(), r"curriculum 'bad-test': its factory returned object, which lacks probs, update"),
        (lambda tasks, cfg: 1 / 0, r"curriculum 'bad-test': its factory raised ZeroDivisionError"),
    ],
)
def test_a_malformed_curriculum_plugin_stops_with_one_line_naming_it(tmp_path, factory, match):
    register_curriculum("bad-test", factory, overwrite=True)
    try:
        with pytest.raises(mtrl.MtrlError, match=match) as info:
            train(
                load_config(
                    TOY,
                    [
                        f"run_dir={tmp_path}",
                        "rollout.workers=0",
                        "curriculum.name=bad-test",
                        "rollout.steps_per_env=16",
                        "train.total_steps=600",
                        "train.eval_episodes=0",
                    ],
                )
            )
    finally:
        CURRICULA._items.pop("bad-test")
    assert "\n" not in str(info.value)


def test_unknown_curriculum_is_a_clean_error():
    with pytest.raises(ConfigError, match=r"^curriculum.name: unknown curriculum 'plrr' \(did you mean 'plr'\?\)"):
        load_config(TOY, ["curriculum.name=plrr"])
    proc = run_cli("train", str(TOY), "curriculum.name=nope")
    assert proc.returncode == 2 and "unknown curriculum 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("curricula")
    assert proc.returncode == 0 and all(n in proc.stdout for n in BUILTINS)
