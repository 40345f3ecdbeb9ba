"""Prediction: options, backend dispatch, one-pair and batch modes (the layer `predict` and `eval` share).

Backends: ``diff`` (training-free golden-template difference, the default without a model), ``hf`` (a local
Qwen-VL checkpoint or LoRA adapter) and ``openai`` (an OpenAI-compatible endpoint). Each turns pair records
into prediction records (SPEC); an answer that cannot be parsed is an invalid prediction, never a crash.

Batch mode appends finished records to a hidden ``.<out>.partial`` file as it goes and writes ``out``
atomically at the end, so an interrupted run resumes where it stopped (the partial file remembers the
options it was made with and is discarded when they change).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from differad_cli import console
from differad_cli.boxes import ZERO_BOX
from differad_cli.errors import BadInput
from differad_cli.images import image_size, load_rgb
from differad_cli.records import Pair, Prediction, dumps, iter_jsonl, write_predictions

BACKENDS = ("diff", "hf", "openai")
RESUME_KEY = "_differad_resume"
# options that change how predictions are obtained, never what they are: changing them keeps a resume file
NOT_IN_FINGERPRINT = ("api_key", "batch_size", "concurrency", "timeout", "retries", "device")


@dataclass
class PredictOptions:
    backend: str | None = field(
        default=None,
        metadata={
            "help": "diff | hf | openai; default: openai with an endpoint, hf with a model, else diff."
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "hf: checkpoint/adapter folder; openai: model name."}
    )
    template: str = field(default="differad", metadata={"help": "Prompt template (hf, openai)."})
    batch_size: int = field(default=4, metadata={"help": "Pairs per generate() call (hf)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer in tokens (hf, openai)."})
    device: str | None = field(default=None, metadata={"help": "hf: cuda/cpu; default: GPU when present."})
    dtype: str | None = field(default=None, metadata={"help": "hf: auto | bf16 | fp16 | fp32."})
    trust_remote_code: bool = field(default=False, metadata={"help": "hf: run the checkpoint's own code."})
    endpoint: str | None = field(default=None, metadata={"help": "openai: base URL of the server."})
    api_key: str | None = field(default=None, metadata={"help": "openai: key; default env OPENAI_API_KEY."})
    family: str = field(
        default="qwen3_vl", metadata={"help": "openai: coordinate family of the served model."}
    )
    timeout: float = field(default=60.0, metadata={"help": "openai: seconds per request."})
    retries: int = field(default=3, metadata={"help": "openai: retries of a transient failure."})
    concurrency: int = field(default=4, metadata={"help": "openai: requests in flight."})
    min_pixels: int = field(
        default=56 * 56, metadata={"help": "openai + qwen2_5_vl: the server processor's min_pixels."}
    )
    max_pixels: int = field(
        default=28 * 28 * 16384, metadata={"help": "openai + qwen2_5_vl: the server processor's max_pixels."}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "diff: seed difference, 0-255 units (None: DiffConfig's 20)."}
    )
    min_area: float | None = field(
        default=None, metadata={"help": "diff: smallest anomaly, image fraction (None: DiffConfig's)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for generation (hf) and requests (openai)."})


class Backend(Protocol):
    def predict(self, pairs: list[Pair]) -> list[Prediction]: ...


def resolve_backend(opts: PredictOptions) -> str:
    name = opts.backend or ("openai" if opts.endpoint else "hf" if opts.model else "diff")
    if name not in BACKENDS:
        raise BadInput(f"unknown backend '{name}' (expected one of: {', '.join(BACKENDS)})")
    if name == "hf" and not opts.model:
        raise BadInput("--backend hf needs --model PATH (a local checkpoint or LoRA adapter folder)")
    if name == "hf" and not Path(opts.model).is_dir():  # before the slow torch/transformers import
        raise BadInput(f"model folder not found: {opts.model}")
    if name == "openai" and not opts.endpoint:
        raise BadInput("--backend openai needs --endpoint URL (and --model NAME)")
    return name


def load_pair_images(
    ref: str | os.PathLike[str], tgt: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as RGB arrays; a reference of another size is resized to the target (with a warning)."""
    r, t = load_rgb(ref), load_rgb(tgt)
    if r.shape[:2] != t.shape[:2]:
        console.warn(
            f"reference {Path(ref).name} is {r.shape[1]}x{r.shape[0]}, target {Path(tgt).name} is "
            f"{t.shape[1]}x{t.shape[0]}: reference resized to the target"
        )
        r = cv2.resize(r, (t.shape[1], t.shape[0]), interpolation=cv2.INTER_AREA)
    return r, t


class DiffBackend:
    """Adapter from :mod:`differad_cli.diffloc` to the backend interface."""

    def __init__(self, threshold: float | None = None, min_area: float | None = None):
        from differad_cli.diffloc import DiffConfig

        cfg = DiffConfig()
        if threshold is not None:
            if threshold <= 0:
                raise BadInput("--threshold must be positive")
            cfg.threshold = threshold
        if min_area is not None:
            if not 0 <= min_area < 1:
                raise BadInput("--min-area must be a fraction in [0, 1)")
            cfg.min_area = min_area
        self.cfg = cfg

    def predict(self, pairs: list[Pair]) -> list[Prediction]:
        from differad_cli.diffloc import localize

        out = []
        for p in pairs:
            res = localize(*load_pair_images(p.ref, p.tgt), self.cfg)
            out.append(Prediction(p.id, res.box, True, res.explanation(), round(res.score, 4)))
        return out


def make_backend(opts: PredictOptions) -> Backend:
    name = resolve_backend(opts)
    if name == "diff":
        return DiffBackend(opts.threshold, opts.min_area)
    if name == "openai":
        from differad_cli.openai_backend import OpenAIBackend, OpenAIConfig

        return OpenAIBackend(
            OpenAIConfig(
                endpoint=str(opts.endpoint), model=str(opts.model or ""), api_key=opts.api_key,
                family=opts.family, template=opts.template, max_tokens=opts.max_new_tokens, seed=opts.seed,
                timeout=opts.timeout, retries=opts.retries, concurrency=opts.concurrency,
                min_pixels=opts.min_pixels, max_pixels=opts.max_pixels,
            )
        )  # fmt: skip
    from differad_cli.hf_backend import HFBackend

    return HFBackend.from_path(
        str(opts.model), device=opts.device, dtype=opts.dtype, trust_remote_code=opts.trust_remote_code,
        template=opts.template, max_new_tokens=opts.max_new_tokens, batch_size=opts.batch_size,
        seed=opts.seed,
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
    backend = backend or make_backend(opts)
    pair = Pair(id="pair", ref=Path(ref), tgt=Path(tgt), box=ZERO_BOX, label=0, width=width, height=height)
    start = time.perf_counter()
    pred = backend.predict([pair])[0]
    elapsed = (time.perf_counter() - start) * 1000.0
    return {
        "ref": str(ref),
        "tgt": str(tgt),
        "box": list(pred.box),
        "label": int(pred.is_anomalous),
        "valid": pred.valid,
        "text": pred.text,
        "backend": name,
        "elapsed_ms": round(elapsed, 1),
        "score": pred.score,
    }


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


def write_overlay(out: str | os.PathLike[str], ref: str | os.PathLike[str], tgt: str | os.PathLike[str],
                  box: list[int] | None, caption: str = "") -> None:  # fmt: skip
    """Reference beside target with the predicted box drawn (PNG, written atomically)."""
    from differad_cli.images import save_png

    r, t = load_pair_images(ref, tgt)
    pred = None if box is None or box == list(ZERO_BOX) else tuple(box)
    from differad_cli.overlays import draw_overlay

    img = draw_overlay(r, t, None, pred, caption=caption)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(out, img)


# ---------------------------------------------------------------------------------------------- batch


def _fingerprint(opts: PredictOptions, pairs_path: Path) -> str:
    d = asdict(opts)
    for key in NOT_IN_FINGERPRINT:
        d.pop(key, None)
    d["pairs"] = str(pairs_path.resolve())
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_out_path(
    out: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = (), flag: str = "--out"
) -> Path:
    """Refuse, before any work, an output file that cannot be written or would destroy an input: an
    existing folder, one of ``inputs``, an image file, or a path whose parent cannot be created/written."""
    from differad_cli.images import IMAGE_SUFFIXES

    out = Path(out)
    if out.is_dir():
        raise BadInput(f"{flag} {out} is a folder; give a file path such as {out / 'out.jsonl'}")
    for src in inputs:
        src = Path(src)
        same = out.exists() and src.exists() and os.path.samefile(out, src)
        if same or out.resolve() == src.resolve():
            raise BadInput(f"{flag} {out} is the input {src}; writing it would replace the input")
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise BadInput(f"{flag} {out} names an image; give a .jsonl path (it would be overwritten)")
    parent = out.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {out}: cannot create its folder ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {out}: folder {parent} is not writable")
    return out


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
) -> list[Prediction]:
    """Batch mode: read pairs, predict the missing ones (resuming), write ``out`` atomically."""
    from differad_cli.records import read_pairs

    pairs_path, out = Path(pairs_path), check_out_path(out, (pairs_path,))
    pairs = read_pairs(pairs_path)
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
        tmp = part.with_name(part.name + ".tmp")
        tmp.write_text("\n".join([header, *(dumps(d.to_dict()) for d in done.values())]) + "\n", "utf-8")
        os.replace(tmp, part)
        step = max(chunk, opts.batch_size, opts.concurrency)
        chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
        with part.open("a", encoding="utf-8") as f:
            for batch in console.progress(chunks, total=len(chunks), desc="predict", unit="chunk"):
                for pred in backend.predict(batch):
                    done[pred.id] = pred
                    f.write(dumps(pred.to_dict()) + "\n")
                f.flush()
    preds = [done[p.id] for p in pairs]
    write_predictions(out, preds)
    part.unlink(missing_ok=True)
    n_ano = sum(p.is_anomalous for p in preds)
    n_bad = sum(not p.valid for p in preds)
    console.info(f"wrote {len(preds)} prediction(s) to {out}: {n_ano} anomalous, {n_bad} invalid")
    return preds
