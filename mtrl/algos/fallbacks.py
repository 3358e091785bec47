"""A gradient aggregator's fallbacks to the mean (`mtrl.algos.multitask`): each counted
(faults/aggregator_fallbacks), the first said on the console, and the run stopped with one line
when they pass `learner.max_fallback_share` of the last `learner.fallback_window` steps, past which
the run would be training with the mean rather than the aggregator."""

from __future__ import annotations

import collections

from mtrl.errors import MtrlError


class Fallbacks:
    def __init__(self, aggregator: str, max_share: float, window: int) -> None:
        self.aggregator, self.max_share, self.window = aggregator, max_share, window
        self.since_take = 0  # fallbacks since the last `take` (faults/aggregator_fallbacks)
        self.total = 0
        self.recent: collections.deque[bool] = collections.deque(maxlen=window)  # failed?, per step
        self.last_why = ""

    def fall_back(self, why: str) -> None:
        """Count a step that takes the mean of the task gradients; say so on the first one."""
        self.since_take += 1
        self.total += 1
        self.last_why = why
        if self.total == 1:
            print(
                f"mtrl: warning: aggregator '{self.aggregator}' gave no direction ({why}); that step takes the mean "
                "of the task gradients. Further fallbacks are counted in faults/aggregator_fallbacks"
            )

    def record(self, failure: str | None) -> None:
        """One aggregation step's outcome; stops the run when the failures pass the share."""
        self.recent.append(failure is not None)
        if len(self.recent) == self.window and sum(self.recent) > self.max_share * self.window:
            raise MtrlError(
                f"aggregator '{self.aggregator}' failed in {sum(self.recent)} of its last {self.window} steps (last: "
                f"{self.last_why}), above learner.max_fallback_share={self.max_share}; the run would be training "
                "with the mean"
            )

    def take(self) -> int:
        """Fallbacks since the last call."""
        n, self.since_take = self.since_take, 0
        return n
