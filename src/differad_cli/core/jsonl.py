"""JSONL reading and writing with one-line errors naming file:line (records.py builds the contract on it)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput
from differad_cli.core.io import atomic_write

_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class RecordError(BadInput):
    """A record that breaks the contract; the message names the file and line."""


# ---------------------------------------------------------------------------------------------- JSONL


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a hostile value never makes an error message huge."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply, or an int too long for str()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iter_jsonl(
    path: str | os.PathLike[str], *, allow_partial_last: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a malformed line raises with file:line.

    Lines end at ``\\n`` only (``\\r\\n`` works; a CR inside a line is JSON whitespace), a UTF-8 byte-order
    mark is skipped, and every failure of the JSON parser (nesting, a number over Python's 4300-digit limit,
    an unpaired surrogate escape that no file could be written with) is a RecordError naming the line.
    ``allow_partial_last`` tolerates a truncated final line (an interrupted writer), which resume uses.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"file not found: {p}")
    try:
        with p.open("r", encoding="utf-8-sig", newline="\n") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise RecordError(f"{p}: not UTF-8 text (byte {e.start}); expected a JSONL file") from None
    except IsADirectoryError:
        raise BadInput(f"{p} is a folder, expected a JSONL file") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if allow_partial_last and i == len(lines) and not line.endswith("\n"):
                return
            raise RecordError(f"{p}:{i}: malformed JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise RecordError(f"{p}:{i}: JSON nested too deeply to be a record") from None
        except ValueError as e:  # e.g. an integer of more than 4300 digits
            raise RecordError(f"{p}:{i}: malformed JSON ({short(str(e), 80)})") from None
        if not isinstance(obj, dict):
            raise RecordError(f"{p}:{i}: expected a JSON object, got {type(obj).__name__}")
        if "\\u" in line and _SURROGATE.search(line) and not _encodable(obj):
            raise RecordError(
                f"{p}:{i}: text holds an unpaired surrogate escape (\\ud800-\\udfff), not Unicode"
            )
        yield i, obj


def _encodable(obj: dict) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return True
    except (UnicodeEncodeError, RecursionError):
        return False


def dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl(path: str | os.PathLike[str], objs: Iterable[dict]) -> None:
    """Write a whole JSONL file atomically (temp name, then rename)."""
    atomic_write(path, (dumps(o) for o in objs))
