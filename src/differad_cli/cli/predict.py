"""`differad predict`: one reference/target pair (human line or --json), or a whole pair manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.predict.config import LineOptions, PredictIO, PredictOptions

HELP = """Say whether TGT has a defect compared with the normal reference REF, and where (one box).

Prints one line: anomalous or normal, the box in target pixels (x2/y2 exclusive) and the explanation
when the backend gives one. --json prints {"ref", "tgt", "box", "label", "valid", "text", "backend",
"elapsed_ms", "score"} instead. Batch mode (--pairs P.jsonl --out PRED.jsonl) writes prediction records
for `differad eval`; an interrupted run resumes (--no-resume starts over).

Backends:


  diff    (default without --model) training-free golden-template inspection: aligns the reference
          to the target (shift + rotation), matches brightness, takes a noise-tolerant difference and
          boxes the largest region above --threshold (0-255 intensity units; lower finds fainter
          defects, higher gives fewer false alarms; auto: each pair's own, max(8, 3 x its noise));
          smaller than --min-area (image fraction) = normal. --maps DIR (batch mode) also writes each
          pair's anomaly map as DIR/<id>.npy (float32) for `differad eval --maps DIR`.


  hf      a local Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint or LoRA adapter folder (--model PATH);
          greedy, batched, GPU when present.


  openai  an OpenAI-compatible chat endpoint such as a vLLM server (--endpoint URL --model NAME,
          key from --api-key or OPENAI_API_KEY). --family names the served model's coordinate
          convention: qwen3_vl (default) and qwen2_vl answer in 0-1000 of the image, qwen2_5_vl in
          pixels of its resized image, computed from --min-pixels/--max-pixels: set them to the
          server processor's limits (default: Qwen2.5-VL's published 3136 / 12845056).

Line mode: --ref GOLDEN with targets as arguments, --targets DIR|GLOB|- or --watch DIR answers each
target against one reference, prepared once, one JSON line per target on stdout. --ref-map picks the
reference by the target's folder name (its category) for mixed lines; --ref then covers the other
categories, and without it their targets are skipped with one line.

A reference of another size than the target is resized to it (with a warning)."""


@config_options(PredictIO, PredictOptions, LineOptions)
def predict_cmd(
    io: PredictIO,
    opts: PredictOptions,
    line: LineOptions,
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="REF TGT, or with --ref/--ref-map: the targets.", show_default=False, metavar="IMAGE"
        ),
    ] = None,
) -> None:
    from differad_cli.core.errors import BadInput
    from differad_cli.predict.run import check_overlay, human_line, predict_file, predict_one, write_overlay

    images = list(images or [])
    pairs, out, overlay, as_json = io.pairs, io.out, io.overlay, io.as_json
    if opts.maps_out is not None and pairs is None:
        raise BadInput(
            "--maps goes with batch mode (--pairs P.jsonl --out PRED.jsonl): maps are named by pair id"
        )
    if line.ref is not None or line.ref_map or line.targets is not None or line.watch is not None:
        from differad_cli.predict.line import run_line_mode

        run_line_mode(
            opts, line, images, batch_flags=pairs is not None or out is not None or overlay is not None
        )
        return
    if pairs is not None:
        if images:
            raise BadInput("give either REF TGT or --pairs P.jsonl --out PRED.jsonl, not both")
        if out is None:
            raise BadInput("--pairs needs --out PRED.jsonl")
        if as_json or overlay is not None:
            raise BadInput("--json and --overlay apply to one pair (REF TGT), not to --pairs")
        predict_file(pairs, out, opts, resume=io.resume)
        return
    if len(images) != 2:
        raise BadInput(
            "give REF and TGT images, --ref GOLDEN TARGET... (line mode), or --pairs P.jsonl --out PRED.jsonl"
        )
    if out is not None:
        raise BadInput("--out is for batch mode (--pairs); use --json or --overlay for one pair")
    if overlay is not None:
        check_overlay(overlay, images[0], images[1], opts.force)  # before the prediction, which may be slow
    result = predict_one(images[0], images[1], opts)
    if overlay is not None:
        write_overlay(overlay, result, force=opts.force)
    print(json.dumps(result, ensure_ascii=False) if as_json else human_line(result))


COMMANDS = (
    Command(
        "predict",
        predict_cmd,
        examples=(
            "differad predict ref.png tgt.png",
            "differad predict ref.png tgt.png --json --overlay out.png --threshold 30",
            "differad predict ref.png tgt.png --backend hf --model runs/rl/checkpoint-500",
            "differad predict ref.png tgt.png --endpoint http://localhost:8000/v1 --model differad-2b",
            "differad predict --pairs pairs.jsonl --out preds.jsonl --backend diff",
            "differad predict --ref golden.png line/*.png",
            "differad predict --ref golden.png --watch incoming/ > answers.jsonl",
            "differad predict --ref-map bottle=ok/bottle.png --ref-map screw=ok/screw.png --targets line/",
            "differad predict --ref-map refs.yaml --watch incoming/  # incoming/CATEGORY/*.png",
        ),
        help=HELP,
    ),
)
