"""Running: the trainer, logging, checkpoints, sweeps and the `mtrl` command."""
