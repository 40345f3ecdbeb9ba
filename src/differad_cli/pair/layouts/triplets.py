"""Ready-made triplets: ``ref/``, ``tgt/``, ``mask/`` matched by file stem (COCO-Inpainted-style).

The reference is given, so no retrieval runs; a missing mask means a normal pair."""

from __future__ import annotations

from pathlib import Path

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.errors import BadInput
from differad_cli.core.images import image_size
from differad_cli.core.records import Pair
from differad_cli.pair.layouts.base import (
    Target,
    images_in,
    mask_for,
    target_box,
    unused_masks,
    warn_list,
)

EXPECTED = "ROOT/ref/, ROOT/tgt/ and optionally ROOT/mask/ with matching file names"


def matches(root: Path) -> bool:
    return (root / "ref").is_dir() and (root / "tgt").is_dir()


def read(root: Path, multi: str = "largest") -> list[Pair]:
    ref_dir, tgt_dir, mask_dir = root / "ref", root / "tgt", root / "mask"
    if not ref_dir.is_dir() or not tgt_dir.is_dir():
        raise BadInput(f"{root} does not match the 'triplets' layout: expected {EXPECTED}")
    refs = {p.relative_to(ref_dir).with_suffix(""): p for p in images_in(ref_dir)}
    cat = root.resolve().name
    pairs, no_ref, used, dropped = [], [], set(), []
    for t in console.progress(images_in(tgt_dir), desc="triplets", unit="pair"):
        rel = t.relative_to(tgt_dir)
        ref = refs.get(rel.with_suffix(""))
        if ref is None:
            no_ref.append(rel.as_posix())
            continue
        mask = mask_for(mask_dir, rel)
        if mask is not None:
            used.add(mask.resolve())
        w, h = image_size(t)
        box, ncomp = target_box(Target(t, None, mask, mask is not None), w, h, cat, multi)
        if box is None:
            dropped.append(rel.as_posix())
            continue
        pairs.append(
            Pair(
                id=f"{cat}/{rel.with_suffix('').as_posix()}",
                ref=ref, tgt=t, mask=mask, box=box, label=int(box != ZERO_BOX), width=w, height=h,
                category=cat, subset="triplets", refs=[ref], extra={"n_components": ncomp},
            )
        )  # fmt: skip
    warn_list("target(s) without a matching reference skipped", no_ref)
    warn_list("target(s) with several defects dropped (--multi drop)", dropped, refuse_if_strict=False)
    warn_list("mask(s) without an image", unused_masks(mask_dir, used, cat))
    if not pairs:
        raise BadInput(f"no pairs found under {root}: expected {EXPECTED}")
    return pairs
