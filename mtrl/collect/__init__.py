"""Collection: fragments, GRPO groups and evaluation episodes, in-process or on Ray rollout actors."""
