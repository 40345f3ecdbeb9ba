"""Build pair records from real datasets: each target gets the top-k most similar normal references.

Each layout (``pair/layouts/``) reads one dataset as it unpacks and yields categories: a pool of normal
images and the targets, with their masks, annotated boxes, camera view or given reference. Here the
references are retrieved (per category, and per camera view where the dataset has views; never the target
itself), the defect regions become the record's one box under the ``--multi`` policy, and the records are
written. The record keeps the region count as ``n_components`` and an anomalous target's defect class (its
folder under test/, or the dataset's label) as ``defect_type``. With ``--benchmark`` the sources of a recipe
(``pair/benchmark.py``) are read in turn into one manifest, each category renamed and given its subset.
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
from differad_cli.pair.benchmark import Source, load_benchmark, missing_categories, present_sources
from differad_cli.pair.config import LAYOUTS, MULTI, SPLITS, PairConfig
from differad_cli.pair.layouts import LAYOUT_MODULES, detect, triplets
from differad_cli.pair.layouts.base import (
    Category,
    Target,
    checking,
    record_id,
    strict,
    target_box,
    warn_list,
)
from differad_cli.pair.retrieval import EMBEDDERS, EmbeddingCache, get_embedder, topk_cosine

# ---------------------------------------------------------------------------------------------- layouts


def _skip(msg: str, warning: str | None = None) -> None:
    """Input left out: a warning (``warning``, else ``msg``), or under --strict bad input -- the one rule
    for every file or record `pair` leaves out; the caller then counts or records what it skipped."""
    if strict():
        raise BadInput(f"--strict: {msg}") from None
    console.warn(warning or msg)


def _check(cats: list[Category], layout: str, split: str, root: Path) -> None:
    if not cats:
        raise BadInput(
            f"{root} does not match the '{layout}' layout: expected {LAYOUT_MODULES[layout].EXPECTED}"
        )
    usable = []
    for c in cats:
        if not c.targets:
            _skip(f"category '{c.name}' has no {split} images; skipped")
        elif c.given_refs:
            usable.append(c)
        elif not c.pool:
            _skip(f"category '{c.name}' has no normal reference images; skipped")
        elif c.self_ref and len(c.pool) < 2:
            _skip(f"category '{c.name}' has a single normal image (cannot be its own reference); skipped")
        else:
            usable.append(c)
    if not usable:
        raise BadInput(
            f"no usable images under {root} for layout '{layout}' (split {split}): "
            f"expected {LAYOUT_MODULES[layout].EXPECTED}"
        )
    cats[:] = usable


def _validate(cfg: PairConfig) -> list[Source]:
    if (cfg.data is None) == (cfg.benchmark is None):
        raise BadInput("give either --data DIR (one dataset) or --benchmark RECIPE (several), not both")
    if cfg.benchmark is None and (cfg.data_root is not None or cfg.skip_missing):
        raise BadInput("--data-root and --skip-missing go with --benchmark")
    if cfg.data is not None and not Path(cfg.data).is_dir():
        raise BadInput(f"--data {cfg.data}: not a folder")
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
    if cfg.benchmark is None:
        return [Source(Path(cfg.data), cfg.layout)]  # type: ignore[arg-type]
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise BadInput(f"--data-root {cfg.data_root}: not a folder")
    return present_sources(load_benchmark(Path(cfg.benchmark), cfg.data_root), cfg.skip_missing)


# ---------------------------------------------------------------------------------------------- retrieval


def _retrieve(c: Category, k: int, embed, unreadable: set[Path]) -> list[tuple[list[Path], float | None]]:
    """(references best first, best similarity) per target: the given reference, or the top-k of the pool
    images of the target's own camera view (the whole pool without views), the target itself and unreadable
    images (``embed`` adds them to ``unreadable``) excluded."""
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
        cols = [
            j
            for j, v in enumerate(views)
            if (c.pool_views is None or v == view) and c.pool[j] not in unreadable
        ]
        if not cols:
            _skip(f"{c.name}: no normal image of view {view}; {len(members)} target(s) skipped")
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
    sources = _validate(cfg)
    state: dict = {}
    unreadable: set[Path] = set()

    def embed_now(paths: list[Path]) -> np.ndarray:
        if not state:  # the embedder (and its cache) only when some source needs retrieval
            state["embedder"] = get_embedder(cfg.embedder, clip_model=cfg.clip_model)
            cache_dir = Path(cfg.out).resolve().parent
            state["cache"] = EmbeddingCache(cache_dir, state["embedder"]) if cfg.cache else None
        cache = state["cache"]
        return cache.embed(paths) if cache is not None else state["embedder"].embed_paths(paths)

    def embed(paths: list[Path]) -> np.ndarray:
        """Vectors of ``paths``; an unreadable image gets a zero row and joins ``unreadable`` (one bad file
        never aborts a long run), or under --strict is refused."""
        try:
            return embed_now(paths)
        except ImageError:
            rows = []
            for p in paths:
                try:
                    rows.append(embed_now([p])[0])
                except ImageError as e:
                    _skip(f"unreadable image: {e}", str(e))
                    unreadable.add(p)
                    rows.append(np.zeros(state["embedder"].dim, dtype=np.float32))
            return np.stack(rows).astype(np.float32)

    pairs: list[Pair] = []
    top1: dict[str, float] = {}
    skipped: Counter[str] = Counter()
    with checking(cfg.strict) as checks:
        for src in sources:
            pairs += _source_pairs(src, cfg, embed, unreadable, top1, skipped)
        warn_list("non-image file(s) in image folders ignored", sorted(map(str, checks.stray)))
    if state.get("cache") is not None:
        state["cache"].save()
        console.debug(f"embedding cache: {state['cache'].hits} hit(s) in {state['cache'].path}")
    dups = [i for i, n in Counter(p.id for p in pairs).items() if n > 1]
    if dups:
        raise BadInput(
            f"{len(dups)} record id(s) built twice, e.g. {dups[0]}: give the categories distinct names"
        )
    _summary(pairs, top1, skipped)
    return pairs


def _source_pairs(
    src: Source, cfg: PairConfig, embed, unreadable: set[Path], top1: dict[str, float], skipped: Counter
) -> list[Pair]:
    """The records of one dataset folder (one --data, or one source of a benchmark recipe)."""
    root, layout = src.root, src.layout
    if layout == "auto":
        layout = detect(root)
        console.info(f"layout: {layout} (detected)" + (f" for {root}" if src.categories else ""))
    if layout == "triplets":
        found = triplets.read(root, cfg.multi)
        missing_categories(src, sorted({p.category for p in found}), cfg.skip_missing)
        return [p for p in (_rename(src, p) for p in found) if p is not None]
    cats = LAYOUT_MODULES[layout].read(root, cfg.split, src.categories)
    if src.categories is not None:
        missing_categories(src, [c.name for c in cats], cfg.skip_missing)
    _check(cats, layout, cfg.split, root)
    pairs: list[Pair] = []
    for c in cats:
        found = _retrieve(c, cfg.k, embed, unreadable)
        cat_root = c.root or (root if root.name == c.name and len(cats) == 1 else root / c.name)
        rows = zip(c.targets, found, strict=True)
        for t, (refs, sim) in console.progress(rows, total=len(c.targets), desc=c.name, unit="pair"):
            if t.path in unreadable:
                skipped["unreadable"] += 1
                continue
            if not refs:
                skipped["no reference of the same view"] += 1
                continue
            p = _record(c, t, refs, sim, cfg.multi, cat_root, skipped)
            p = None if p is None else _rename(src, p)
            if p is not None:
                pairs.append(p)
        sims = [s for _, s in found if s is not None]
        if sims:
            top1[src.take(c.name).name] = float(np.mean(sims))  # type: ignore[union-attr]
    return pairs


def _rename(src: Source, p: Pair) -> Pair | None:
    """A benchmark's name and subset for the record (its id re-prefixed); unchanged without a recipe."""
    if src.categories is None:
        return p
    take = src.take(p.category)
    if take is None:
        return None
    if p.id.startswith(f"{p.category}/"):
        p.id = f"{take.name}/{p.id[len(p.category) + 1 :]}"
    p.category, p.subset = take.name, take.subset
    return p


def _record(
    c: Category, t: Target, refs: list[Path], sim: float | None, multi: str, cat_root: Path, skipped: Counter
) -> Pair | None:
    try:
        w, h = image_size(t.path)
        box, ncomp = target_box(t, w, h, c.name, multi)
    except ImageError as e:  # one unreadable file never aborts a long run (unless --strict)
        _skip(f"unreadable image: {e}", str(e))
        skipped["unreadable"] += 1
        return None
    if box is None:
        skipped["several defects (--multi drop)"] += 1
        return None
    if t.anomalous and box == ZERO_BOX:
        _skip(f"{c.name}: mask of {t.path.name} is empty; recorded as normal")
    extra: dict = {"n_components": ncomp}
    if sim is not None:
        extra["ref_similarity"] = round(sim, 4)
    if t.view is not None:
        extra["view"] = t.view
    return Pair(
        id=record_id(c.name, cat_root, t.path),
        ref=refs[0], tgt=t.path, mask=t.mask, box=box, label=int(box != ZERO_BOX),
        width=w, height=h, category=c.name, subset=t.subset, refs=refs, extra=extra,
        defect_type=t.subset if box != ZERO_BOX and t.subset not in (None, "good") else None,
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
