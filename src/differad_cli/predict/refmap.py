"""Line mode's reference for each target: one golden reference (``--ref``), or one per product category for a
mixed line (``--ref-map CATEGORY=PATH``, repeatable, or a YAML file of ``category: path``), the category being
the name of the folder the target is in; ``--ref`` is then the reference of every other category.

Every reference is checked and decoded once, before the backend loads: one that cannot be read is bad input
(exit 2) before anything starts. Paths in a YAML file are relative to the file's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import image_size, load_rgb

YAML_SUFFIXES = (".yaml", ".yml")


def _category(name: str, where: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise BadInput(f"{where}: '{name}' is not a category (a target folder's name)")
    return name


def _yaml_map(path: Path) -> dict[str, Path]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BadInput(f"--ref-map {path}: cannot read it as YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise BadInput(f"--ref-map {path}: expected a mapping of category: reference path")
    out: dict[str, Path] = {}
    for key, value in data.items():
        if not isinstance(key, str):  # 01: x.png would silently become category "1"
            raise BadInput(f"--ref-map {path}: category {key!r} is not text; quote it ('{key}': ...)")
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"--ref-map {path}: category '{key}' needs a reference path, got {value!r}")
        out[_category(key, f"--ref-map {path}")] = path.parent / value.strip()
    return out


def parse_ref_map(specs: list[str]) -> dict[str, Path]:
    """Category -> reference path from ``--ref-map`` values: ``CATEGORY=PATH`` items and YAML files."""
    out: dict[str, Path] = {}
    for spec in specs:
        if Path(spec).suffix.lower() in YAML_SUFFIXES and "=" not in spec:
            if not Path(spec).is_file():
                raise BadInput(f"--ref-map {spec}: no such YAML file")
            entries = _yaml_map(Path(spec))
        elif "=" in spec:
            name, _, ref = spec.partition("=")
            if not ref.strip():
                raise BadInput(f"--ref-map {spec}: expected CATEGORY=PATH, the path is missing")
            entries = {_category(name.strip(), f"--ref-map {spec}"): Path(ref.strip())}
        else:
            raise BadInput(f"--ref-map {spec}: expected CATEGORY=PATH or a YAML file (.yaml/.yml)")
        for name, ref in entries.items():
            if name in out and out[name] != ref:
                raise BadInput(f"--ref-map: category '{name}' is given two references: {out[name]} and {ref}")
            out[name] = ref
    return out


def _decode(path: Path, label: str) -> np.ndarray:
    try:
        image_size(path)  # the header first: a missing or huge file says so without decoding
        return load_rgb(path)
    except ImageError as e:
        raise BadInput(f"{label}{path}: {e}") from None


@dataclass
class References:
    """The reference of each target, every distinct reference decoded once (``images``, by resolved path)."""

    default: Path | None
    by_category: dict[str, Path] = field(default_factory=dict)
    images: dict[Path, tuple[Path, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def load(cls, ref: Path | None, specs: list[str]) -> References:
        refs = cls(ref, parse_ref_map(specs))
        labelled = [("--ref ", ref)] if ref is not None else []
        labelled += [(f"--ref-map {name}=", path) for name, path in refs.by_category.items()]
        for label, path in labelled:
            key = path.resolve()
            if key not in refs.images:
                refs.images[key] = (path, _decode(path, label))
        return refs

    @staticmethod
    def category(tgt: Path) -> str:
        return Path(os.path.abspath(tgt)).parent.name

    def pick(self, tgt: Path) -> Path | None:
        """The target's reference; None for a category without one (and no --ref)."""
        return self.by_category.get(self.category(tgt), self.default)

    def missing(self, tgt: Path) -> str:
        """Why ``tgt`` has no reference, in one line."""
        known = ", ".join(sorted(self.by_category))
        return (
            f"no reference for its category '{self.category(tgt)}' (--ref-map has: {known}; no --ref default)"
        )
