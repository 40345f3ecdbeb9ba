"""Text from manifests or models made safe for where it is shown: a terminal (no control sequences) or
Markdown (no table breaks, no markup, no raw HTML)."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MD_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "`": "\\`", "[": "\\[",
                             "]": "\\]", "<": "&lt;", ">": "&gt;", "&": "&amp;"})  # fmt: skip


def plain(text: object) -> str:
    """Terminal-safe: control characters (escape sequences, newlines) shown as ``?``."""
    return _CONTROL.sub("?", str(text))


def md(text: object) -> str:
    """Markdown-safe: one line, markup and HTML characters escaped."""
    return plain(text).translate(_MD_SPECIAL)
