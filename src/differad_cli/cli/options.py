"""Typer options derived from config dataclasses: the only place where a config field becomes a flag.

``@config_options(SynthConfig)`` turns every field of the config into an option (name, default, help from the
field, see :func:`differad_cli.core.options.opt`) and hands the command body a built config. With
``unset=True`` (training) options default to "not given" and the body gets only the given values, so a recipe
fills the rest; the field's own default is shown in the help.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.options import MISSING, default_of

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors on stderr.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Debug output and full tracebacks.")]


def apply_verbosity(quiet: bool, verbose: bool) -> None:
    """Per-command -q/-v override the global ones when given."""
    if quiet:
        console.set_verbosity(console.QUIET)
    elif verbose:
        console.set_verbosity(console.VERBOSE)


def example(*lines: str) -> str:
    """An 'Examples' epilog for --help."""
    # "\b": click does not rewrap the paragraph after it, so examples stay whole lines at any terminal width
    return "Examples:\n\n\b\n" + "\n".join(f"  $ {line}" for line in lines)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _list_item(tp: Any) -> Any | None:
    """The item type of ``list[X]`` (possibly optional), else None."""
    base, _ = _strip_optional(tp)
    return typing.get_args(base)[0] if typing.get_origin(base) is list else None


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


@dataclasses.dataclass
class _Field:
    name: str
    type: Any
    field: dataclasses.Field
    owners: list[type]


def _fields(classes: tuple[type, ...], exclude: tuple[str, ...]) -> dict[str, _Field]:
    """CLI fields of ``classes`` by name (a name in several classes is one option feeding each of them)."""
    out: dict[str, _Field] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude or not f.metadata.get("cli", True) or "help" not in f.metadata:
                continue
            if f.name in out:
                out[f.name].owners.append(cls)
            else:
                out[f.name] = _Field(f.name, hints[f.name], f, [cls])
    return out


def _parameter(spec: _Field, unset: bool) -> inspect.Parameter:
    f, tp = spec.field, spec.type
    flags = f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)
    default = default_of(f)
    item = _list_item(tp)
    help_text = f.metadata["help"]
    if item is not None and f.metadata.get("repeat"):  # a repeatable option: one item per occurrence
        option = typer.Option(*flags, help=help_text, show_default=False, metavar=f.metadata.get("metavar"))
        annotation = Annotated[list[item] | None, option]  # type: ignore[valid-type]
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    if item is not None:  # lists travel as one comma-separated value
        tp = str | None if unset or default is None else str
        default = None if default is None or default is MISSING else _show(default)
    if unset:
        base, _ = _strip_optional(tp)
        if default is not MISSING and default is not None and not isinstance(default, bool | list):
            help_text += f" [default: {_show(default)}]"
        elif isinstance(default, bool):
            help_text += f" [default: {'on' if default else 'off'}]"
        annotation = Annotated[base | None, typer.Option(*flags, help=help_text, show_default=False)]
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    option = typer.Option(*flags, help=help_text, show_default=default not in (None, MISSING))
    annotation = Annotated[tp, option]
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=inspect.Parameter.empty if default is MISSING else default,
        annotation=annotation,
    )


def _parse_list(name: str, value: Any, item: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return [item(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        flag = "--" + name.replace("_", "-")
        raise BadInput(f"{flag}: expected a comma-separated list, got {value!r}") from None


def config_options(
    *classes: type, exclude: tuple[str, ...] = (), unset: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command body whose first parameters take one built config per class in ``classes`` (or,
    with ``unset=True``, one dict ``options`` of the values given); its other parameters are typer
    parameters of its own (arguments, command-only flags). -q/-v are added to every command."""
    specs = _fields(classes, exclude)

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(body)
        hints = typing.get_type_hints(body, include_extras=True)
        n_cfg = 1 if unset else len(classes)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in list(sig.parameters.values())[n_cfg:]
        ]
        derived = [_parameter(s, unset) for s in specs.values()]
        verbosity = [
            inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
            inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Verbose),
        ]
        params = [*own, *derived, *verbosity]
        required = [p for p in params if p.default is inspect.Parameter.empty]
        optional = [p for p in params if p.default is not inspect.Parameter.empty]
        kinds = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in [*required, *optional]]

        @functools.wraps(body)
        def command(**kwargs: Any) -> None:
            apply_verbosity(kwargs.pop("quiet"), kwargs.pop("verbose"))
            values = {name: kwargs.pop(name) for name in specs}
            for name, value in values.items():
                item = _list_item(specs[name].type)
                if item is not None and specs[name].field.metadata.get("repeat"):
                    given = list(value) if value is not None else None
                    values[name] = given if given is not None or unset else default_of(specs[name].field)
                elif item is not None:
                    values[name] = _parse_list(name, value, item)
            if unset:
                body({k: v for k, v in values.items() if v is not None}, **kwargs)
                return
            configs = []
            for cls in classes:
                names = {f.name for f in dataclasses.fields(cls)}
                configs.append(cls(**{k: v for k, v in values.items() if k in names}))
            body(*configs, **kwargs)

        command.__signature__ = inspect.Signature(kinds)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in kinds}
        del command.__wrapped__  # typer must read the derived signature, not the body's
        return command

    return decorate


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its name, function, --help examples and text (default: the function's docstring)."""

    name: str
    function: Callable[..., None]
    examples: tuple[str, ...] = ()
    help: str | None = None


def register(app: typer.Typer, commands: tuple[Command, ...]) -> None:
    for c in commands:
        app.command(c.name, help=c.help, epilog=example(*c.examples) if c.examples else None)(c.function)
