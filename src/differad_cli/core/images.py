"""Image I/O with clear errors: every stage loads RGB uint8 arrays and boolean masks through here."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from differad_cli.core import console
from differad_cli.core.errors import ImageError
from differad_cli.core.io import IMAGE_SUFFIXES, atomic_write

# Refuse decompression bombs ourselves, from the header, before any decoding: PIL's own threshold (above
# it PIL only warns, up to twice as much), so no DecompressionBombWarning ever reaches the user either.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
EXIF_ORIENTATION = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

cv2.setNumThreads(1)  # stages parallelize across processes; OpenCV's own pool would oversubscribe


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation from the header. A PNG's eXIf chunk is read only when it precedes the pixel data:
    PIL's ``getexif`` on a PNG without one decodes the whole image to look further (as slow as the decode)."""
    if im.format not in EXIF_FORMATS:
        return 1
    if im.format == "PNG":
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(EXIF_ORIENTATION, 1)
    return im.getexif().get(EXIF_ORIENTATION, 1)


def _header(p: Path, max_pixels: int) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) as stored; raises ImageError for missing/corrupt/oversized files."""
    if not os.path.isfile(p):  # False (not OSError) for a name too long or holding NUL
        raise ImageError(f"image not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                orientation = _orientation(im)
    except Image.DecompressionBombError as e:
        raise ImageError(f"refusing {p}: image is too large ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from None
    if w <= 0 or h <= 0:
        raise ImageError(f"cannot read image {p}: empty image")
    if w * h > max_pixels:
        raise ImageError(
            f"refusing {p}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
            "(possible decompression bomb)"
        )
    return w, h, orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


EXIF_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP", "PNG")


def image_size(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as every viewer shows the image (EXIF orientation applied), from the header alone."""
    w, h, orientation = _header(Path(path), max_pixels)
    return (h, w) if orientation >= 5 else (w, h)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> the displayed frame (EXIF orientation 1-8, as PIL's ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        arr = {5: arr, 6: np.rot90(arr, -1), 7: arr[::-1, ::-1], 8: np.rot90(arr, 1)}[orientation]
        if orientation in (5, 7):
            arr = arr.swapaxes(0, 1)
    else:
        arr = {1: arr, 2: arr[:, ::-1], 3: arr[::-1, ::-1], 4: arr[::-1]}[orientation]
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float32))
        if a.max(initial=0.0) <= 1.0:
            a = a * 255.0
        return np.clip(a + 0.5, 0, 255).astype(np.uint8)
    # other integer types (int32 'I' mode): scale by the dtype's or the data's range
    a = arr.astype(np.float64)
    top = max(float(a.max(initial=0.0)), 1.0)
    return np.clip(a * (255.0 / (65535.0 if top > 255 else 255.0)) + 0.5, 0, 255).astype(np.uint8)


_STDERR_LOCK = threading.Lock()
_CAPTURE: tuple[int, IO[bytes]] | None = None
LIBRARY_PREFIXES = ("libpng", "[ WARN", "[ERROR", "libjpeg", "libtiff", "TIFF")
FATAL = ("libpng error", "Premature end of JPEG", "Not enough image data")


@contextlib.contextmanager
def _library_messages() -> Iterator[list[str]]:
    """Collect what C libraries (libpng, libjpeg, OpenCV) print on file descriptor 2 while decoding, so
    they become our one-line messages instead of stray lines; anything else written meanwhile is passed on."""
    global _CAPTURE
    lines: list[str] = []
    with _STDERR_LOCK:
        if _CAPTURE is None or _CAPTURE[0] != os.getpid():  # one scratch file per process (workers fork)
            _CAPTURE = (os.getpid(), tempfile.TemporaryFile())  # noqa: SIM115 (lives with the process)
        tmp = _CAPTURE[1]
        tmp.seek(0)
        tmp.truncate()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            end = os.fstat(tmp.fileno()).st_size
            if end:
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
                lines.extend(ln.strip() for ln in text.splitlines() if ln.strip())


def _decode(p: Path) -> np.ndarray:
    data = np.fromfile(p, dtype=np.uint8)
    with _library_messages() as msgs:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    fatal = [m for m in msgs if any(f in m for f in FATAL)]
    if fatal:  # OpenCV keeps the rows it got and fills the rest with black: refuse instead
        raise ImageError(f"cannot read {p}: truncated or corrupt image data ({fatal[0]})")
    for m in msgs:
        if m.startswith(LIBRARY_PREFIXES) or "JPEG" in m:
            console.warn(f"{p}: {m}")
        else:  # not a decoder's line: another thread's output, passed on as it was
            print(m, file=sys.stderr)
    head = bytes(data[:8])
    if arr is None and (head.startswith(PNG_SIGNATURE) or head.startswith(b"\xff\xd8")):
        raise ImageError(f"cannot read {p}: corrupt image data")
    if arr is not None:
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        elif arr.ndim == 3 and arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        return arr
    with Image.open(p) as im:  # formats OpenCV lacks (GIF, some TIFFs)
        im.load()
        if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "HSV", "1"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        return np.asarray(im)


def _read(path: str | os.PathLike[str], what: str, max_pixels: int) -> np.ndarray:
    p = Path(path)
    _, _, orientation = _header(p, max_pixels)
    try:
        arr = _decode(p)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot read {what} {p}: {e}") from None
    if arr is None or arr.size == 0:
        raise ImageError(f"cannot read {what} {p}: no pixel data")
    return _orient(arr, orientation)


def load_rgb(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any common format -> (H, W, 3) uint8 RGB. Grayscale is replicated, alpha dropped, 16-bit scaled."""
    arr = _to_uint8(_read(path, "image", max_pixels))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.shape[2] == 2:  # gray + alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(arr)


def load_mask(
    path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, *, nonzero: bool = False
) -> np.ndarray:
    """A binary mask as a 2-D bool array: pixels above half the mask's brightest value are anomalous.

    Half the maximum rather than "non-zero", so masks saved as 0/1, 0/255 or 16-bit all work and the faint
    speckles of a JPEG-compressed mask do not grow its box. ``nonzero`` is for lossless masks whose values
    are ids or per-type levels (VisA, MVTec LOCO): there a low value is as anomalous as a high one.
    """
    arr = _read(path, "mask", max_pixels)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if nonzero:
        return arr > 0
    top = arr.max()
    return arr > top / 2 if top > 0 else np.zeros(arr.shape, dtype=bool)


TAG_KEY = b"Software"
_IHDR_END = 8 + 4 + 4 + 13 + 4  # signature, then the IHDR chunk (length, type, 13 data bytes, CRC)


def _tagged(png: bytes, tag: str) -> bytes:
    """``png`` with a tEXt chunk "Software: <tag>" right after IHDR: how we recognise our own pictures."""
    data = TAG_KEY + b"\0" + tag.encode("latin-1")
    chunk = len(data).to_bytes(4, "big") + b"tEXt" + data
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    return png[:_IHDR_END] + chunk + png[_IHDR_END:]


def png_tag(path: str | os.PathLike[str]) -> str | None:
    """The tag :func:`encode_png` wrote into ``path``, or None (not a PNG of ours)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_IHDR_END + 8 + 256)
    except OSError:
        return None
    if not head.startswith(PNG_SIGNATURE) or head[_IHDR_END + 4 : _IHDR_END + 8] != b"tEXt":
        return None
    n = int.from_bytes(head[_IHDR_END : _IHDR_END + 4], "big")
    key, _, value = head[_IHDR_END + 8 : _IHDR_END + 8 + n].partition(b"\0")
    return value.decode("latin-1") if key == TAG_KEY else None


def png_intact(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> bool:
    """A cheap integrity check of a PNG file, without decoding pixels: the signature, every chunk's CRC, IHDR
    first (``size`` = its (width, height) when given) and IEND last. Catches a missing, truncated or damaged
    file (flipped bytes break a CRC); a different but intact PNG of the right size passes."""
    try:
        data = memoryview(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    if data[:8] != PNG_SIGNATURE:
        return False
    pos = 8
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + n
        if end > len(data):
            return False
        kind, body = bytes(data[pos + 4 : pos + 8]), data[pos + 8 : end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(data[end - 4 : end], "big"):
            return False
        if pos == 8:
            wh = (int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big"))
            if kind != b"IHDR" or n != 13 or (size is not None and wh != tuple(size)):
                return False
        if kind == b"IEND":
            return end == len(data)
        pos = end
    return False


def encode_png(arr: np.ndarray, level: int = 1, tag: str | None = None) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or gray/bool (H, W) array at zlib ``level`` (0-9), tagged with
    ``tag`` (a tEXt chunk) when given."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise ImageError("PNG encoding failed")
    return _tagged(buf.tobytes(), tag) if tag else buf.tobytes()


def save_png(path: str | os.PathLike[str], arr: np.ndarray, level: int = 1, tag: str | None = None) -> None:
    atomic_write(path, encode_png(arr, level, tag))


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files below ``root`` (recursive, sorted for reproducibility, hidden files skipped)."""
    r = Path(root)
    return sorted(
        p
        for p in r.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(r).parts)
    )


def load_pair_images(
    ref: str | os.PathLike[str], tgt: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as RGB arrays; a reference of another size is resized to the target (with a warning)."""
    r, t = load_rgb(ref), load_rgb(tgt)
    if r.shape[:2] != t.shape[:2]:
        console.warn(
            f"reference {Path(ref).name} is {r.shape[1]}x{r.shape[0]}, target {Path(tgt).name} is "
            f"{t.shape[1]}x{t.shape[0]}: reference resized to the target"
        )
        r = fit_reference(r, *t.shape[:2])
    return r, t


def fit_reference(ref: np.ndarray, height: int, width: int) -> np.ndarray:
    """The reference at the target's size, resized the one way every backend resizes it (area)."""
    if ref.shape[:2] == (height, width):
        return ref
    return cv2.resize(ref, (width, height), interpolation=cv2.INTER_AREA)


class SizedReference:
    """Line mode: one decoded reference, resized once per target size (one warning per size), the same
    pixels :func:`load_pair_images` gives for each pair."""

    def __init__(self, path: str | os.PathLike[str], image: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.image = load_rgb(path) if image is None else image
        self._sized: dict[tuple[int, int], np.ndarray] = {}

    def at(self, height: int, width: int) -> np.ndarray:
        if (height, width) not in self._sized:
            h, w = self.image.shape[:2]
            if (h, w) != (height, width):
                console.warn(
                    f"reference {self.path.name} is {w}x{h}, targets of {width}x{height} get it resized"
                )
            self._sized[(height, width)] = fit_reference(self.image, height, width)
        return self._sized[(height, width)]
