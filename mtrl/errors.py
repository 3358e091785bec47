"""User-facing errors. The CLI turns any MtrlError into a one-line message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MtrlError(Exception):
    """An error caused by user input (config, names, files); shown without a traceback."""


class ConfigError(MtrlError):
    """A config file or override is invalid."""


class UnknownNameError(MtrlError):
    """A suite, task, curriculum or algorithm name is not registered."""


class CheckpointError(MtrlError):
    """A checkpoint is missing, corrupt, unsafe, or does not match the run."""


class EnvError(MtrlError):
    """An environment broke its contract (wrong spaces, non-finite values)."""


class AggregatorFailed(MtrlError):
    """Raised by a gradient aggregator that cannot give a direction for this step (e.g. its solver
    did not converge): the step takes the mean of the task gradients instead, with a warning, and
    is counted. Anything else an aggregator raises stops the run."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
