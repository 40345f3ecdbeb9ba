"""Stage ``pair``: pair records from real datasets, each target with its top-k most similar references.

Entry: :func:`run_pair` with a :class:`PairConfig`. ``layouts`` reads one dataset tree per module,
``retrieval`` embeds images and ranks references, ``build`` ties them into records. Imports ``core`` only.
"""

from differad_cli.core.lazy import lazy_exports

__all__ = ["PairConfig", "run_pair"]
__getattr__ = lazy_exports(__name__, {"PairConfig": "config", "run_pair": "build"})
