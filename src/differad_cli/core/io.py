"""The one atomic writer, and the output-path check every stage runs before it starts work.

Readers never see a partial file, and the result has the permissions a plain open() would give: mkstemp
alone creates 0600 files, unreadable to the rest of a team or to a CI user."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from differad_cli.core.errors import BadInput


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def publish(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Give a finished temporary file the usual permissions and rename it over ``dest``."""
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, Path(dest))


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Iterable[str]) -> None:
    """Write ``data`` (bytes, text, or lines written with a newline each) under a temporary name in the same
    folder, then rename it into place: an interrupted write leaves the old file (or nothing) behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            elif isinstance(data, str):
                f.write(data.encode("utf-8"))
            else:
                for line in data:
                    f.write(line.encode("utf-8"))
                    f.write(b"\n")
        publish(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_out_path(
    out: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = (), flag: str = "--out"
) -> Path:
    """Refuse, before any work, an output file that cannot be written or would destroy an input: an
    existing folder, one of ``inputs``, an image file, or a path whose parent cannot be created/written."""
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"{flag} {out} is a folder; give a file path such as {out / 'out.jsonl'}")
    for src in inputs:
        src = Path(src)
        same = out.exists() and src.exists() and os.path.samefile(out, src)
        if same or out.resolve() == src.resolve():
            raise BadInput(f"{flag} {out} is the input {src}; writing it would replace the input")
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise BadInput(f"{flag} {out} names an image; give a .jsonl path (it would be overwritten)")
    parent = out.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {out}: cannot create its folder ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {out}: folder {parent} is not writable")
    return out
