"""Neural-network building blocks and policies."""

from mtrl.nn.policy import ActorCritic, PolicySpec, build_policy

__all__ = ["ActorCritic", "PolicySpec", "build_policy"]
