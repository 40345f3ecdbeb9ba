"""Stage ``predict``: boxes for pairs from one of the backends, for one pair or a whole manifest (resumable).

Entry: :func:`predict_file` (batch) and :func:`predict_one` with :class:`PredictOptions`. ``backends`` holds
the inference backends behind one small interface; ``run`` is the runner. Imports ``core``, ``protocol`` and
``models``.
"""

from differad_cli.core.lazy import lazy_exports

__all__ = ["PredictOptions", "predict_file", "predict_one"]
__getattr__ = lazy_exports(
    __name__, {"PredictOptions": "config", "predict_file": "run", "predict_one": "run"}
)
