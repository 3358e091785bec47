"""The pool of rollout workers (`mtrl.collect.worker.RolloutWorker`): Ray actors that each wrap a
`Collector`, or one in-process collector.

The learner pushes its weights once per iteration (one `ray.put`, shared by every actor) and gets
back one whole fragment per actor. Ray is imported only when workers > 0, so the learner runs
without Ray installed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from mtrl.collect.episodes import ChunkResult, EvalChunk, run_chunks, split_work
from mtrl.collect.fragments import Collector
from mtrl.collect.ray import init_ray
from mtrl.collect.requests import COLLECTORS, FragmentRequest, GroupRequest, Requests
from mtrl.collect.worker import RolloutWorker
from mtrl.data.batch import Fragment, Groups
from mtrl.env.suite import TaskSuite, slot_tasks
from mtrl.errors import MtrlError
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import Policy
from mtrl.nn.weights import actor_weights

RESTART_TIMEOUT_S = 300  # how long a dead worker may take to restart (new process, imports, env builds)


def slot_seeds(seed: int, num_slots: int) -> list[int]:
    """Independent per-slot env seeds derived from the run seed."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(num_slots)]


class WorkerPool:
    """`workers` Ray actors (or one in-process collector when workers == 0) over `num_envs` slots.

    The slot -> task assignment and slot seeds do not depend on the number of workers, so
    in-process and Ray collection give batches of the same shape and task layout.
    """

    def __init__(self, suite: TaskSuite, spec: PolicySpec, cfg: Any, seed: int, collector: str = "fragments") -> None:
        if collector not in COLLECTORS:
            raise MtrlError(f"unknown collector kind {collector!r}; expected one of {', '.join(COLLECTORS)}")
        r = cfg.rollout
        tasks = slot_tasks(suite.num_tasks, r.num_envs).tolist()
        seeds = slot_seeds(seed, r.num_envs)
        self.steps = r.steps_per_env
        self.restarts = 0  # worker actors that died and were restarted (faults/worker_restarts)
        self._max_restarts = r.max_worker_restarts
        self._started_ray = False
        self.pipeline, self.kind = r.pipeline, collector
        self._in_flight: Any = None  # the fragment collected while the learner updates (rollout.pipeline)
        args = (spec, r.autoreset_mode, cfg.env.max_episode_steps, cfg.env.backend)
        kw = {
            "collector": collector,
            "curriculum": cfg.curriculum.name is not None and collector == "fragments",
            "reset_each_fragment": r.reset_each_fragment,
        }
        if r.workers == 0:
            self.local: RolloutWorker | None = RolloutWorker(
                suite, tasks, seeds, *args, torch_seed=seed, one_thread=False, **kw
            )
            self.actors: list[Any] = []
            self.start_nodes: list[str] = []
            return
        self.local = None
        ray, self._started_ray = init_ray(cfg.ray, r.workers)
        # Ray restarts a dead actor by re-running its constructor (same slots and seeds); the call
        # that was in flight fails and `collect` re-sends it with the current weights.
        actor_cls = ray.remote(num_cpus=1, max_restarts=r.max_worker_restarts, max_task_retries=0)(RolloutWorker)
        per = r.num_envs // r.workers
        self.actors = [
            actor_cls.remote(
                suite,
                tasks[i * per : (i + 1) * per],
                seeds[i * per : (i + 1) * per],
                *args,
                torch_seed=seed + 1 + i,
                defer_errors=True,
                **kw,
            )
            for i in range(r.workers)
        ]
        try:  # every actor built its envs, or the first error is raised here, as in-process
            self.start_nodes = self.node_ids()  # the Ray node each actor started on
        except BaseException:
            self.close()  # the actors, and the embedded Ray this pool started
            raise

    def serve(self, requests: Requests, policy: torch.nn.Module, env_steps: int, name: str = "?") -> Any:
        """Answer algorithm `name`'s requests (`mtrl.collect.requests`) with the policy's current
        weights, one after the other; returns what the generator returns. `env_steps`: the env
        steps collected before this iteration."""
        if not isinstance(requests, Generator):
            raise MtrlError(
                f"algorithm '{name}': requests() returned {type(requests).__name__}; expected a generator "
                "that yields FragmentRequest or GroupRequest (mtrl.collect.requests)"
            )
        try:
            request = next(requests)
            while True:  # dispatch on the request's type alone
                if isinstance(request, GroupRequest):
                    data: Any = self.collect_groups(
                        policy, request.tasks, request.seeds, request.group_ids, request.group_size
                    )
                elif isinstance(request, FragmentRequest):
                    data = self.fragment(policy, request, env_steps)
                else:
                    raise MtrlError(
                        f"algorithm '{name}' asked the rollout workers for {type(request).__name__}; they answer "
                        "FragmentRequest and GroupRequest (mtrl.collect.requests)"
                    )
                request = requests.send(data)
        except StopIteration as done:
            return done.value

    def fragment(self, policy: torch.nn.Module, request: FragmentRequest, env_steps: int) -> Fragment:
        """One fragment for `request`. With rollout.pipeline the fragment returned is the one
        collected during the last update (from weights one update old; PPO's ratio uses its
        recorded behaviour log-probs) and the next one starts now, with today's weights."""
        pending = self._in_flight or self.submit(policy, request.task_probs, env_steps < request.random_until)
        frag = self.wait(pending)
        self._in_flight = None
        if self.pipeline:
            self._in_flight = self.submit(policy, request.task_probs, env_steps + frag.num_steps < request.random_until)
        return frag

    def collect(
        self, policy: torch.nn.Module, task_probs: np.ndarray | None = None, random_actions: bool = False
    ) -> Fragment:
        """Send the policy's current weights to every worker and gather one fragment from each."""
        return self.wait(self.submit(policy, task_probs, random_actions))

    def submit(
        self, policy: torch.nn.Module, task_probs: np.ndarray | None = None, random_actions: bool = False
    ) -> Any:
        """Start one fragment per worker with the policy's current weights; `wait` gathers them.

        Between the two the learner is free to update (`fragment` with rollout.pipeline)."""
        weights = actor_weights(policy)
        if self.local is not None:
            return weights, task_probs, random_actions  # in-process: collected in `wait`
        import ray

        ref = ray.put(weights)  # one copy in the object store, read zero-copy by every actor
        args = (self.steps, task_probs, random_actions)
        return ref, args, [a.collect.remote(ref, *args) for a in self.actors]

    def wait(self, submitted: Any) -> Fragment:
        """The fragments of a `submit`, joined along the slot axis."""
        if self.local is not None:
            weights, probs, random_actions = submitted
            return self.local.collect(weights, self.steps, probs, random_actions)
        ref, args, pending = submitted
        return Fragment.concat(
            [self._get(i, call, lambda a: a.collect.remote(ref, *args)) for i, call in enumerate(pending)]
        )

    def collect_groups(
        self, policy: torch.nn.Module, tasks: np.ndarray, seeds: np.ndarray, group_ids: np.ndarray, group_size: int
    ) -> Groups:
        """Run groups g (`group_size` episodes of task tasks[g] from reset seed seeds[g]) with the
        policy's current weights, split over the workers; returns the groups that finished cleanly."""
        weights = actor_weights(policy)
        if self.local is not None:
            return self.local.collect_groups(weights, tasks, seeds, group_ids, group_size)
        import ray

        ref = ray.put(weights)

        def send(actor: Any, share: np.ndarray) -> Any:
            return actor.collect_groups.remote(ref, tasks[share], seeds[share], group_ids[share], group_size)

        shares = [(i, s) for i, s in enumerate(np.array_split(np.arange(len(tasks)), len(self.actors))) if len(s)]
        calls = [(i, s, send(self.actors[i], s)) for i, s in shares]
        return Groups.concat([self._get(i, call, lambda a, s=s: send(a, s)) for i, s, call in calls])

    def _get(self, i: int, call: Any, resend: Any) -> Any:
        """Worker i's result; if its actor died, wait for Ray's restart and re-send its share
        (`resend(actor)` issues the call again with the current weights)."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        died_at = None
        while True:
            try:
                return ray.get(call)
            except RayTaskError as exc:  # an exception inside the worker: show ours without Ray's wrapping
                if isinstance(exc.cause, MtrlError):
                    raise exc.cause from None
                raise
            except (RayActorError, ActorUnavailableError) as exc:
                if died_at is None:  # one death; later errors are the actor still restarting
                    died_at = time.monotonic()
                    self.restarts += 1
                    if self.restarts > self._max_restarts:
                        raise MtrlError(
                            f"rollout worker {i} died and rollout.max_worker_restarts={self._max_restarts} "
                            f"restarts are used up: {str(exc).splitlines()[0]}"
                        ) from None
                    print(
                        f"mtrl: rollout worker {i} died ({type(exc).__name__}); restarting it and running its "
                        "share again",
                        file=sys.stderr,
                    )
                elif time.monotonic() - died_at > RESTART_TIMEOUT_S:
                    raise MtrlError(f"rollout worker {i} did not come back within {RESTART_TIMEOUT_S} s") from None
                else:
                    time.sleep(0.5)
                call = resend(self.actors[i])

    def run_eval(
        self, policy: Policy, suite: TaskSuite, work: list[EvalChunk], greedy: bool, max_episode_steps: int | None
    ) -> list[ChunkResult]:
        """An `mtrl.eval.evaluate` Runner: the chunks split over the rollout actors (in-process without them)."""
        if not self.actors:
            return run_chunks(policy, suite, work, greedy, max_episode_steps)
        import ray

        ref = ray.put(actor_weights(policy))
        shares = split_work(work, len(self.actors))

        def send(actor: Any, share: list[EvalChunk]) -> Any:
            return actor.evaluate.remote(ref, share, greedy, max_episode_steps)

        calls = [send(a, share) for a, share in zip(self.actors, shares)]
        # a worker that dies mid-evaluation is restarted and its share runs again, as in collection:
        # every chunk seeds its own envs and torch, so the result is the fault-free one
        results = [
            self._get(i, call, lambda a, s=share: send(a, s)) for i, (call, share) in enumerate(zip(calls, shares))
        ]
        return [out for share in results for out in share]

    @property
    def restorable(self) -> bool:
        """Whether the rollouts' state can be saved: an in-process gymnasium Collector. Not with
        Ray workers (their envs stay in their processes), GRPO groups (nothing carries over) or envpool."""
        c = self.local.collector if self.local is not None else None
        return isinstance(c, Collector) and c.restorable

    def state_dict(self) -> dict[str, Any] | None:
        """The in-process collector's state for an exact resume; None where not `restorable`."""
        return self.local.collector.state_dict() if self.restorable else None  # type: ignore[union-attr]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.local is not None and isinstance(self.local.collector, Collector)
        self.local.collector.load_state_dict(state)

    def node_ids(self) -> list[str]:
        """The Ray node each actor runs on (empty in-process)."""
        if not self.actors:
            return []

        return [self._get(i, a.node_id.remote(), lambda a: a.node_id.remote()) for i, a in enumerate(self.actors)]

    def close(self) -> None:
        """Stop the actors; shut down Ray if this pool started it."""
        if self.local is not None:
            self.local.close()
        if self.actors:
            import ray

            for a in self.actors:
                ray.kill(a)
            if self._started_ray:
                ray.shutdown()
