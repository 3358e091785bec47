"""Ray rollout workers against in-process collection, and a real multi-worker training run."""

from __future__ import annotations

import numpy as np
import pytest

import mtrl
from mtrl.config import load_config
from mtrl.trainer import policy_spec, train
from mtrl.nn.policy import build_policy
from mtrl.workers import WorkerPool
from tests.conftest import ROOT

pytest.importorskip("ray")
TOY = ROOT / "configs/toy_mtppo.yaml"


def _fragment(workers: int, autoreset: str):
    cfg = load_config(TOY, [f"rollout.workers={workers}", "rollout.num_envs=6", "rollout.steps_per_env=20",
                            f"rollout.autoreset_mode={autoreset}", "ray.num_cpus=2"])  # fmt: skip
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    try:
        frags = [pool.collect(build_policy(spec)) for _ in range(2)]
        return frags, pool.node_ids()
    finally:
        pool.close()


@pytest.mark.parametrize("autoreset", ["next_step", "same_step"])
def test_ray_and_in_process_batches_agree_in_shape_and_tasks(autoreset):
    local, _ = _fragment(0, autoreset)
    remote, nodes = _fragment(2, autoreset)
    assert len(nodes) == 2
    for a, b in zip(local, remote):
        for name in ("obs", "task_id", "actions", "logp", "values", "rewards", "valid", "bootstrap", "last_value"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.shape == y.shape and x.dtype == y.dtype, name
        expected = np.tile(np.arange(6) % 3, (20, 1))
        assert (a.task_id == expected).all() and (b.task_id == expected).all()
        assert np.isin(b.episodes.task_id, [0, 1, 2]).all() and len(b.episodes.ret) > 0


def test_training_with_two_ray_workers(tmp_path):
    run = train(load_config(TOY, [f"run_dir={tmp_path}", "rollout.workers=2", "train.total_steps=3000",
                                  "train.checkpoint_every=1", "train.eval_episodes=2"]))  # fmt: skip
    from mtrl.checkpoint import load_latest

    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 3000
    assert list((run / "tb").glob("events.out.tfevents.*")) and (run / "eval.json").is_file()
