"""Atomic file replacement shared by every writer.

Readers never see a partial file, and the result has the permissions a plain open() would give: mkstemp
alone creates 0600 files, unreadable to the rest of a team or to a CI user."""

from __future__ import annotations

import os
from pathlib import Path


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def publish(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Give a finished temporary file the usual permissions and rename it over ``dest``."""
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, Path(dest))
