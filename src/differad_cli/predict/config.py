"""Options of the prediction stage, shared by `differad predict` and `differad eval --backend`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput

BACKENDS = ("diff", "hf", "openai")
ILLUMINATION = ("global", "plane", "field", "local")  # the diff backend's lighting models
# options only the diff backend reads (n_refs too, when not 1): refused with another backend, not ignored
DIFF_ONLY = ("threshold", "min_area", "illumination", "refs", "false_alarm")
FALSE_ALARM = 0.05  # --calibrate's default rate


def _h(text: str, *flags: str) -> dict[str, Any]:
    return {"help": text, "flags": flags or None}


@dataclass
class PredictOptions:
    """How predictions are obtained; every field is an option of `differad predict` and `differad eval`."""

    backend: str | None = field(
        default=None,
        metadata=_h("diff | hf | openai (default: openai with --endpoint, hf with --model, else diff)."),
    )
    model: str | None = field(
        default=None, metadata=_h("hf: checkpoint/adapter folder; openai: served model name.")
    )
    template: str | None = field(
        default=None,
        metadata=_h(
            "Prompt: differad | baseline | staged | compact (default: the one an hf checkpoint was trained "
            "on, from its run's train_summary.json; else differad)."
        ),
    )
    threshold: str | None = field(
        default=None,
        metadata=_h(
            "diff: seed difference, 0-255 units (a 9x9 window of the 256-pixel working image whose mean "
            "difference exceeds a quarter of it seeds too: faint, large defects), or auto: each pair's own "
            "from its noise (MAD rule) [default: 16; --calibrate picks one on normal pairs instead]."
        ),
    )
    min_area: float | None = field(
        default=None, metadata=_h("diff: smallest anomaly, image fraction [default: 0.0005].")
    )
    n_refs: int = field(
        default=1,
        metadata=_h("diff: compare with up to this many references (the record's ref, then its refs)."),
    )
    illumination: str | None = field(
        default=None,
        metadata=_h(
            "diff: lighting model: global (gain/offset) | plane (a planar gain field: lighting ramps) | "
            "field (quadratic) | local (local mean/contrast) [default: plane]."
        ),
    )
    refs: Path | None = field(
        default=None,
        metadata=_h("diff: a folder of good images, extra references for every target (all, or --n-refs)."),
    )
    calibrate: Path | None = field(
        default=None,
        metadata=_h(
            "diff: pick the threshold on normal pairs for --false-alarm: a manifest (its label-0 pairs) or a "
            "folder of good images (each against --ref in line mode, else against another of them)."
        ),
    )
    false_alarm: float | None = field(
        default=None,
        metadata=_h("diff, --calibrate: share of the normal pairs the threshold may flag [default: 0.05]."),
    )
    maps_out: Path | None = field(
        default=None,
        metadata=_h(
            "diff, --pairs: also write each pair's anomaly map as DIR/<id>.npy (float32) for `eval --maps`.",
            "--maps",
        ),
    )
    batch_size: int = field(default=4, metadata=_h("hf: pairs per generate call."))
    max_new_tokens: int = field(default=256, metadata=_h("hf/openai: answer length."))
    device: str | None = field(default=None, metadata=_h("hf: cuda | cpu (default: GPU if any)."))
    dtype: str | None = field(default=None, metadata=_h("hf: auto | bf16 | fp16 | fp32."))
    trust_remote_code: bool = field(
        default=False, metadata=_h("hf: allow the checkpoint's own Python code.", "--trust-remote-code")
    )
    endpoint: str | None = field(default=None, metadata=_h("openai: server base URL."))
    api_key: str | None = field(default=None, metadata=_h("openai: key (or OPENAI_API_KEY)."))
    family: str = field(
        default="qwen3_vl", metadata=_h("openai: qwen3_vl | qwen2_vl | qwen2_5_vl (coordinates).")
    )
    timeout: float = field(default=60.0, metadata=_h("openai: seconds per request."))
    retries: int = field(default=3, metadata=_h("openai: retries of transient failures."))
    concurrency: int = field(default=4, metadata=_h("openai: requests in flight."))
    # Qwen2.5-VL's published processor limits (preprocessor_config.json), what a stock server uses
    min_pixels: int = field(
        default=56 * 56,
        metadata=_h(
            "openai + qwen2_5_vl: the server processor's pixel limits (lower; Qwen2.5-VL default 3136)."
        ),
    )
    max_pixels: int = field(
        default=28 * 28 * 16384,
        metadata=_h(
            "openai + qwen2_5_vl: the server processor's pixel limits (upper; Qwen2.5-VL default 12845056)."
        ),
    )
    num_processes: int = field(
        default=1,
        metadata=_h(
            "Batch: processes to predict with, one GPU each when there are enough (manifest sharded, results "
            "merged in input order, each shard resumes on its own)."
        ),
    )
    seed: int = field(default=0, metadata=_h("Seed for every random choice (reproducible by default)."))
    force: bool = field(
        default=False,
        metadata=_h(
            "Replace an existing output file that differad did not write (default: refuse).", "--force"
        ),
    )


def check_ranges(opts: PredictOptions) -> None:
    """Numeric options out of range are bad input, whatever the backend (a negative concurrency or a zero
    answer length would otherwise pass silently, or fail later with a confusing message)."""
    at_least = {
        "--num-processes": (opts.num_processes, 1), "--batch-size": (opts.batch_size, 1),
        "--max-new-tokens": (opts.max_new_tokens, 1), "--concurrency": (opts.concurrency, 1),
        "--retries": (opts.retries, 0),
    }  # fmt: skip
    for flag, (value, low) in at_least.items():
        if value < low:
            raise BadInput(f"{flag} must be at least {low}, got {value}")
    if not math.isfinite(opts.timeout) or opts.timeout <= 0:
        raise BadInput(f"--timeout must be a number of seconds above 0, got {opts.timeout:g}")


@dataclass
class LineOptions:
    """Line mode of `differad predict`: a fixed reference and a stream of targets."""

    ref: Path | None = field(
        default=None, metadata={"help": "Line mode: the golden reference for every target (TARGET... args)."}
    )
    targets: str | None = field(
        default=None, metadata={"help": "Line mode: a folder, a glob, or - (paths on stdin, one per line)."}
    )
    watch: Path | None = field(
        default=None,
        metadata={
            "help": "Line mode: answer each new, completely written image in DIR or below until Ctrl-C."
        },
    )
    ref_map: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Line mode, mixed lines: CATEGORY=PATH (repeatable) or a YAML file of category: path; a "
            "target's category is its folder's name. Other categories use --ref, or are skipped without it.",
            "repeat": True,
            "metavar": "CATEGORY=PATH|YAML",
        },
    )


@dataclass
class PredictIO:
    """Where `differad predict` reads pairs and writes answers: one pair (human line, --json, --overlay) or a
    whole manifest (--pairs/--out, resumable)."""

    pairs: Path | None = field(default=None, metadata=_h("Batch mode: a pairs.jsonl manifest."))
    out: Path | None = field(
        default=None, metadata=_h("Batch mode: prediction records output (- for stdout).")
    )
    as_json: bool = field(default=False, metadata=_h("Print one JSON object on stdout.", "--json"))
    overlay: Path | None = field(default=None, metadata=_h("Write REF beside TGT with the box drawn (PNG)."))
    resume: bool = field(
        default=True, metadata=_h("Batch: continue an interrupted run.", "--resume/--no-resume")
    )


def resolve_backend(opts: PredictOptions) -> str:
    name = opts.backend or ("openai" if opts.endpoint else "hf" if opts.model else "diff")
    if name not in BACKENDS:
        raise BadInput(f"unknown backend '{name}' (expected one of: {', '.join(BACKENDS)})")
    if name == "hf" and not opts.model:
        raise BadInput("--backend hf needs --model PATH (a local checkpoint or LoRA adapter folder)")
    if name == "hf" and not Path(opts.model).is_dir():  # before the slow torch/transformers import
        raise BadInput(f"model folder not found: {opts.model}")
    check_ranges(opts)
    if name == "openai" and not opts.endpoint:
        raise BadInput("--backend openai needs --endpoint URL (and --model NAME)")
    if opts.calibrate is not None:
        if name != "diff":
            raise BadInput(f"--calibrate sets the diff backend's threshold; the {name} backend has none")
        if opts.threshold is not None:
            raise BadInput("--calibrate picks one threshold: leave --threshold out")
        if opts.num_processes > 1:
            raise BadInput(
                "--calibrate runs in one process: calibrate once, then give the threshold it prints with "
                "--threshold and --num-processes"
            )
    if opts.illumination is not None and opts.illumination not in ILLUMINATION:
        choices = ", ".join(ILLUMINATION)
        raise BadInput(f"unknown --illumination '{opts.illumination}' (choose from: {choices})")
    if name != "diff" and opts.maps_out is not None:
        raise BadInput(f"--maps writes the diff backend's anomaly maps; the {name} backend has none")
    if name != "diff":  # the diff backend's options would otherwise be ignored without a word
        given = [f for f in DIFF_ONLY if getattr(opts, f) is not None]
        given += ["n_refs"] if opts.n_refs != 1 else []
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise BadInput(f"{flag} is an option of the diff backend; the {name} backend has none")
    if opts.false_alarm is not None:
        if opts.calibrate is None:
            raise BadInput("--false-alarm is the rate --calibrate picks the threshold for: give --calibrate")
        if not 0 <= opts.false_alarm < 1:
            raise BadInput(f"--false-alarm must be a share in [0, 1), got {opts.false_alarm:g}")
    return name
