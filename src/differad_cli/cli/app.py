"""The `differad` console script: a thin typer layer; each subcommand is one module of ``differad_cli.cli``.

Command modules import only typer at module level, so `differad --help` and the light stages start fast;
heavy libraries (torch, transformers, TRL) are imported inside the commands that need them.
"""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup

from differad_cli import __version__
from differad_cli.cli import compare, demo, evaluate, pair, predict, synth, tiny_model, train
from differad_cli.cli.options import register
from differad_cli.core import console
from differad_cli.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, BadInput, one_line


class _Group(TyperGroup):
    """Turns BadInput into one line and exit code 2 inside click, so CliRunner and `main()` agree."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BadInput as e:
            click.echo(f"differad: error: {one_line(e)}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


app = typer.Typer(
    name="differad",
    cls=_Group,
    help="Reference-guided industrial anomaly localization with vision-language models (DifferAD-R1).\n\n"
    "Exit codes: 0 success, 1 failure, 2 bad input or usage.\n\n"
    "Examples:\n\n\b\n"
    "  $ differad predict ref.png tgt.png\n"
    "  $ differad synth --out data/train --n 64 --size 128\n"
    "  $ differad eval --pairs data/test/pairs.jsonl --backend diff --out runs/eval-diff\n"
    "  $ differad compare runs/eval-diff runs/eval-rl",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 160},
)


def _version(value: bool) -> None:
    if value:
        print(f"differad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors on stderr."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Debug output and full tracebacks."),
) -> None:
    console.set_verbosity(console.QUIET if quiet else console.VERBOSE if verbose else console.NORMAL)


for _module in (synth, pair, tiny_model, train, predict, evaluate, compare, demo):
    register(app, _module.COMMANDS)


def main() -> None:
    """Entry point: bad input is one line on stderr and exit code 2; other failures exit 1."""
    try:
        app(prog_name="differad")
    except BadInput as e:
        print(f"differad: error: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("differad: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a failure, not bad input: one line unless --verbose asks for the traceback
        if console.verbosity() >= console.VERBOSE:
            raise
        print(f"differad: failed: {type(e).__name__}: {e} (run with -v for the traceback)", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
