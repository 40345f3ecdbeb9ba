"""`differad demo`: the whole pipeline at demo size on a CPU (what `make demo` runs)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli._common import Quiet, Seed, Verbose, apply_verbosity, example
from differad_cli.demo import DemoConfig

_DEFAULT = {f.name: f.default for f in fields(DemoConfig)}  # one source for the defaults

HELP = """Run the whole pipeline at demo size, offline, on a CPU: synthesize training and held-out pairs,
build the tiny offline Qwen2-VL, train-cold and train-rl it for a few steps, evaluate the training-free
`diff` backend and the trained tiny model on the held-out pairs, and predict one pair with an overlay.
Prints where everything is and both metric tables side by side. Re-running resumes: stages whose outputs
exist are skipped."""


def register(app: typer.Typer) -> None:
    @app.command(
        "demo", help=HELP, epilog=example("differad demo --out demo", "differad -q demo --out /tmp/d")
    )
    def demo_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo writes.")] = Path(
            "demo"
        ),
        n_train: Annotated[int, typer.Option("--n-train", help="Synthetic training pairs.")] = _DEFAULT[
            "n_train"
        ],
        n_test: Annotated[int, typer.Option("--n-test", help="Synthetic held-out pairs.")] = _DEFAULT[
            "n_test"
        ],
        size: Annotated[int, typer.Option("--size", help="Synthetic image size (pixels).")] = _DEFAULT[
            "size"
        ],
        cold_steps: Annotated[int, typer.Option("--cold-steps", help="train-cold steps.")] = _DEFAULT[
            "cold_steps"
        ],
        rl_steps: Annotated[int, typer.Option("--rl-steps", help="train-rl steps.")] = _DEFAULT["rl_steps"],
        seed: Seed = 0,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        apply_verbosity(quiet, verbose)
        from differad_cli.demo import describe, run_demo

        cfg = DemoConfig(
            out=out, n_train=n_train, n_test=n_test, size=size, cold_steps=cold_steps, rl_steps=rl_steps,
            seed=seed,
        )  # fmt: skip
        print(describe(run_demo(cfg)))
