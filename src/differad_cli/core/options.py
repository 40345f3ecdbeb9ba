"""One declaration per option: a config dataclass field carries the option's name, default and help.

The CLI (``differad_cli.cli.options``) derives every flag from these fields and recipes use the field names as
keys, so a flag, a recipe key and a config field cannot drift apart. ``opt`` only fills ``field`` metadata:
stages stay free of typer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

MISSING: Any = dataclasses.MISSING


def opt(
    default: Any = MISSING,
    *,
    help: str,
    flags: tuple[str, ...] | None = None,
    factory: Callable[[], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field that is also a command-line option.

    ``flags``: the option's names when ``--field-name`` is not right (``("--lr", "--learning-rate")``,
    ``("--freeze-vision/--train-vision",)``, ``("--out", "-o")``); ``cli=False`` keeps a field out of the
    CLI (recipe or API only). List-typed fields take a comma-separated value on the command line, or one item
    per occurrence of a repeatable option when the field's metadata has ``"repeat": True``.
    """
    metadata = {"help": help, "flags": flags, "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory); MISSING for a required field."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING
