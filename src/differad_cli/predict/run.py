"""Prediction: options, backend dispatch, one-pair and batch modes (the layer `predict` and `eval` share).

Backends: ``diff`` (training-free golden-template difference, the default without a model), ``hf`` (a local
Qwen-VL checkpoint or LoRA adapter) and ``openai`` (an OpenAI-compatible endpoint). Each turns pair records
into prediction records (docs/formats.md); an unparsable answer is an invalid prediction, never a crash.

Batch mode appends finished records to a hidden ``.<out>.partial`` file as it goes and writes ``out``
atomically at the end, so an interrupted run resumes where it stopped (the partial file remembers the
options it was made with and is discarded when they change).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.errors import BadInput
from differad_cli.core.images import image_size, load_pair_images
from differad_cli.core.io import atomic_write, check_out_path, is_special, is_stdout, writing
from differad_cli.core.records import (
    Pair,
    Prediction,
    dumps,
    is_prediction_file,
    iter_jsonl,
    write_predictions,
)  # fmt: skip
from differad_cli.predict.backends import Backend, iter_predictions, make_backend
from differad_cli.predict.config import PredictOptions, resolve_backend

RESUME_KEY = "_differad_resume"
# options that change how predictions are obtained, never what they are: changing them keeps a resume file
NOT_IN_FINGERPRINT = (
    "api_key", "batch_size", "concurrency", "timeout", "retries", "device", "num_processes", "force",
)  # fmt: skip


def predict_pairs(
    pairs: list[Pair], opts: PredictOptions, *, backend: Backend | None = None
) -> list[Prediction]:
    """Predictions for ``pairs`` in order (``backend``: reuse one already built from ``opts``)."""
    backend = backend or make_backend(opts)
    step = max(16, opts.batch_size, opts.concurrency)
    chunks = [pairs[s : s + step] for s in range(0, len(pairs), step)]
    out: list[Prediction] = []
    for chunk in console.progress(chunks, total=len(chunks), desc="predict", unit="chunk"):
        out.extend(backend.predict(chunk))
    return out


# ---------------------------------------------------------------------------------------------- one pair


def explanation(text: str | None) -> str:
    """The human part of an answer: the <think> body when there is one, else the text without the answer."""
    if not text:
        return ""
    m = re.search(r"<think>(.*?)(?:</think>|$)", text, re.S | re.I)
    body = m.group(1) if m else re.sub(r"<answer>.*?(?:</answer>|$)", "", text, flags=re.S | re.I)
    return " ".join(body.split())


def predict_one(
    ref: str | os.PathLike[str],
    tgt: str | os.PathLike[str],
    opts: PredictOptions,
    *,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """The --json object for one pair: ref, tgt, box (target pixels), label, valid, text, backend,
    elapsed_ms (and score)."""
    width, height = image_size(tgt)
    image_size(ref)
    name = resolve_backend(opts)
    if opts.num_processes > 1:
        raise BadInput("--num-processes applies to batch mode (--pairs P.jsonl --out PRED.jsonl)")
    backend = backend or make_backend(opts)
    pair = Pair(id="pair", ref=Path(ref), tgt=Path(tgt), box=ZERO_BOX, label=0, width=width, height=height)
    start = time.perf_counter()
    pred = backend.predict([pair])[0]
    return result_dict(ref, tgt, name, pred, (time.perf_counter() - start) * 1000.0)


def result_dict(
    ref: str | os.PathLike[str],
    tgt: str | os.PathLike[str],
    backend: str,
    pred: Prediction,
    elapsed_ms: float,
) -> dict[str, Any]:
    """The --json object for one pair: ref, tgt, box (target pixels), label, valid, text, backend,
    elapsed_ms (and score)."""
    return {
        "ref": str(ref),
        "tgt": str(tgt),
        "box": list(pred.box),
        "label": int(pred.is_anomalous),
        "valid": pred.valid,
        "text": pred.text,
        "backend": backend,
        "elapsed_ms": round(elapsed_ms, 1),
        "score": pred.score,
    }


OVERLAY_TAG = "differad overlay"
MAX_EXPLANATION = 300  # characters on the human line; --json keeps the whole text


def human_line(result: dict[str, Any]) -> str:
    why = explanation(result.get("text"))
    if len(why) > MAX_EXPLANATION:
        why = why[: MAX_EXPLANATION - 1].rstrip() + "…"
    why = f" — {why}" if why else ""
    if not result["valid"]:
        return f"invalid: the answer holds no readable box{why}"
    if result["label"]:
        x1, y1, x2, y2 = result["box"]
        return f"anomalous: box ({x1},{y1}),({x2},{y2}) in target pixels{why}"
    return f"normal: no anomaly found{why}"


def check_overlay(out: str | os.PathLike[str], ref: str | os.PathLike[str], tgt: str | os.PathLike[str],
                  force: bool = False) -> Path:  # fmt: skip
    """Before any work: a writable path, not a picture of the user's (ours carry a PNG tag)."""
    from differad_cli.core.images import png_tag

    return check_out_path(
        out, (ref, tgt), "--overlay", force=force, ours=lambda p: png_tag(p) == OVERLAY_TAG,
        what="a differad overlay", image=True,
    )  # fmt: skip


def write_overlay(
    out: str | os.PathLike[str], result: dict[str, Any], gt_box: list[int] | None = None, force: bool = False
) -> None:
    """The picture of one prediction (``predict_one``'s result): reference | target with the predicted box
    (and the ground truth when known), the verdict and explanation as caption (PNG, written atomically,
    tagged as ours so a re-run may replace it while a picture of the user's is refused without ``force``)."""
    from differad_cli.core.images import save_png
    from differad_cli.core.overlays import draw_overlay

    out = check_overlay(out, result["ref"], result["tgt"], force)
    r, t = load_pair_images(result["ref"], result["tgt"])
    pred = tuple(result["box"]) if result["valid"] else None
    verdict = "invalid answer" if not result["valid"] else "anomalous" if result["label"] else "normal"
    why = explanation(result.get("text"))
    caption = verdict + (f": {why}" if why else "")
    save_png(out, draw_overlay(r, t, gt_box, pred, caption=caption), tag=OVERLAY_TAG)


# ---------------------------------------------------------------------------------------------- batch


def _fingerprint(opts: PredictOptions, pairs_path: Path) -> str:
    d = asdict(opts)
    for key in NOT_IN_FINGERPRINT:
        d.pop(key, None)
    d["pairs"] = str(pairs_path.resolve())
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def _load_partial(part: Path, fingerprint: str, ids: set[str]) -> dict[str, Prediction]:
    done: dict[str, Prediction] = {}
    if not part.is_file():
        return done
    try:
        rows = list(iter_jsonl(part, allow_partial_last=True))
    except BadInput:
        console.warn(f"ignoring damaged resume file {part}")
        return done
    if not rows or rows[0][1].get(RESUME_KEY) != fingerprint:
        console.warn(f"{part} was made with other options or pairs; starting over")
        return done
    for _, obj in rows[1:]:
        pred = Prediction.from_dict(obj)
        if pred.id in ids:
            done[pred.id] = pred
    return done


def predict_file(
    pairs_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opts: PredictOptions,
    *,
    resume: bool = True,
    chunk: int = 16,
    pairs: list[Pair] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Prediction]:
    """Batch mode: read pairs (unless the caller already has them), predict the missing ones (resuming),
    write ``out`` atomically. ``opts.num_processes`` > 1 shards the work (:mod:`differad_cli.predict.shards`);
    ``shard=(k, n)`` is one of those shards: pairs ``k::n``."""
    from differad_cli.core.records import read_pairs

    pairs_path = Path(pairs_path)
    resolve_backend(opts)  # options checked before any work
    out = check_out_path(
        out, (pairs_path,), force=opts.force, ours=is_prediction_file, what="a prediction file",
        allow_stdout=True,
    )  # fmt: skip
    pairs = read_pairs(pairs_path) if pairs is None else pairs
    if opts.maps_out is not None and shard is None:
        from differad_cli.predict.backends.diff.maps import prepare_maps

        prepare_maps(Path(opts.maps_out), (p.id for p in pairs), force=opts.force)
    if is_stdout(out) or is_special(out):
        return _stream(pairs, out, opts, chunk)
    if shard is None and opts.num_processes > 1:
        from differad_cli.predict.shards import predict_sharded

        fingerprint = _fingerprint(opts, pairs_path)
        return predict_sharded(
            predict_file, pairs_path, out, opts, pairs, resume=resume, chunk=chunk, fingerprint=fingerprint
        )
    if shard is not None:
        pairs = pairs[shard[0] :: shard[1]]
    out.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(out)
    fingerprint = _fingerprint(opts, pairs_path)
    done = _load_partial(part, fingerprint, {p.id for p in pairs}) if resume else {}
    todo = [p for p in pairs if p.id not in done]
    if done:
        console.info(f"resuming: {len(done)} of {len(pairs)} prediction(s) already in {part}")
    if todo:
        backend = make_backend(opts)
        header = dumps({RESUME_KEY: fingerprint})
        # rewrite the partial file cleanly (drops a torn last line), then append as predictions finish
        atomic_write(part, [header, *(dumps(d.to_dict()) for d in done.values())])
        step = max(chunk, opts.batch_size, opts.concurrency)
        chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
        with writing(part), part.open("a", encoding="utf-8") as f:
            for batch in console.progress(chunks, total=len(chunks), desc="predict", unit="chunk"):
                for pred in iter_predictions(backend, batch):  # each answer durable as it arrives
                    done[pred.id] = pred
                    f.write(dumps(pred.to_dict()) + "\n")
                    f.flush()
    preds = [done[p.id] for p in pairs]
    write_predictions(out, preds)
    part.unlink(missing_ok=True)
    _summary(preds, out)
    return preds


def _stream(pairs: list[Pair], out: Path, opts: PredictOptions, chunk: int) -> list[Prediction]:
    """``--out -`` or a FIFO/device: records written through in input order as they arrive, no resume file
    (nothing is created beside a device) and nothing renamed over the target."""
    if opts.num_processes > 1:
        raise BadInput("--num-processes > 1 needs a regular --out file (results are merged from shards)")
    backend = make_backend(opts)
    got: dict[str, Prediction] = {}
    preds: list[Prediction] = []
    step = max(chunk, opts.batch_size, opts.concurrency)
    sink = sys.stdout if is_stdout(out) else open(out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with writing(out):
            for s in range(0, len(pairs), step):
                for pred in iter_predictions(backend, pairs[s : s + step]):
                    got[pred.id] = pred
                    while len(preds) < len(pairs) and pairs[len(preds)].id in got:
                        preds.append(got[pairs[len(preds)].id])
                        sink.write(dumps(preds[-1].to_dict()) + "\n")
                    sink.flush()
    finally:
        if sink is not sys.stdout:
            with writing(out):
                sink.close()
    _summary(preds, out)
    return preds


def _summary(preds: list[Prediction], out: Path) -> None:
    n_ano = sum(p.is_anomalous for p in preds)
    n_bad = sum(not p.valid for p in preds)
    where = "standard output" if is_stdout(out) else out
    console.info(f"wrote {len(preds)} prediction(s) to {where}: {n_ano} anomalous, {n_bad} invalid")
