"""Build pair records from real datasets: each target gets the top-k most similar normal references.

Each layout (``pair/layouts/``) reads one dataset as it unpacks and yields categories: a pool of normal
images and the targets, with their masks, annotated boxes, camera view or given reference. Here the
references are retrieved (per category, and per camera view where the dataset has views; never the target
itself), the defect regions become the record's one box under the ``--multi`` policy, and the records are
written. The record keeps the region count as ``n_components``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.errors import BadInput
from differad_cli.core.images import ImageError, image_size
from differad_cli.core.io import check_out_path
from differad_cli.core.records import Pair, write_pairs
from differad_cli.pair.config import LAYOUTS, MULTI, SPLITS, PairConfig
from differad_cli.pair.layouts import LAYOUT_MODULES, detect, triplets
from differad_cli.pair.layouts.base import Category, Target, record_id, target_box
from differad_cli.pair.retrieval import EMBEDDERS, EmbeddingCache, get_embedder, topk_cosine

# ---------------------------------------------------------------------------------------------- layouts


def _check(cats: list[Category], layout: str, split: str, root: Path) -> None:
    if not cats:
        raise BadInput(
            f"{root} does not match the '{layout}' layout: expected {LAYOUT_MODULES[layout].EXPECTED}"
        )
    usable = []
    for c in cats:
        if not c.targets:
            console.warn(f"category '{c.name}' has no {split} images; skipped")
        elif c.given_refs:
            usable.append(c)
        elif not c.pool:
            console.warn(f"category '{c.name}' has no normal reference images; skipped")
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


def _validate(cfg: PairConfig) -> Path:
    root = Path(cfg.data)
    if not root.is_dir():
        raise BadInput(f"--data {root}: not a folder")
    check_out_path(cfg.out)  # before any work; an image path (an input, perhaps) is refused too
    for name, value, allowed in (
        ("layout", cfg.layout, LAYOUTS), ("split", cfg.split, SPLITS), ("multi", cfg.multi, MULTI),
        ("embedder", cfg.embedder, EMBEDDERS),
    ):  # fmt: skip
        if value not in allowed:
            raise BadInput(f"unknown {name} '{value}' (expected one of: {', '.join(allowed)})")
    if cfg.k < 1:
        raise BadInput("--k must be at least 1")
    if cfg.embedder == "clip" and cfg.clip_model is None:
        raise BadInput("--embedder clip needs --clip-model PATH (a local CLIP folder; nothing is downloaded)")
    return root


# ---------------------------------------------------------------------------------------------- retrieval


def _retrieve(c: Category, k: int, embed) -> list[tuple[list[Path], float | None]]:
    """(references best first, best similarity) per target: the given reference, or the top-k of the pool
    images of the target's own camera view (the whole pool without views), the target itself excluded."""
    out: list[tuple[list[Path], float | None]] = [([], None)] * len(c.targets)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, t in enumerate(c.targets):
        if t.ref is not None:
            out[i] = ([t.ref], None)
        else:
            groups[t.view if c.pool_views is not None else None].append(i)
    if not groups:
        return out
    pool_vecs = embed(c.pool)
    views = c.pool_views if c.pool_views is not None else [None] * len(c.pool)
    index = {p: j for j, p in enumerate(c.pool)}
    for view, members in groups.items():
        cols = [j for j, v in enumerate(views) if c.pool_views is None or v == view]
        if not cols:
            console.warn(f"{c.name}: no normal image of view {view}; {len(members)} target(s) skipped")
            continue
        local = {j: n for n, j in enumerate(cols)}
        targets = [c.targets[i].path for i in members]
        exclude = np.array([local.get(index.get(p, -1), -1) for p in targets]) if c.self_ref else None
        qvecs = pool_vecs[[index[p] for p in targets]] if c.self_ref else embed(targets)
        idx, sims = topk_cosine(qvecs, pool_vecs[cols], k, exclude=exclude)
        for i, row, srow in zip(members, idx, sims, strict=True):
            if len(row):
                out[i] = ([c.pool[cols[j]] for j in row], float(srow[0]))
    return out


# ---------------------------------------------------------------------------------------------- build


def build_pairs(cfg: PairConfig) -> list[Pair]:
    """Discover the layout's images, retrieve references, box the defects; raises BadInput on a mismatch."""
    root = _validate(cfg)
    layout = cfg.layout
    if layout == "auto":
        layout = detect(root)
        console.info(f"layout: {layout} (detected)")
    if layout == "triplets":
        pairs = triplets.read(root, cfg.multi)
        _summary(pairs, {}, Counter())
        return pairs
    cats = LAYOUT_MODULES[layout].read(root, cfg.split)
    _check(cats, layout, cfg.split, root)
    embedder = get_embedder(cfg.embedder, clip_model=cfg.clip_model)
    cache = EmbeddingCache(Path(cfg.out).resolve().parent, embedder) if cfg.cache else None

    def embed(paths: list[Path]) -> np.ndarray:
        return cache.embed(paths) if cache is not None else embedder.embed_paths(paths)

    pairs: list[Pair] = []
    top1: dict[str, float] = {}
    skipped: Counter[str] = Counter()
    for c in cats:
        found = _retrieve(c, cfg.k, embed)
        sims = [s for _, s in found if s is not None]
        if sims:
            top1[c.name] = float(np.mean(sims))
        cat_root = c.root or (root if root.name == c.name and len(cats) == 1 else root / c.name)
        rows = zip(c.targets, found, strict=True)
        for t, (refs, sim) in console.progress(rows, total=len(c.targets), desc=c.name, unit="pair"):
            if not refs:
                skipped["no reference of the same view"] += 1
                continue
            p = _record(c, t, refs, sim, cfg.multi, cat_root, skipped)
            if p is not None:
                pairs.append(p)
    if cache is not None:
        cache.save()
        console.debug(f"embedding cache: {cache.hits} hit(s) in {cache.path}")
    _summary(pairs, top1, skipped)
    return pairs


def _record(
    c: Category, t: Target, refs: list[Path], sim: float | None, multi: str, cat_root: Path, skipped: Counter
) -> Pair | None:
    try:
        w, h = image_size(t.path)
        box, ncomp = target_box(t, w, h, c.name, multi)
    except ImageError as e:  # one unreadable file never aborts a long run
        skipped["unreadable"] += 1
        console.warn(str(e))
        return None
    if box is None:
        skipped["several defects (--multi drop)"] += 1
        return None
    if t.anomalous and box == ZERO_BOX:
        console.warn(f"{c.name}: mask of {t.path.name} is empty; recorded as normal")
    extra: dict = {"n_components": ncomp}
    if sim is not None:
        extra["ref_similarity"] = round(sim, 4)
    if t.view is not None:
        extra["view"] = t.view
    return Pair(
        id=record_id(c.name, cat_root, t.path),
        ref=refs[0], tgt=t.path, mask=t.mask, box=box, label=int(box != ZERO_BOX),
        width=w, height=h, category=c.name, subset=t.subset, refs=refs, extra=extra,
    )  # fmt: skip


def _summary(pairs: list[Pair], top1: dict[str, float], skipped: Counter) -> None:
    by_cat: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_cat[p.category].append(p)
    for cat, ps in sorted(by_cat.items()):
        n_ano = sum(p.label for p in ps)
        sim = f", mean top-1 similarity {top1[cat]:.3f}" if cat in top1 else ""
        console.info(f"{cat}: {len(ps)} pair(s), {n_ano} anomalous, {len(ps) - n_ano} normal{sim}")
    n_ano = sum(p.label for p in pairs)
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    console.info(
        f"total: {len(pairs)} target(s), {n_ano} anomalous, {len(pairs) - n_ano} normal"
        + (f"; skipped {sum(skipped.values())} ({why})" if skipped else "")
    )


def run_pair(cfg: PairConfig) -> list[Pair]:
    """Build the pairs and write them atomically to ``cfg.out``."""
    pairs = build_pairs(cfg)
    write_pairs(cfg.out, pairs)
    console.info(f"wrote {len(pairs)} pair(s) to {cfg.out}")
    return pairs
