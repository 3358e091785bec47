"""Evaluation and reporting: per-task results, bootstrap statistics, reports, curves, plots, videos."""
