"""Neural-network building blocks and policies."""

from mtrl.nn.moore import gram_schmidt
from mtrl.nn.network import PolicySpec
from mtrl.nn.policy import ActorCritic, build_policy
from mtrl.nn.sac import QCritic, SACActor, TwinQ

__all__ = ["ActorCritic", "PolicySpec", "QCritic", "SACActor", "TwinQ", "build_policy", "gram_schmidt"]
