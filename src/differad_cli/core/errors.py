"""Errors that reach the user as one line, and the exit codes the CLI documents."""

import re

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input or usage the user can fix: printed as one line, exit code 2, never a traceback."""


class ImageError(BadInput):
    """An image that cannot be read (missing, corrupt, too large, unsupported)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(message: object) -> str:
    """The message as printed: control characters (a newline or NUL inside a file name or record id) are
    escaped, so an error is always exactly one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(message))
