"""A rollout worker: the body of a Ray rollout actor, or of in-process collection (`WorkerPool`)."""

from __future__ import annotations

import numpy as np
import torch

from mtrl.collect.episodes import ChunkResult, EvalChunk, run_chunks
from mtrl.collect.fragments import Collector
from mtrl.collect.groups import GroupCollector
from mtrl.data.batch import Fragment, Groups
from mtrl.env.suite import TaskSuite
from mtrl.errors import MtrlError
from mtrl.nn.network import PolicySpec


class RolloutWorker:
    """The body of a rollout actor (or of in-process collection): a Collector over its share of
    env slots for fragments, and a GroupCollector of whole-episode groups (GRPO); the `collector`
    the algorithm declared is built at once, the other at its first request. `one_thread`
    pins torch to one thread: one core per actor, batched inference on small nets. In-process
    collection shares the learner's process and leaves its threads alone."""

    def __init__(
        self,
        suite: TaskSuite,
        tasks: list[int],
        seeds: list[int],
        spec: PolicySpec,
        autoreset_mode: str,
        max_episode_steps: int | None,
        backend: str,
        torch_seed: int,
        one_thread: bool = True,
        collector: str = "fragments",
        curriculum: bool = False,
        reset_each_fragment: bool = False,
        defer_errors: bool = False,
    ) -> None:
        if one_thread:
            torch.set_num_threads(1)
        torch.manual_seed(torch_seed)
        # what a lazily built collector needs: the kind the algorithm declared is built now, so
        # that env failures show at the start; the other on its first request
        self._fragment_args = (
            suite,
            tasks,
            seeds,
            spec,
            autoreset_mode,
            max_episode_steps,
            backend,
            curriculum,
            reset_each_fragment,
        )
        self._group_args = (suite, spec, max_episode_steps)
        self.fragments: Collector | None = None
        self.groups: GroupCollector | None = None
        # An actor whose envs fail to build keeps the error for `node_id`, the pool's first call:
        # raised in a constructor, Ray would kill the actor, restart it, print the traceback and
        # hand the driver only its text; raised in a call, it reaches the driver as itself.
        self.failed: MtrlError | None = None
        try:
            self.collector: Collector | GroupCollector = (
                self._group_collector() if collector == "groups" else self._fragment_collector()
            )
        except MtrlError as exc:
            if not defer_errors:
                raise
            self.failed = exc

    def _fragment_collector(self) -> Collector:
        if self.fragments is None:
            self.fragments = Collector(*self._fragment_args)
        return self.fragments

    def _group_collector(self) -> GroupCollector:
        if self.groups is None:
            self.groups = GroupCollector(*self._group_args)
        return self.groups

    def collect(
        self,
        weights: dict[str, np.ndarray],
        steps: int,
        task_probs: np.ndarray | None = None,
        random_actions: bool = False,
    ) -> Fragment:
        """Load the weights (and the curriculum's task probabilities), then collect one fragment."""
        collector = self._fragment_collector()
        collector.set_weights(weights)
        if task_probs is not None:
            collector.set_task_probs(task_probs)
        return collector.collect(steps, random_actions)

    def collect_groups(
        self,
        weights: dict[str, np.ndarray],
        tasks: np.ndarray,
        seeds: np.ndarray,
        group_ids: np.ndarray,
        group_size: int,
    ) -> Groups:
        """Load the weights, then run the given groups of whole episodes."""
        collector = self._group_collector()
        collector.set_weights(weights)
        return collector.collect(tasks, seeds, group_ids, group_size)

    def evaluate(
        self, weights: dict[str, np.ndarray], work: list[EvalChunk], greedy: bool, max_episode_steps: int | None
    ) -> list[ChunkResult]:
        """Load the weights, then run these evaluation chunks (`mtrl.eval.evaluate`) on fresh envs."""
        self.collector.set_weights(weights)
        return run_chunks(self.collector.policy, self.collector.suite, work, greedy, max_episode_steps)

    def close(self) -> None:
        """Close the envs of whichever collectors were built."""
        for collector in (self.fragments, self.groups):
            if collector is not None:
                collector.close()

    def node_id(self) -> str:
        """The Ray node this actor runs on; the pool's first call, so it raises the error that
        stopped the constructor, if any."""
        import ray

        if self.failed is not None:
            raise self.failed
        return ray.get_runtime_context().get_node_id()
