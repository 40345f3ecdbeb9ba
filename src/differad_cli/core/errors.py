"""Errors that reach the user as one line, and the exit codes the CLI documents."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input or usage the user can fix: printed as one line, exit code 2, never a traceback."""


class ImageError(BadInput):
    """An image that cannot be read (missing, corrupt, too large, unsupported)."""
