"""`differad synth`: a thin layer over :func:`differad_cli.synth.run.synthesize`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli._common import Quiet, Seed, Verbose, apply_verbosity, example


def _h(name: str) -> str:
    """Help text from the SynthConfig field, so the CLI and the API cannot drift apart."""
    from dataclasses import fields

    from differad_cli.synth.config import SynthConfig

    return next(f.metadata["help"] for f in fields(SynthConfig) if f.name == name)


def register(app: typer.Typer) -> None:
    @app.command(
        "synth",
        help="Synthesize reference/target training pairs from defect-free images (paper Algorithm 1): "
        "paste an augmented texture into a foreground-constrained Perlin region, jitter and rotate, and "
        "write DIR/pairs.jsonl with ref/, tgt/ and mask/ PNGs. Without --normals/--textures it uses "
        "built-in procedural surfaces and textures. Output is byte-identical for any --workers; an "
        "interrupted run continues with --resume.",
        epilog=example(
            "differad synth --out data/synth --n 2000",
            "differad synth --out data/phone --normals good/ --textures dtd/images --size 512 --workers 8",
            "differad synth --out data/synth --n 5000 --resume",
        ),
    )
    def synth_cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help=_h("out"))],
        n: Annotated[int | None, typer.Option("--n", help=_h("n"))] = None,
        size: Annotated[int, typer.Option("--size", help=_h("size"))] = 256,
        seed: Seed = 0,
        workers: Annotated[int, typer.Option("--workers", "-j", help=_h("workers"))] = 0,
        normals: Annotated[Path | None, typer.Option("--normals", help=_h("normals"))] = None,
        textures: Annotated[Path | None, typer.Option("--textures", help=_h("textures"))] = None,
        p_normal: Annotated[float, typer.Option("--p-normal", help=_h("p_normal"))] = 0.25,
        fg: Annotated[str, typer.Option("--fg", help=_h("fg"))] = "auto",
        resume: Annotated[bool, typer.Option("--resume", help=_h("resume"))] = False,
        png_level: Annotated[int, typer.Option("--png-level", help=_h("png_level"))] = 1,
        beta_max: Annotated[float, typer.Option("--beta-max", help=_h("beta_max"))] = 0.8,
        brightness: Annotated[float, typer.Option("--brightness", help=_h("brightness"))] = 0.1,
        rotation: Annotated[float, typer.Option("--rotation", help=_h("rotation"))] = 3.0,
        jitter_normals: Annotated[
            bool, typer.Option("--jitter-normals/--no-jitter-normals", help=_h("jitter_normals"))
        ] = True,
        threshold: Annotated[float, typer.Option("--threshold", help=_h("threshold"))] = 0.5,
        min_area: Annotated[int, typer.Option("--min-area", help=_h("min_area"))] = 16,
        max_retries: Annotated[int, typer.Option("--max-retries", help=_h("max_retries"))] = 20,
        resize: Annotated[str, typer.Option("--resize", help=_h("resize"))] = "keep",
        category: Annotated[str | None, typer.Option("--category", help=_h("category"))] = None,
        subset: Annotated[str, typer.Option("--subset", help=_h("subset"))] = "synthetic",
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        apply_verbosity(quiet, verbose)
        from differad_cli.core import console
        from differad_cli.synth.run import SynthConfig, synthesize

        cfg = SynthConfig(
            out=out, n=n, size=size, seed=seed, workers=workers, normals=normals, textures=textures,
            p_normal=p_normal, fg=fg, resume=resume, png_level=png_level, beta_max=beta_max,
            brightness=brightness, rotation=rotation, jitter_normals=jitter_normals, threshold=threshold,
            min_area=min_area, max_retries=max_retries, resize=resize, category=category, subset=subset,
        )  # fmt: skip
        summary = synthesize(cfg)
        for line in summary.lines():
            console.info(line)
        if as_json:
            print(json.dumps(summary.to_dict()))
