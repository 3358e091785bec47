"""`mtrl.cli:main`, the console script's entry point (the command lives in `mtrl.run.cli`)."""

from mtrl.run.cli import main

__all__ = ["main"]
