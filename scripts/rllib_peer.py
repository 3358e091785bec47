"""RLlib 2.60 PPO (new API stack) on an mtrl suite, as the peer in scripts/bench_throughput.py.

Runs the same tasks, batch shape and PPO hyper-parameters as mtrl, with RLlib's default catalog
model of comparable size, and reports env steps/s, memory (PSS of all processes) and build time.
Needs the `rllib` extra: pip install "ray[rllib]==2.60.0".
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import time
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

# "valid" padding: the same 7x7 -> 6x6 -> 5x5 -> 4x4 (1024 features) encoder as mtrl and MOORE
MINIGRID_CONV = [[16, [2, 2], 1, "valid"], [32, [2, 2], 1, "valid"], [64, [2, 2], 1, "valid"]]


def _proc_pss_kb(pid: int) -> int | None:
    """PSS of one process in kB (RSS when smaps_rollup is unreadable); None if it has gone."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            continue  # unreadable (permissions, old kernel) or exited: try status, then give up
    return None


def _children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc/<pid>/stat of every live process."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces or ')', so parse the fields after its last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def _descendants(root_pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """root_pid and every process below it."""
    children = _children_map() if children is None else children
    seen, queue = [root_pid], deque([root_pid])
    while queue:
        for child in children.get(queue.popleft(), []):
            seen.append(child)
            queue.append(child)
    return seen


def _pss_mb(pids: list[int]) -> float:
    """Summed PSS of `pids` in MiB, skipping processes that have vanished."""
    return sum(kb for kb in map(_proc_pss_kb, pids) if kb is not None) / 1024.0


def tree_pss_mb(root_pid: int | None = None) -> float:
    """Summed PSS (MiB) of root_pid (default: this process) and all its descendants.

    PSS splits shared pages among the processes sharing them, so the sum is not double counted."""
    return _pss_mb(_descendants(os.getpid() if root_pid is None else root_pid))


def _session_pids(session_dir: str) -> set[int]:
    """This Ray session's processes: those naming its directory on their command line (gcs_server,
    raylet, monitors) and everything below them (workers and agents rename themselves `ray::...`)."""
    pids: set[int] = set()
    children = _children_map()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if session_dir.encode() in f.read():
                        pids.update(_descendants(int(name), children))
            except OSError:
                continue
    return pids


@contextlib.contextmanager
def profiled(out: dict, enabled: bool, top: int = 15):
    """With `enabled`, profile the block (this process only) and put its `top` functions by
    cumulative time into out["profile"] as [name, seconds, share of the block]."""
    if not enabled:
        yield
        return
    prof, t0 = cProfile.Profile(), time.perf_counter()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        wall = time.perf_counter() - t0
        rows = sorted(pstats.Stats(prof).stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
        out["profile"] = [
            [f"{os.path.basename(f)}:{line}({fn})", ct, ct / wall] for (f, line, fn), (_, _, _, ct, _) in rows[:top]
        ]


class _TaskOneHot(gym.ObservationWrapper):
    """Turn mtrl's {"obs", "task_id"} into one float32 Box with the task one-hot appended.

    Images get K constant channels, vectors K extra entries, so RLlib's default catalog sees the task."""

    def __init__(self, env: gym.Env, task: int, num_tasks: int) -> None:
        super().__init__(env)
        self.task = task
        space = env.observation_space["obs"]
        self._image = len(space.shape) == 3
        onehot = np.zeros(num_tasks, np.float32)
        onehot[task] = 1.0
        self._extra = np.broadcast_to(onehot, space.shape[:2] + (num_tasks,)) if self._image else onehot
        low = np.concatenate(
            [np.broadcast_to(space.low, space.shape).astype(np.float32), np.zeros_like(self._extra)], -1
        )
        high = np.concatenate(
            [np.broadcast_to(space.high, space.shape).astype(np.float32), np.ones_like(self._extra)], -1
        )
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(observation["obs"], np.float32), self._extra], axis=-1)


class MultiTaskEnvCreator:
    """RLlib env creator: sub-env j of env runner w runs task ((w - 1) * envs_per_runner + j) mod K.

    That is mtrl's slot i -> task i mod K over the global sub-env index. RLlib's new stack builds the
    sub-envs of one runner one after another through this callable (gymnasium sync vector env) and
    passes no vector_index, so the sub-env index is counted here."""

    def __init__(self, suite_name: str, envs_per_runner: int) -> None:
        self.suite_name, self.envs_per_runner, self._made = suite_name, envs_per_runner, 0

    def __call__(self, ctx: Any) -> gym.Env:
        import mtrl  # imported here so it also happens inside the Ray worker processes

        suite = mtrl.get_suite(self.suite_name)
        runner = max(getattr(ctx, "worker_index", 0) - 1, 0)  # remote runners are 1.., the local one 0
        slot = runner * self.envs_per_runner + self._made % self.envs_per_runner
        self._made += 1
        task = slot % suite.num_tasks
        return _TaskOneHot(suite.make_env(task, seed=slot), task, suite.num_tasks)


def _model_config(suite_name: str, hidden: int) -> Any:
    """RLlib default-catalog model: a CNN for MiniGrid images, a 400x3 MLP for Meta-World; separate critic."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if suite_name.startswith("minigrid"):
        return DefaultModelConfig(
            conv_filters=MINIGRID_CONV, head_fcnet_hiddens=[hidden, hidden], vf_share_layers=False
        )
    return DefaultModelConfig(fcnet_hiddens=[400, 400, 400], vf_share_layers=False)


def _sampled_lifetime(result: dict[str, Any]) -> int:
    """Env steps sampled since the algorithm was built, from one `algo.train()` result."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])


def _learner_params(algo: Any) -> int:
    """Trainable parameters of the Learner's RLModule (actor and critic).

    Not `algo.get_module()`: that is an env runner's inference-only copy, without the critic."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    results = algo.learner_group.foreach_learner(
        lambda learner: sum(p.numel() for p in learner.module[DEFAULT_MODULE_ID].parameters() if p.requires_grad)
    )
    return int(next(iter(results)).get())


def rllib_ppo(
    suite_name: str,
    iters: int,
    env_runners: int = 2,
    num_envs: int = 12,
    steps_per_env: int = 128,
    epochs: int = 4,
    minibatches: int = 4,
    hidden: int = 128,
    mtrl_policy: dict | None = None,
    profile: bool = False,
) -> dict:
    """Build RLlib PPO on `suite_name`, run 1 warm-up and `iters` timed iterations, measure it.

    With `mtrl_policy` (ppo_config's arch / num_experts / overrides / task_norm) the policy is mtrl's
    MultiTaskRLModule (mtrl.rllib.ppo_config); without it RLlib's default-catalog model, sized by
    `hidden` (MiniGrid's head only). Returns {"steps_per_s", "pss_mb", "params", "build_s"} (and
    "profile" of the driver with `profile`, see `profiled`). Starts
    (and then shuts down) Ray only when it is not running yet; a running Ray needs env_runners + 1 CPUs."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    if num_envs % env_runners:
        raise ValueError(f"num_envs={num_envs} must be a multiple of env_runners={env_runners}")
    envs_per_runner, train_batch = num_envs // env_runners, num_envs * steps_per_env
    t0 = time.perf_counter()
    started_ray = not ray.is_initialized()
    if started_ray:
        # One logical CPU per env runner plus one for the driver's main process (RLlib reserves it).
        ray.init(address="local", num_cpus=env_runners + 1, include_dashboard=False, log_to_driver=False)
    if mtrl_policy is not None:
        from mtrl.rllib import ppo_config

        config = ppo_config(suite_name, **mtrl_policy)
    else:
        # RLlib takes an env class or a registered name, not a callable object; the registry ships the
        # creator to every runner, which unpickles a fresh copy (so a fresh sub-env count) per make_env.
        env_name = f"mtrl-{suite_name}-x{envs_per_runner}"
        if __name__ != "__main__":
            # Imported from scripts/ (not a package): workers cannot import this module by name, so ship
            # its classes by value instead of by reference.
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        register_env(env_name, MultiTaskEnvCreator(suite_name, envs_per_runner))
        config = PPOConfig().environment(env=env_name).rl_module(model_config=_model_config(suite_name, hidden))
    config = (
        config.env_runners(
            num_env_runners=env_runners,
            num_envs_per_env_runner=envs_per_runner,
            rollout_fragment_length=steps_per_env,
            gym_env_vectorize_mode="sync",
        )
        .learners(num_learners=0, num_gpus_per_learner=0)  # learn in the driver, on CPU, like mtrl
        .training(
            train_batch_size_per_learner=train_batch,
            minibatch_size=train_batch // minibatches,
            num_epochs=epochs,
            lr=5e-4,
            gamma=0.99,
            lambda_=0.95,
            clip_param=0.2,
            entropy_coeff=0.01,
            vf_loss_coeff=0.5,
            grad_clip=0.5,
            use_kl_loss=False,
        )  # mtrl has no KL penalty
    )
    algo = config.build_algo()
    build_s = time.perf_counter() - t0
    try:
        start_steps = _sampled_lifetime(algo.train())  # warm-up: first sample, lazy init, torch caches
        t1, prof = time.perf_counter(), {}
        with profiled(prof, profile):  # the driver: waiting for the env runners, and the learner
            for _ in range(iters):
                result = algo.train()
        wall = time.perf_counter() - t1
        steps = _sampled_lifetime(result) - start_steps if iters else 0
        # The driver's tree holds raylet, gcs_server and the workers when ray.init started them here;
        # processes of this session outside the tree (e.g. a Ray started by the caller) are added too.
        others = _session_pids(_session_dir()) - set(_descendants(os.getpid()))
        pss = tree_pss_mb() + _pss_mb(sorted(others))
        params = _learner_params(algo)
    finally:
        algo.stop()
        if started_ray:
            ray.shutdown()
    return {
        "steps_per_s": steps / wall if wall > 0 else 0.0,
        "pss_mb": pss,
        "params": params,
        "build_s": build_s,
        **prof,
    }


def _session_dir() -> str:
    """This Ray session's directory, e.g. /tmp/ray/session_2026-11-..._<pid>."""
    import ray

    # Ray has no public accessor for it; the connected node object knows it, also for address=... drivers.
    return ray._private.worker.global_worker.node.get_session_dir_path()


def main() -> None:
    """CLI: run one suite and print the result dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="minigrid-mt3", choices=["minigrid-mt3", "metaworld-mt10"])
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    print(rllib_ppo(args.suite, args.iters))


if __name__ == "__main__":
    main()
