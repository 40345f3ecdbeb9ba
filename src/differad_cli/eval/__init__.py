"""Stage ``eval``: score predictions (or anomaly maps) against pairs with the paper's metrics.

Entry: :func:`run_eval` with an :class:`EvalConfig`. ``metrics`` holds the one metric definition, ``score``
scores and writes an eval folder, ``maps`` the anomaly-map protocol (threshold calibration), ``report`` the
tables, Markdown and pictures. Imports ``core`` and, to run a backend first, ``predict``.
"""

from differad_cli.core.lazy import lazy_exports

__all__ = ["EvalConfig", "run_eval"]
__getattr__ = lazy_exports(__name__, {"EvalConfig": "config", "run_eval": "run"})
