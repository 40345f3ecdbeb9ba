"""Stage ``eval``: score predictions (or anomaly maps) against pairs with the paper's metrics.

Entry: :func:`differad_cli.eval.run.run_eval`. ``metrics`` holds the one metric definition, ``maps`` the
anomaly-map protocol (threshold calibration), ``report`` the tables, Markdown and pictures.
"""
