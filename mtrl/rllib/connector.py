"""Per-task advantage normalisation in RLlib's learner pipeline, after GAE.

RLlib's `GeneralAdvantageEstimation` piece computes the advantages and standardises them over
the whole batch. MOORE's MTPPO standardises them per task instead (docs/algorithms/ppo.md, "Per-task advantage normalisation"), so
that a task with large returns does not drown the others' gradient. The piece must run *after*
GAE: a connector passed through `config.learners(learner_connector=...)` runs before it, so
`TaskNormPPOLearner.build()` inserts it right behind GAE.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from mtrl.data.advantage import task_normalize
from mtrl.data.reduce import segment_mean


class TaskAdvantageNormalization(ConnectorV2):
    """Replace each module's advantages by their per-task standardisation (`task_normalize`, the
    maths of mtrl's own PPO), over the steps of the loss mask when there is one (RLlib's artificial
    bootstrap steps are outside it). Logs the mean |advantage| per task, before normalising
    (what mtrl's curricula read as `abs_advantage`), as `mtrl/abs_advantage/<task index>`."""

    def __call__(
        self,
        *,
        rl_module: Any,
        batch: dict[str, Any],
        episodes: Any,
        explore: Any = None,
        shared_data: Any = None,
        metrics: Any = None,
        **kwargs: Any,
    ) -> Any:
        for module_id, module_batch in batch.items():
            if Postprocessing.ADVANTAGES not in module_batch:
                continue
            adv = torch.as_tensor(module_batch[Postprocessing.ADVANTAGES])
            task = torch.as_tensor(module_batch[Columns.OBS]["task_id"], device=adv.device).long()
            num_tasks = int(rl_module[module_id].observation_space["task_id"].n)
            mask = module_batch.get(Columns.LOSS_MASK)
            keep = (
                torch.ones_like(task, dtype=torch.bool)
                if mask is None
                else torch.as_tensor(mask, device=adv.device).bool()
            )
            out = adv.clone()
            out[keep] = task_normalize(adv[keep], task[keep], num_tasks)
            module_batch[Postprocessing.ADVANTAGES] = out
            if metrics is not None:
                abs_adv, counts = segment_mean(adv[keep].abs(), task[keep], num_tasks)
                for k in torch.nonzero(counts).flatten().tolist():
                    metrics.log_value(("mtrl", "abs_advantage", str(k)), float(abs_adv[k]), window=1)
        return batch


class TaskNormPPOLearner(PPOTorchLearner):
    """RLlib's PPO learner with `TaskAdvantageNormalization` right after GAE."""

    def build(self) -> None:
        super().build()
        # built by RLlib unless aggregator actors run the connectors (num_aggregator_actors_per_learner > 0)
        assert self._learner_connector is not None
        self._learner_connector.insert_after(GeneralAdvantageEstimation, TaskAdvantageNormalization())
