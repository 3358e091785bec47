"""Ray rollout workers against in-process collection, and a real multi-worker training run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import mtrl
from mtrl.collect.pool import WorkerPool
from mtrl.config import load_config
from mtrl.nn.policy import build_policy
from mtrl.run.trainer import policy_spec, train
from tests.conftest import ROOT, two_node_cluster

pytest.importorskip("ray")
TOY = ROOT / "configs/toy_mtppo.yaml"


def _fragment(workers: int, autoreset: str):
    cfg = load_config(
        TOY,
        [
            f"rollout.workers={workers}",
            "rollout.num_envs=6",
            "rollout.steps_per_env=20",
            f"rollout.autoreset_mode={autoreset}",
            "ray.num_cpus=2",
        ],
    )
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
        for name in ("obs", "task_id", "actions", "logp", "rewards", "valid", "trunc_obs", "trunc_idx", "last_obs"):
            x, y = getattr(a, name), getattr(b, name)
            ragged = name.startswith("trunc_")  # one row per truncation: their number depends on the episodes
            assert (x.shape[ragged:] == y.shape[ragged:]) and x.dtype == y.dtype, name
        assert (b.trunc_idx[:, 1] < 6).all() and b.truncated[tuple(b.trunc_idx.T)].all()  # slots renumbered on concat
        expected = np.tile(np.arange(6) % 3, (20, 1))
        assert (a.task_id == expected).all() and (b.task_id == expected).all()
        assert np.isin(b.episodes.task_id, [0, 1, 2]).all() and len(b.episodes.ret) > 0


def test_training_with_two_pipelined_ray_workers(tmp_path):
    run = train(
        load_config(
            TOY,
            [
                f"run_dir={tmp_path}",
                "rollout.workers=2",
                "rollout.pipeline=true",
                "train.total_steps=3000",
                "train.checkpoint_every=1",
                "train.eval_episodes=2",
            ],
        )
    )
    from mtrl.run.checkpoint import load_latest

    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 3000
    assert list((run / "tb").glob("events.out.tfevents.*")) and (run / "eval.json").is_file()
    # the final evaluation ran on the Ray workers; in-process it gives exactly the same numbers
    from mtrl.eval.evaluate import evaluate
    from mtrl.run.checkpoint import policy_from_checkpoint

    policy, suite, _ = policy_from_checkpoint(ckpt, torch.device("cpu"))
    local = evaluate(policy, suite, 2, seed=0).to_json()
    assert local == json.loads((run / "eval.json").read_text())


@pytest.mark.slow  # starts two Ray nodes (~1 min on 2 cores)
def test_training_on_a_two_node_cluster(tmp_path):
    """A head and a second node on loopback; training with ray.address set uses both."""
    import subprocess
    import sys

    with two_node_cluster() as (address, env):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mtrl",
                "train",
                str(TOY),
                f"ray.address={address}",
                "rollout.workers=2",
                "rollout.num_envs=6",
                "train.total_steps=1000",
                "train.eval_episodes=1",
                f"run_dir={tmp_path / 'run'}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 rollout workers on 2 Ray node(s)" in result.stdout


@pytest.mark.slow  # 24k steps through Ray: 1-4 min on 2 cores
def test_pipelined_training_still_learns(tmp_path):
    """rollout.pipeline: batches come from weights one update old; PPO still solves the toy suite."""
    run = train(
        load_config(
            TOY,
            [
                f"run_dir={tmp_path}",
                "rollout.workers=2",
                "rollout.pipeline=true",
                "train.total_steps=24000",
                "train.eval_episodes=16",
                "ray.num_cpus=2",
            ],
        )
    )
    import json

    result = json.loads((run / "eval.json").read_text())
    assert result["mean_return"] >= 7.0, result


def test_pipeline_needs_ray_workers():
    from mtrl.errors import ConfigError

    with pytest.raises(ConfigError, match="rollout.pipeline=true .* needs rollout.workers >= 1"):
        load_config(TOY, ["rollout.workers=0", "rollout.pipeline=true"])


def test_ray_workers_run_whole_groups_with_the_learners_group_ids():
    cfg = load_config(
        ROOT / "configs/minigrid_mt3_grpo.yaml",
        ["rollout.workers=2", "grpo.group_size=3", "ray.num_cpus=2", "env.max_episode_steps=12"],
    )
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    pool = WorkerPool(suite, spec, cfg, seed=0, collector="groups")
    try:
        tasks, seeds, ids = np.array([0, 1, 2, 2, 1]), np.array([3, 4, 5, 6, 4]), np.array([10, 11, 12, 13, 14])
        groups = pool.collect_groups(build_policy(spec), tasks, seeds, ids, 3)
        assert len(set(pool.node_ids())) == 1 and len(pool.actors) == 2
    finally:
        pool.close()
    assert groups.group.tolist() == np.repeat(ids, 3).tolist()  # worker 0 ran 3 groups, worker 1 ran 2, in order
    assert groups.episodes.task_id.tolist() == np.repeat(tasks, 3).tolist()
    starts = np.r_[0, np.flatnonzero(np.diff(groups.episode)) + 1]
    first = groups.obs[starts].reshape(5, 3, -1)
    assert (first == first[:, :1]).all()
    assert (first[1] == first[4]).all()  # the same task and seed on the other worker: the same start
    assert groups.num_steps == groups.episodes.length.sum() and (groups.episodes.length <= 12).all()


def test_mt_grpo_training_with_two_ray_workers_on_minigrid(tmp_path):
    run = train(
        load_config(
            ROOT / "configs/minigrid_mt3_mt_grpo.yaml",
            [
                f"run_dir={tmp_path}",
                "rollout.workers=2",
                "grpo.group_size=2",
                "grpo.groups=3",
                "env.max_episode_steps=16",
                "train.total_steps=400",
                "train.checkpoint_every=1",
                "train.eval_episodes=1",
                "ray.num_cpus=2",
            ],
        )
    )
    from mtrl.run.checkpoint import load_latest

    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 400 and ckpt["optimizer"]["task_weights"]["xi"].shape == (3,)
    assert (run / "eval.json").is_file()


@pytest.mark.slow  # 10 Meta-World envs on 2 Ray workers with MOORE networks: minutes on 2 cores
def test_sac_on_metaworld_mt10_with_two_ray_workers_completes_evaluates_and_checkpoints(tmp_path):
    pytest.importorskip("metaworld")
    run = train(
        load_config(
            ROOT / "configs/metaworld_mt10_moore_sac.yaml",
            [
                f"run_dir={tmp_path}",
                "rollout.workers=2",
                "rollout.steps_per_env=5",
                "sac.warmup_steps=50",
                "sac.batch_per_task=8",
                "sac.replay_size=1000",
                "env.max_episode_steps=10",
                "train.total_steps=200",
                "train.checkpoint_every=1",
                "train.eval_episodes=1",
                "ray.num_cpus=2",
            ],
        )
    )
    import json

    from mtrl.run.checkpoint import load_latest

    _, ckpt = load_latest(run)
    assert ckpt["env_steps"] >= 200 and ckpt["optimizer"]["log_alpha"].shape == (10,)
    assert ckpt["optimizer"]["updates"] > 0 and ckpt["spec"]["kind"] == "sac"
    result = json.loads((run / "eval.json").read_text())
    assert (
        len(result["tasks"]) == 10 and result["greedy"] and all(t["success_rate"] is not None for t in result["tasks"])
    )


def test_metaworld_evaluation_on_two_ray_workers_matches_in_process_episode_for_episode():
    """An MT10 evaluation (sampled actions, 3 episodes per task: goal variants 0-2) split over 2
    Ray rollout workers gives every episode's return, success and length exactly as in-process."""
    pytest.importorskip("metaworld")
    from mtrl.collect.episodes import run_chunks
    from mtrl.eval.evaluate import evaluate

    cfg = load_config(
        ROOT / "configs/metaworld_mt10_mtsac.yaml",
        ["rollout.workers=2", "ray.num_cpus=2", "env.max_episode_steps=60", "policy.hidden=32"],
    )
    suite = mtrl.get_suite(cfg.env.suite)
    spec = policy_spec(cfg, suite)
    torch.manual_seed(0)
    policy = build_policy(spec)
    pool = WorkerPool(suite, spec, cfg, seed=0)
    try:
        remote = evaluate(policy, suite, 3, seed=5, greedy=False, max_episode_steps=60, runner=pool.run_eval, chunk=2)
    finally:
        pool.close()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same matmul kernels, the same bits
    try:
        local = evaluate(policy, suite, 3, seed=5, greedy=False, max_episode_steps=60, runner=run_chunks, chunk=2)
    finally:
        torch.set_num_threads(threads)
    assert [t.task for t in remote.tasks] == list(suite.tasks)
    for r, here in zip(remote.tasks, local.tasks):
        assert (r.returns, r.successes, r.lengths) == (here.returns, here.successes, here.lengths), r.task
        assert len(r.returns) == 3 and r.lengths == [60, 60, 60]
    assert len({round(x, 3) for t in remote.tasks for x in t.returns}) > 20  # real, differing episodes


def _listening() -> set[tuple[str, int]]:
    """(local address, port) of every listening TCP socket (Linux /proc/net/tcp and tcp6)."""
    import ipaddress

    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/net/{name}", encoding="ascii").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hexaddr, hexport = fields[1].split(":")
            raw = bytes.fromhex(hexaddr)
            # the kernel prints each 32-bit word in host (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addr = ipaddress.ip_address(packed)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                addr = addr.ipv4_mapped
            found.add((str(addr), int(hexport, 16)))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")
def test_embedded_ray_listens_on_loopback_only_and_has_no_dashboard():
    """mtrl's embedded Ray opens no socket outside 127.0.0.1, and no dashboard (port 8265); the
    workers still run tasks, at the driver's niceness (Ray alone would add 15)."""
    import ray

    from mtrl.collect.ray import init_ray
    from mtrl.config.schema import RayConfig

    before = _listening()
    _, started = init_ray(RayConfig(num_cpus=1), 1)
    try:
        assert started
        assert ray.get(ray.remote(lambda: 7).remote()) == 7
        assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)
        new = _listening() - before
        assert new, "Ray opened no listening socket?"
        public = sorted(a for a in new if a[0] not in ("127.0.0.1", "::1"))
        assert not public, f"Ray listens on {public}"
        assert not any(port == 8265 for _, port in new)
    finally:
        ray.shutdown()
