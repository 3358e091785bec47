"""The data between collection and learning: batches, advantages, replay, per-task reductions."""
