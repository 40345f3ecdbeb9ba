"""`differad synth`: a thin layer over :func:`differad_cli.synth.synthesize`; options from ``SynthConfig``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from differad_cli.cli.options import Command, config_options
from differad_cli.synth.config import SynthConfig


@config_options(SynthConfig)
def synth_cmd(
    cfg: SynthConfig,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    from differad_cli.core import console
    from differad_cli.synth import synthesize

    summary = synthesize(cfg)
    for line in summary.lines():
        console.info(line)
    if as_json:
        print(json.dumps(summary.to_dict()))


COMMANDS = (
    Command(
        "synth",
        synth_cmd,
        examples=(
            "differad synth --out data/synth --n 2000",
            "differad synth --out data/phone --normals good/ --textures dtd/images --size 512 --workers 8",
            "differad synth --out data/synth --n 5000 --resume",
        ),
        help="Synthesize reference/target training pairs from defect-free images (paper Algorithm 1): "
        "paste an augmented texture into a foreground-constrained Perlin region, jitter and rotate, and "
        "write DIR/pairs.jsonl with ref/, tgt/ and mask/ PNGs. Without --normals/--textures it uses "
        "built-in procedural surfaces and textures. Output is byte-identical for any --workers; an "
        "interrupted run continues with --resume.",
    ),
)
