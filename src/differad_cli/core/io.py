"""The one atomic writer, and the output rules every stage runs before it starts work.

Readers never see a partial file, and the result has the permissions a plain open() would give: mkstemp
alone creates 0600 files, unreadable to the rest of a team or to a CI user.

Output rules (one place, every command): ``-`` is standard output; a FIFO, character device or other
non-regular file is written in place (renaming over ``/dev/stdout`` would replace the device with a file);
an existing regular file is replaced atomically only when it is ours (recognised from its content) or the
user passed ``--force``, never silently. A full disk while writing any output is one line naming the file
(:func:`writing`), exit 2."""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from differad_cli.core.errors import BadInput


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STDOUT = "-"


def is_stdout(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path) == STDOUT


def is_special(path: str | os.PathLike[str]) -> bool:
    """An existing target that is neither a regular file nor a folder (FIFO, device, socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Every output write runs inside this: a full disk (or quota, or file-size limit) becomes one line
    naming ``path`` (exit 2) instead of a bare ``[Errno 28]`` that says nothing of which file."""
    try:
        yield
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        name = "standard output" if is_stdout(path) else os.fspath(path)
        why = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e)).lower()
        raise BadInput(f"{why} writing {name}") from None


def _chunks(data: bytes | str | Iterable[str]) -> Iterable[bytes]:
    if isinstance(data, bytes):
        yield data
    elif isinstance(data, str):
        yield data.encode("utf-8")
    else:
        for line in data:
            yield line.encode("utf-8") + b"\n"


def _write_in_place(path: str | os.PathLike[str], data: bytes | str | Iterable[str]) -> None:
    """Standard output or a special file: written through, nothing renamed."""
    with writing(path):
        if is_stdout(path):
            out = sys.stdout.buffer
            for chunk in _chunks(data):
                out.write(chunk)
            out.flush()
            return
        with open(path, "wb") as f:
            for chunk in _chunks(data):
                f.write(chunk)


def publish(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Give a finished temporary file the usual permissions and rename it over ``dest`` (or copy it into a
    special file such as a FIFO, which a rename would replace)."""
    if is_stdout(dest) or is_special(dest):
        with open(tmp, "rb") as f:
            _write_in_place(dest, iter(lambda: f.read(1 << 20), b""))  # type: ignore[arg-type]
        os.unlink(tmp)
        return
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, Path(dest))


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Iterable[str]) -> None:
    """Write ``data`` (bytes, text, or lines written with a newline each) under a temporary name in the same
    folder, then rename it into place: an interrupted write leaves the old file (or nothing) behind.
    ``-`` and special files (FIFO, /dev/stdout) are written in place instead."""
    if is_stdout(path) or is_special(path):
        _write_in_place(path, data)
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise BadInput(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with writing(p), os.fdopen(fd, "wb") as f:
            for chunk in _chunks(data):
                f.write(chunk)
        publish(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_out_path(
    out: str | os.PathLike[str],
    inputs: tuple[str | os.PathLike[str], ...] = (),
    flag: str = "--out",
    *,
    force: bool = False,
    ours: Callable[[Path], bool] | None = None,
    what: str = "an output of differad",
    image: bool = False,
    allow_stdout: bool = False,
) -> Path:
    """Refuse, before any work, an output file that cannot be written or would destroy something: an
    existing folder, one of ``inputs``, an image file (unless ``image``), a path whose parent cannot be
    created/written, or an existing regular file that ``ours`` does not recognise (unless ``force``)."""
    if is_stdout(out):
        if not allow_stdout:
            raise BadInput(f"{flag} - (standard output) is not supported here; give a file path")
        return Path(STDOUT)
    out = Path(out)
    if out.is_dir():
        example = out / ("overlay.png" if image else "out.jsonl")
        raise BadInput(f"{flag} {out} is a folder; give a file path such as {example}")
    for src in inputs:
        src = Path(src)
        same = out.exists() and src.exists() and os.path.samefile(out, src)
        if same or out.resolve() == src.resolve():
            raise BadInput(f"{flag} {out} is the input {src}; writing it would replace the input")
    if is_special(out):
        return out  # written in place
    if not image and out.suffix.lower() in IMAGE_SUFFIXES:
        raise BadInput(f"{flag} {out} names an image; give a .jsonl path (it would be overwritten)")
    _check_writable(out, out.resolve().parent, flag)
    if out.is_file() and out.stat().st_size > 0 and not force and not (ours is not None and ours(out)):
        raise BadInput(
            f"{flag} {out} exists and is not {what}; pass --force to replace it or choose another path"
        )
    return out


def _check_writable(out: Path, start: Path, flag: str) -> None:
    """The nearest existing folder at or above ``start`` must be a writable folder (it will hold ``out``)."""
    parent = start
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{flag} {out}: cannot write there ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {out}: folder {parent} is not writable")


def check_out_dir(
    out: str | os.PathLike[str],
    owned: tuple[str, ...] | None,
    ours: Callable[[Path], bool],
    *,
    flag: str = "--out",
    force: bool = False,
) -> Path:
    """Refuse an output folder holding files we would overwrite (names in ``owned``; ``None``: any entry
    but hidden ones, for a folder filled with names not known in advance, such as a training run) that
    ``ours`` does not recognise as a previous run of ours (unless ``force``), or a folder that cannot be
    written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{flag} {out} is a file; give a folder")
    try:
        if owned is None:
            clash = (
                sorted(e.name for e in os.scandir(out) if not e.name.startswith(".")) if out.is_dir() else []
            )
        else:
            clash = [name for name in owned if (out / name).exists()]
    except OSError as e:
        raise BadInput(f"{flag} {out}: cannot read the folder ({e.strerror or e})") from None
    if clash and not force and not ours(out):
        names = ", ".join(str(out / n) for n in clash[:3])
        raise BadInput(
            f"{flag} {out} holds {names} not written by differad; "
            "pass --force to overwrite or choose another folder"
        )
    _check_writable(out, out if out.exists() else out.resolve().parent, flag)
    return out
