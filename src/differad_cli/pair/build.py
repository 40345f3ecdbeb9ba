"""Build pair records from real datasets: each target gets the top-k most similar normal references.

Layouts (ROOT may be one category folder or a folder holding several):

- ``mvtec``: ``<cat>/train/good/`` normal pool, ``<cat>/test/<defect>/`` targets (``good`` = normal),
  ``<cat>/ground_truth/<defect>/<stem>_mask.png`` masks (MVTec AD; VisA / AD-DualDiff once arranged so).
- ``folder``: ``<cat>/normal/`` normal pool, ``<cat>/test/`` targets (flat or in sub-folders naming the
  subset), ``<cat>/mask/`` masks mirroring ``test/`` (same relative path and stem, optional ``_mask``
  suffix). A target without a mask (or with an empty one) is normal.
- ``triplets``: ready-made pairs ``ref/``, ``tgt/``, ``mask/`` matched by file stem (COCO-Inpainted-style);
  a missing mask means a normal pair. No retrieval.

The box is the tight box of the mask's largest connected component (single-anomaly setting); the record
keeps the component count as ``n_components``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.errors import BadInput
from differad_cli.core.images import image_size
from differad_cli.core.io import check_out_path
from differad_cli.core.records import Pair, write_pairs
from differad_cli.pair.config import LAYOUTS, SPLITS, PairConfig
from differad_cli.pair.layouts import LAYOUT_MODULES, triplets
from differad_cli.pair.layouts.base import (
    Category,
    record_id,
    target_box,
)
from differad_cli.pair.retrieval import EMBEDDERS, EmbeddingCache, get_embedder, topk_cosine

# ---------------------------------------------------------------------------------------------- layouts


def _check(cats: list[Category], layout: str, split: str, root: Path) -> None:
    if not cats:
        raise BadInput(
            f"{root} does not match the '{layout}' layout: expected {LAYOUT_MODULES[layout].EXPECTED}"
        )
    usable = []
    for c in cats:
        if not c.pool:
            console.warn(f"category '{c.name}' has no normal reference images; skipped")
        elif not c.targets:
            console.warn(f"category '{c.name}' has no {split} images; skipped")
        elif c.self_ref and len(c.pool) < 2:
            console.warn(
                f"category '{c.name}' has a single normal image (cannot be its own reference); skipped"
            )
        else:
            usable.append(c)
    if not usable:
        raise BadInput(
            f"no usable images under {root} for layout '{layout}' (split {split}): "
            f"expected {LAYOUT_MODULES[layout].EXPECTED}"
        )
    cats[:] = usable


# ---------------------------------------------------------------------------------------------- boxes


# ---------------------------------------------------------------------------------------------- build


def build_pairs(cfg: PairConfig) -> list[Pair]:
    """Discover the layout's images, retrieve references, box the masks; raises BadInput on a mismatch."""
    root = Path(cfg.data)
    if not root.is_dir():
        raise BadInput(f"--data {root}: not a folder")
    check_out_path(cfg.out)  # before any work; an image path (an input, perhaps) is refused too
    if cfg.layout not in LAYOUTS:
        raise BadInput(f"unknown layout '{cfg.layout}' (expected one of: {', '.join(LAYOUTS)})")
    if cfg.split not in SPLITS:
        raise BadInput(f"unknown split '{cfg.split}' (expected one of: {', '.join(SPLITS)})")
    if cfg.k < 1:
        raise BadInput("--k must be at least 1")
    if cfg.embedder not in EMBEDDERS:
        raise BadInput(f"unknown embedder '{cfg.embedder}' (expected one of: {', '.join(EMBEDDERS)})")
    if cfg.embedder == "clip" and cfg.clip_model is None:
        raise BadInput("--embedder clip needs --clip-model PATH (a local CLIP folder; nothing is downloaded)")
    if cfg.layout == "triplets":
        pairs = triplets.read(root)
        _summary(pairs, {})
        return pairs
    cats = LAYOUT_MODULES[cfg.layout].read(root, cfg.split)
    _check(cats, cfg.layout, cfg.split, root)
    embedder = get_embedder(cfg.embedder, clip_model=cfg.clip_model)
    cache = EmbeddingCache(Path(cfg.out).resolve().parent, embedder) if cfg.cache else None

    def embed(paths: list[Path]) -> np.ndarray:
        return cache.embed(paths) if cache is not None else embedder.embed_paths(paths)

    pairs: list[Pair] = []
    top1: dict[str, float] = {}
    for c in cats:
        pool_vecs = embed(c.pool)
        if c.self_ref:
            qvecs, exclude = pool_vecs, np.arange(len(c.pool))
        else:
            qvecs, exclude = embed([t.path for t in c.targets]), None
        idx, sims = topk_cosine(qvecs, pool_vecs, cfg.k, exclude=exclude)
        top1[c.name] = float(sims[:, 0].mean()) if sims.size else 0.0
        cat_root = root if root.name == c.name and len(cats) == 1 else root / c.name
        rows = zip(c.targets, idx, sims, strict=False)
        for t, row, srow in console.progress(rows, total=len(c.targets), desc=c.name, unit="pair"):
            w, h = image_size(t.path)
            box, ncomp = target_box(t, w, h, c.name)
            if t.anomalous and box == ZERO_BOX:
                console.warn(f"{c.name}: mask of {t.path.name} is empty; recorded as normal")
            refs = [c.pool[j] for j in row]
            pairs.append(
                Pair(
                    id=record_id(c.name, cat_root, t.path),
                    ref=refs[0], tgt=t.path, mask=t.mask, box=box, label=int(box != ZERO_BOX),
                    width=w, height=h, category=c.name, subset=t.subset, refs=refs,
                    extra={"n_components": ncomp, "ref_similarity": round(float(srow[0]), 4)},
                )
            )  # fmt: skip
    if cache is not None:
        cache.save()
        console.debug(f"embedding cache: {cache.hits} hit(s) in {cache.path}")
    _summary(pairs, top1)
    return pairs


def _summary(pairs: list[Pair], top1: dict[str, float]) -> None:
    by_cat: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_cat[p.category].append(p)
    for cat, ps in sorted(by_cat.items()):
        n_ano = sum(p.label for p in ps)
        sim = f", mean top-1 similarity {top1[cat]:.3f}" if cat in top1 else ""
        console.info(f"{cat}: {len(ps)} pair(s), {n_ano} anomalous, {len(ps) - n_ano} normal{sim}")


def run_pair(cfg: PairConfig) -> list[Pair]:
    """Build the pairs and write them atomically to ``cfg.out``."""
    pairs = build_pairs(cfg)
    write_pairs(cfg.out, pairs)
    console.info(f"wrote {len(pairs)} pair(s) to {cfg.out}")
    return pairs
