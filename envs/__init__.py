"""mtrl's built-in suites (installed as the package `mtrl_envs`).

Each module registers its suites through the public `mtrl.register_suite`, exposed to mtrl via
the `mtrl.suites` entry-point group in pyproject.toml: the same route a third-party package uses.
"""
