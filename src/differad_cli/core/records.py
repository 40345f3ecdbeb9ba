"""The pair-record and prediction-record contract (docs/formats.md): the one place that reads and writes
JSONL manifests.

Paths inside a manifest are relative to the manifest's folder (or absolute); in memory they are absolute.
Unknown keys are kept in ``extra`` and written back unchanged, so every stage preserves them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core.boxes import ZERO_BOX, IntBox
from differad_cli.core.errors import BadInput
from differad_cli.core.jsonl import RecordError, dumps, iter_jsonl, short, write_jsonl  # noqa: F401 (re-exported)

PAIR_KEYS = (
    "id", "ref", "tgt", "mask", "box", "label", "width", "height",
    "category", "subset", "defect_type", "refs", "description",
)  # fmt: skip
PRED_KEYS = ("id", "box", "valid", "text", "score")
MAX_REPORTED = 10
MAX_COORD = 2**31 - 1  # coordinates and sizes beyond this are no image's (and overflow float conversions)
PATH_MAX = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------------------------------------- paths


def _resolve(value: Any, root: Path, key: str, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise RecordError(f"{where}: '{key}' must be a non-empty path string")
    if len(value) > PATH_MAX or _CONTROL.search(value):  # NUL, newline...: no file of a dataset
        raise RecordError(f"{where}: '{key}' is not a usable path: {short(value)}")
    p = Path(value)
    return p if p.is_absolute() else root / p


def _relative(p: Path, root: Path | None, memo: dict[str, str] | None = None) -> str:
    if root is None:
        return str(p)
    try:
        return Path(os.path.relpath(p, root)).as_posix() if _under(p, root, memo) else str(p)
    except ValueError:
        return str(p)


def _real(p: Path, memo: dict[str, str] | None) -> str:
    """``p`` with symlinks resolved; with ``memo`` a folder is resolved once per write (a 100k-record
    manifest would otherwise resolve every path component of every path)."""
    if memo is None:
        return str(p.resolve())
    s = os.path.abspath(p)
    if os.path.islink(s):
        return os.path.realpath(s)
    head, tail = os.path.split(s)
    if head not in memo:
        memo[head] = os.path.realpath(head)
    return os.path.join(memo[head], tail)


def _under(p: Path, root: Path, memo: dict[str, str] | None = None) -> bool:
    if memo is None:
        top = str(root.resolve())
    else:
        top = memo.setdefault("", str(root.resolve()))  # the one root of this write
    real = _real(p, memo)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _box(value: Any, where: str, key: str = "box") -> IntBox:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise RecordError(f"{where}: '{key}' must be a list of 4 numbers [x1, y1, x2, y2]")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecordError(f"{where}: '{key}' must hold 4 finite numbers, got {short(value)}")
        if abs(v) > MAX_COORD:
            raise RecordError(f"{where}: '{key}' coordinate {short(v)} is out of range")
        out.append(round(v))
    return (out[0], out[1], out[2], out[3])


# ---------------------------------------------------------------------------------------------- pairs


@dataclass
class Pair:
    """One reference/target pair. ``box`` is in target-image pixels, x2/y2 exclusive."""

    id: str
    ref: Path
    tgt: Path
    box: IntBox
    label: int
    width: int
    height: int
    mask: Path | None = None
    category: str = "default"
    subset: str | None = None
    refs: list[Path] | None = None
    description: str | None = None
    defect_type: str | None = None  # the dataset's defect class of an anomalous target (folder or label)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        return self.label == 1

    @classmethod
    def from_dict(cls, d: dict, root: Path, where: str = "record") -> Pair:
        """Validate one record against the contract; ``root`` is the manifest's folder."""
        for key in ("id", "ref", "tgt", "box"):
            if key not in d:
                raise RecordError(f"{where}: missing required key '{key}'")
        rid = d["id"]
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
            raise RecordError(f"{where}: 'id' must be a non-empty string")
        box = _box(d["box"], where)
        zero = box == ZERO_BOX
        label = d.get("label", 0 if zero else 1)
        if label not in (0, 1) or isinstance(label, bool):
            raise RecordError(f"{where}: 'label' must be 0 or 1, got {short(label)}")
        if label == 0 and not zero:
            raise RecordError(f"{where}: normal record (label 0) must have the zero box, got {list(box)}")
        if label == 1 and zero:
            raise RecordError(f"{where}: anomalous record (label 1) has the zero box")
        if not zero and (box[2] <= box[0] or box[3] <= box[1] or box[0] < 0 or box[1] < 0):
            raise RecordError(f"{where}: degenerate or negative box {list(box)}")
        tgt = _resolve(d["tgt"], root, "tgt", where)
        width, height = d.get("width"), d.get("height")
        if width is None or height is None:
            from differad_cli.core.images import image_size

            width, height = image_size(tgt)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_COORD for v in (width, height)
        ):
            raise RecordError(f"{where}: 'width'/'height' must be positive integers (at most {MAX_COORD})")
        if box[2] > width or box[3] > height:
            raise RecordError(f"{where}: box {list(box)} lies outside the {width}x{height} target image")
        mask = d.get("mask")
        refs = d.get("refs")
        if refs is not None and not isinstance(refs, list):
            raise RecordError(f"{where}: 'refs' must be a list of paths")
        desc = d.get("description")
        defect = d.get("defect_type")
        if defect is not None and (not isinstance(defect, str) or not defect):
            raise RecordError(f"{where}: 'defect_type' must be a non-empty string or null")
        return cls(
            id=str(rid),
            ref=_resolve(d["ref"], root, "ref", where),
            tgt=tgt,
            box=box,
            label=int(label),
            width=width,
            height=height,
            mask=None if mask is None else _resolve(mask, root, "mask", where),
            category=str(d.get("category") or "default"),
            subset=None if d.get("subset") is None else str(d["subset"]),
            refs=None if refs is None else [_resolve(r, root, "refs", where) for r in refs],
            description=None if desc is None else str(desc),
            defect_type=defect,
            extra={k: v for k, v in d.items() if k not in PAIR_KEYS},
        )

    def to_dict(self, root: Path | None = None, *, memo: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON object; paths under ``root`` (the manifest's folder) are written relative to it
        (``memo``: resolved folders shared by the records of one write, for one root)."""
        d: dict[str, Any] = {
            "id": self.id,
            "ref": _relative(self.ref, root, memo),
            "tgt": _relative(self.tgt, root, memo),
            "mask": None if self.mask is None else _relative(self.mask, root, memo),
            "box": list(self.box),
            "label": self.label,
            "width": self.width,
            "height": self.height,
            "category": self.category,
        }
        if self.subset is not None:
            d["subset"] = self.subset
        if self.defect_type is not None:
            d["defect_type"] = self.defect_type
        if self.refs is not None:
            d["refs"] = [_relative(r, root, memo) for r in self.refs]
        if self.description is not None:
            d["description"] = self.description
        d.update(self.extra)
        return d


def read_pairs(path: str | os.PathLike[str], *, allow_empty: bool = False) -> list[Pair]:
    """Read and validate a pair manifest. All problems are collected and reported together (exit 2)."""
    p = Path(path)
    root = p.resolve().parent
    pairs: list[Pair] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(p):
        where = f"{p}:{lineno}"
        try:
            pair = Pair.from_dict(obj, root, where)
        except RecordError as e:
            errors.append(str(e))
            continue
        if pair.id in seen:
            errors.append(f"{where}: duplicate id {short(pair.id)} (first at line {seen[pair.id]})")
            continue
        seen[pair.id] = lineno
        pairs.append(pair)
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED])
        more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
        raise RecordError(f"{len(errors)} invalid record(s) in {p}: {shown}{more}")
    if not pairs and not allow_empty:
        raise BadInput(f"no pair records in {p}")
    return pairs


def write_pairs(path: str | os.PathLike[str], pairs: Iterable[Pair]) -> None:
    p = Path(path)
    root = p.resolve().parent
    memo: dict[str, str] = {}
    write_jsonl(p, (pair.to_dict(root, memo=memo) for pair in pairs))


def check_files(pairs: Iterable[Pair], *, open_images: bool = False) -> list[str]:
    """Problems with the files records point to (missing, unreadable); empty when all is well."""
    from differad_cli.core.errors import ImageError
    from differad_cli.core.images import image_size

    problems: list[str] = []
    for pair in pairs:
        for key, path in (("ref", pair.ref), ("tgt", pair.tgt), ("mask", pair.mask)):
            if path is None:
                continue
            if not os.path.isfile(path):  # False (not OSError) for a name too long or holding NUL
                problems.append(f"{pair.id}: {key} not found: {path}")
            elif open_images:
                try:
                    image_size(path)
                except ImageError as e:
                    problems.append(f"{pair.id}: {e}")
    return problems


# ---------------------------------------------------------------------------------------------- predictions


@dataclass
class Prediction:
    """A model's answer for one pair, converted to target-image pixels. Invalid answers score IoU 0."""

    id: str
    box: IntBox
    valid: bool
    text: str | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        return self.valid and self.box != ZERO_BOX

    @classmethod
    def from_dict(cls, d: dict, where: str = "prediction") -> Prediction:
        if "id" not in d:
            raise RecordError(f"{where}: missing required key 'id'")
        valid = d.get("valid", True)
        if not isinstance(valid, bool):
            raise RecordError(f"{where}: 'valid' must be true or false")
        raw = d.get("box")
        box: IntBox = ZERO_BOX
        if raw is None:
            valid = False
        else:
            try:
                box = _box(raw, where)
            except RecordError:
                valid, box = False, ZERO_BOX  # NaN/inf/garbage coordinates: an invalid prediction
        score = d.get("score")
        text = d.get("text")
        return cls(
            id=str(d["id"]),
            box=box,
            valid=bool(valid),
            text=None if text is None else str(text),
            score=_score(score),
            extra={k: v for k, v in d.items() if k not in PRED_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "box": list(self.box), "valid": self.valid, "text": self.text}
        if self.score is not None:
            d["score"] = self.score
        d.update(self.extra)
        return d


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300:
        return None
    return float(value) if math.isfinite(value) else None


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    p = Path(path)
    return [Prediction.from_dict(obj, f"{p}:{lineno}") for lineno, obj in iter_jsonl(p)]


def write_predictions(path: str | os.PathLike[str], preds: Iterable[Prediction]) -> None:
    write_jsonl(path, (pr.to_dict() for pr in preds))


def is_prediction_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds prediction records only (a file of ours that a new run may replace)."""
    try:
        rows = list(iter_jsonl(path))
        return bool(rows) and all("id" in obj and "valid" in obj and "box" in obj for _, obj in rows)
    except (BadInput, OSError, RecursionError):
        return False
