"""Inference backends behind one small interface: pairs in, predictions out, in order.

``diff`` (training-free golden-template difference), ``hf`` (a local Qwen-VL checkpoint or LoRA adapter),
``openai`` (an OpenAI-compatible endpoint). Backends import ``core`` and ``protocol`` only, never the runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from differad_cli.core.records import Pair, Prediction
from differad_cli.predict.config import FALSE_ALARM, PredictOptions, resolve_backend


class Backend(Protocol):
    def predict(self, pairs: list[Pair]) -> list[Prediction]: ...


def iter_predictions(backend: Backend, pairs: list[Pair]) -> Iterator[Prediction]:
    """Predictions as they arrive: a backend with ``predict_iter`` (the endpoint client) yields each one the
    moment its answer comes back, in completion order, so the runner can make it durable at once; the others
    give a whole call's worth in order."""
    stream = getattr(backend, "predict_iter", None)
    yield from (stream(pairs) if stream is not None else backend.predict(pairs))


def make_backend(opts: PredictOptions, reference: Path | None = None) -> Backend:
    """The backend ``opts`` name; ``reference`` is line mode's golden image (what --calibrate's good images
    are compared with)."""
    name = resolve_backend(opts)
    if name == "diff":
        from differad_cli.predict.backends.diff import DiffBackend
        from differad_cli.predict.backends.diff.calibrate import calibration_pairs

        backend = DiffBackend(
            None if opts.calibrate else opts.threshold, opts.min_area, n_refs=opts.n_refs, refs_dir=opts.refs,
            maps_dir=opts.maps_out, illumination=opts.illumination,
        )  # fmt: skip
        if opts.calibrate is not None:
            rate = FALSE_ALARM if opts.false_alarm is None else opts.false_alarm
            backend.calibrate(calibration_pairs(opts.calibrate, reference, opts.seed), rate)
        return backend
    if name == "openai":
        from differad_cli.predict.backends.openai import OpenAIBackend, OpenAIConfig

        return OpenAIBackend(
            OpenAIConfig(
                endpoint=str(opts.endpoint), model=str(opts.model or ""), api_key=opts.api_key,
                family=opts.family, template=opts.template or "differad", max_tokens=opts.max_new_tokens,
                seed=opts.seed,
                timeout=opts.timeout, retries=opts.retries, concurrency=opts.concurrency,
                min_pixels=opts.min_pixels, max_pixels=opts.max_pixels,
            )
        )  # fmt: skip
    from differad_cli.models.load import trained_prompt
    from differad_cli.predict.backends.hf import HFBackend

    template = opts.template or (trained_prompt(str(opts.model)) or {}).get("template") or "differad"
    return HFBackend.from_path(
        str(opts.model), device=opts.device, dtype=opts.dtype, trust_remote_code=opts.trust_remote_code,
        template=str(template), max_new_tokens=opts.max_new_tokens, batch_size=opts.batch_size,
        seed=opts.seed,
    )  # fmt: skip
