"""Option conventions shared by all subcommands, so names and behaviour stay consistent."""

from __future__ import annotations

from typing import Annotated

import typer

from differad_cli.core import console

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors on stderr.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Debug output and full tracebacks.")]
Seed = Annotated[
    int, typer.Option("--seed", min=0, help="Seed for every random choice (reproducible by default).")
]


def apply_verbosity(quiet: bool, verbose: bool) -> None:
    """Per-command -q/-v override the global ones when given."""
    if quiet:
        console.set_verbosity(console.QUIET)
    elif verbose:
        console.set_verbosity(console.VERBOSE)


def example(*lines: str) -> str:
    """An 'Examples' epilog for --help."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)
