"""The diff backend's anomaly maps on disk (``predict --maps DIR``): ``DIR/<id>.npy``, float32, what
``eval --maps`` reads (an id with ``/`` becomes sub-folders, as eval looks them up).

A map is the pair's tolerant difference at the working resolution (longest side ``work_size``), in 0-255
units scaled so that the pair's own seed threshold sits at ``threshold`` (16 by default): maps of different
pairs compare on one scale, with ``--threshold auto`` and the noise floor too. With several references it is
their minimum (what none of them explains). ``eval --maps`` resizes it to the target.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from differad_cli.core.errors import BadInput
from differad_cli.core.io import atomic_write, check_out_dir

MARKER = ".differad-maps"  # a maps folder of ours: a new run may replace its files


def map_path(root: Path, pid: str) -> Path:
    """Where pair ``pid``'s map goes; an id that would leave ``root`` (absolute, ``..``) is bad input."""
    rel = PurePosixPath(pid)
    if rel.is_absolute() or ".." in rel.parts or "\\" in pid or not rel.parts:
        raise BadInput(f"--maps: pair id {pid!r} cannot name a file inside {root}")
    return root.joinpath(*rel.parts[:-1], f"{rel.parts[-1]}.npy")


def prepare_maps(root: Path, ids: Iterable[str], *, force: bool = False) -> None:
    """Before any work: every id names a file inside ``root``, and ``root`` holds no map we did not write
    (unless ``force``); then mark the folder as ours."""
    paths = [map_path(root, pid) for pid in ids]
    owned = tuple(str(p.relative_to(root)) for p in paths)
    check_out_dir(root, owned, lambda d: (d / MARKER).is_file(), flag="--maps", force=force)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("anomaly maps written by differad predict --backend diff\n", encoding="utf-8")


def write_map(root: Path, pid: str, amap: np.ndarray) -> Path:
    path = map_path(root, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(amap, dtype=np.float32), allow_pickle=False)
    atomic_write(path, buf.getvalue())
    return path
