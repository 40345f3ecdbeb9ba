"""--help copies: every example is one whole line whatever the terminal width, the top-level help has
examples, and argument names read as names."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from differad_cli.cli import app as app_module

runner = CliRunner()
_ALL = [c for m in app_module.__dict__.values() if hasattr(m, "COMMANDS") for c in m.COMMANDS]
COMMANDS = list({c.name: c for c in _ALL}.values())


@pytest.mark.parametrize("columns", ["40", "200"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_examples_are_never_wrapped(command, columns: str) -> None:
    res = runner.invoke(app_module.app, [command.name, "--help"], env={"COLUMNS": columns})
    assert res.exit_code == 0, res.output
    lines = [line.strip() for line in res.output.splitlines()]
    for example in command.examples:
        assert f"$ {example}" in lines, f"example wrapped or missing: {example}"


def test_top_level_help_has_examples_and_every_command() -> None:
    res = runner.invoke(app_module.app, ["--help"], env={"COLUMNS": "50"})
    assert res.exit_code == 0
    assert "$ differad predict ref.png tgt.png" in res.output
    assert all(c.name in res.output for c in COMMANDS) and len(COMMANDS) == 9


def test_argument_names_are_readable() -> None:
    for args, usage in ((["tiny-model"], "{OUT}"), (["predict"], "[IMAGE]..."), (["compare"], "{RUN}...")):
        res = runner.invoke(app_module.app, [*args, "--help"])
        assert usage in res.output.splitlines()[0], res.output.splitlines()[0]
