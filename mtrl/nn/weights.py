"""The weights that travel from the learner to the rollout workers: the actor's only."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def actor_weights(policy: torch.nn.Module) -> dict[str, np.ndarray]:
    """The policy's weights a rollout worker needs: everything but the critic, which only the
    learner runs (half the bytes through the object store per iteration)."""
    return {k: v.detach().cpu().numpy() for k, v in policy.state_dict().items() if not k.startswith("critic.")}


def load_actor_weights(policy: torch.nn.Module, weights: dict[str, Any]) -> None:
    """Load `actor_weights` output into a worker's policy; refuse weights that do not fit it."""
    state = {k: torch.tensor(v) for k, v in weights.items()}  # copy: Ray arrays are read-only
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("critic.") for k in missing):
        raise ValueError(f"rollout weights do not fit the policy: missing {missing}, unexpected {unexpected}")
