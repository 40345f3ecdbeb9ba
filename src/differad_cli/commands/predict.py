"""Placeholder until the stage lands (replaced by its owner)."""

import typer


def register(app: typer.Typer) -> None:
    pass
