"""CartPole with three pole lengths as an mtrl multi-task suite; `mtrl_cartpole.suites.register`
is the package's `mtrl.suites` entry point."""
