"""Environments: task suites, guarded envs, vector envs of task slots, the envpool backend."""
