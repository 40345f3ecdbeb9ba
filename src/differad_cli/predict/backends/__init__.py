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
    from differad_cli.predict.backends.hf import HFBackend

    template = opts.template or _recorded_template(Path(str(opts.model)))
    return HFBackend.from_path(
        str(opts.model), device=opts.device, dtype=opts.dtype, trust_remote_code=opts.trust_remote_code,
        template=template, max_new_tokens=opts.max_new_tokens, batch_size=opts.batch_size,
        seed=opts.seed,
    )  # fmt: skip


def _recorded_template(model: Path) -> str:
    """The template ``model``'s differad run trained it on (a learner answers other wordings with garbage),
    else the paper's. A checkpoint of a run that has not finished has no record yet: that fallback is said,
    and a recorded name this version does not know is bad input naming the file."""
    from differad_cli.core import console
    from differad_cli.core.errors import BadInput
    from differad_cli.models.load import run_folder, trained_prompt
    from differad_cli.protocol.prompts import TEMPLATES

    seen = (trained_prompt(model) or {}).get("template")
    if seen is None:
        run = run_folder(model)
        if run != model and (run / "train_log.jsonl").is_file():
            console.warn(
                f"{run} has not finished (no train_summary.json): no prompt is recorded for {model.name}, "
                "so the differad template is used; pass --template if it was trained on another"
            )
        return "differad"
    if seen not in TEMPLATES:
        raise BadInput(
            f"{model}: its run's train_summary.json records the template {seen!r}, which this version does "
            f"not know (choose one with --template: {', '.join(TEMPLATES)})"
        )
    return str(seen)
