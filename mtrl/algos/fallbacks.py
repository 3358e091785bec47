"""A plug-in's declared failures and what the step does instead (`mtrl.algos.multitask`): a
gradient aggregator's fall back to the mean of the task gradients (faults/aggregator_fallbacks),
a task weighting's weights outside `learner.max_task_weight` to uniform ones
(faults/weighting_fallbacks). Each is counted, the first said on the console, and the run stopped
with one line when they pass `learner.max_fallback_share` of the last `learner.fallback_window`
steps, past which the run would be training without the plug-in."""

from __future__ import annotations

import collections

from mtrl.errors import MtrlError


class Fallbacks:
    def __init__(
        self,
        name: str,
        max_share: float,
        window: int,
        kind: str = "aggregator",
        instead: str = "the mean of the task gradients",
    ) -> None:
        self.name, self.max_share, self.window, self.kind, self.instead = name, max_share, window, kind, instead
        self.since_take = 0  # fallbacks since the last `take` (faults/<kind>_fallbacks)
        self.total = 0
        self.recent: collections.deque[bool] = collections.deque(maxlen=window)  # failed?, per step
        self.last_why = ""

    def fall_back(self, why: str) -> None:
        """Count a step that goes without the plug-in; say so on the first one."""
        self.since_take += 1
        self.total += 1
        self.last_why = why
        if self.total == 1:
            print(
                f"mtrl: warning: {self.kind} '{self.name}' failed ({why}); that step takes {self.instead}. "
                f"Further fallbacks are counted in faults/{self.kind}_fallbacks"
            )

    def record(self, failure: str | None) -> None:
        """One aggregation step's outcome; stops the run when the failures pass the share."""
        self.recent.append(failure is not None)
        if len(self.recent) == self.window and sum(self.recent) > self.max_share * self.window:
            raise MtrlError(
                f"{self.kind} '{self.name}' failed in {sum(self.recent)} of its last {self.window} steps (last: "
                f"{self.last_why}), above learner.max_fallback_share={self.max_share}; the run would be training "
                f"with {self.instead}"
            )

    def take(self) -> int:
        """Fallbacks since the last call."""
        n, self.since_take = self.since_take, 0
        return n
