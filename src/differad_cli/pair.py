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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from differad_cli import console
from differad_cli.boxes import ZERO_BOX, IntBox
from differad_cli.embed import EMBEDDERS, EmbeddingCache, get_embedder, topk_cosine
from differad_cli.errors import BadInput
from differad_cli.images import IMAGE_SUFFIXES, image_size, list_images, load_mask
from differad_cli.predict import check_out_path
from differad_cli.records import Pair, write_pairs

LAYOUTS = ("mvtec", "folder", "triplets")
SPLITS = ("test", "train")
MAX_LISTED = 10

EXPECTED = {
    "mvtec": "<category>/train/good/*.png, <category>/test/<defect>/*.png and "
    "<category>/ground_truth/<defect>/<stem>_mask.png (ROOT = a category folder or the folder holding them)",
    "folder": "<category>/normal/ (normal images), <category>/test/ (targets, optionally in subset folders) "
    "and <category>/mask/ (masks named like the targets) (ROOT = one category or the folder holding them)",
    "triplets": "ROOT/ref/, ROOT/tgt/ and optionally ROOT/mask/ with matching file names",
}


@dataclass
class PairConfig:
    data: Path = field(metadata={"help": "Dataset root (one category folder or a folder of categories)."})
    out: Path = field(metadata={"help": "Output pairs.jsonl; paths inside are written relative to it."})
    layout: str = field(default="mvtec", metadata={"help": "mvtec | folder | triplets."})
    split: str = field(
        default="test", metadata={"help": "test: targets are test images; train: normal images."}
    )
    k: int = field(default=8, metadata={"help": "References kept per target (the paper uses top-8)."})
    embedder: str = field(
        default="pixel", metadata={"help": "pixel (weight-free) | clip (needs clip_model)."}
    )
    clip_model: Path | None = field(default=None, metadata={"help": "Local CLIP folder for embedder=clip."})
    cache: bool = field(default=True, metadata={"help": "Cache embeddings next to the output."})


@dataclass
class _Target:
    path: Path
    subset: str | None
    mask: Path | None
    anomalous: bool  # expected from the folder (defect folder); the mask decides the final label


@dataclass
class _Category:
    name: str
    pool: list[Path]
    targets: list[_Target]
    self_ref: bool = False  # targets are the pool itself (split=train): never pick an image as its own ref


# ---------------------------------------------------------------------------------------------- layouts


def _images(folder: Path) -> list[Path]:
    return list_images(folder) if folder.is_dir() else []


def _mask_for(mask_dir: Path, rel: Path) -> Path | None:
    """The mask of target ``rel`` in ``mask_dir``: same relative stem, optional ``_mask``, any format."""
    base = mask_dir / rel.parent
    for stem in (f"{rel.stem}_mask", rel.stem):
        for suffix in (rel.suffix, *IMAGE_SUFFIXES):
            p = base / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _warn_list(what: str, items: list[str]) -> None:
    if items:
        shown = ", ".join(items[:MAX_LISTED])
        more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
        console.warn(f"{len(items)} {what}: {shown}{more}")


def _category_dirs(root: Path, marker_sets: tuple[tuple[str, ...], ...]) -> list[Path]:
    def is_cat(d: Path) -> bool:
        return any(all((d / m).is_dir() for m in markers) for markers in marker_sets)

    if is_cat(root):
        return [root]
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and is_cat(d))


def _unused_masks(mask_dir: Path, used: set[Path], cat: str) -> list[str]:
    return [f"{cat}/{p.relative_to(mask_dir.parent)}" for p in _images(mask_dir) if p.resolve() not in used]


def _mvtec(root: Path, split: str) -> list[_Category]:
    cats = []
    for d in _category_dirs(root, (("train",), ("test",))):
        pool = _images(d / "train" / "good")
        if split == "train":
            cats.append(
                _Category(d.name, pool, [_Target(p, "good", None, False) for p in pool], self_ref=True)
            )
            continue
        targets: list[_Target] = []
        no_mask: list[str] = []
        used: set[Path] = set()
        test = d / "test"
        for defect in sorted(x for x in test.iterdir() if x.is_dir()) if test.is_dir() else []:
            for p in _images(defect):
                if defect.name == "good":
                    targets.append(_Target(p, "good", None, False))
                    continue
                mask = _mask_for(d / "ground_truth" / defect.name, p.relative_to(defect))
                if mask is None:
                    no_mask.append(f"{d.name}/{p.relative_to(d)}")
                    continue
                used.add(mask.resolve())
                targets.append(_Target(p, defect.name, mask, True))
        _warn_list(f"defect image(s) without a mask skipped in {d.name}", no_mask)
        _warn_list("mask(s) without an image", _unused_masks(d / "ground_truth", used, d.name))
        cats.append(_Category(d.name, pool, targets))
    return cats


def _folder(root: Path, split: str) -> list[_Category]:
    cats = []
    for d in _category_dirs(root, (("normal", "test"), ("normal",))):
        pool = _images(d / "normal")
        if split == "train":
            cats.append(_Category(d.name, pool, [_Target(p, None, None, False) for p in pool], self_ref=True))
            continue
        test, mask_dir = d / "test", d / "mask"
        targets: list[_Target] = []
        used: set[Path] = set()
        for p in _images(test):
            rel = p.relative_to(test)
            mask = _mask_for(mask_dir, rel)
            if mask is not None:
                used.add(mask.resolve())
            subset = rel.parent.as_posix() if rel.parent != Path(".") else None
            targets.append(_Target(p, subset, mask, mask is not None))
        _warn_list("mask(s) without an image", _unused_masks(mask_dir, used, d.name))
        cats.append(_Category(d.name, pool, targets))
    return cats


def _check(cats: list[_Category], layout: str, split: str, root: Path) -> None:
    if not cats:
        raise BadInput(f"{root} does not match the '{layout}' layout: expected {EXPECTED[layout]}")
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
            f"expected {EXPECTED[layout]}"
        )
    cats[:] = usable


# ---------------------------------------------------------------------------------------------- boxes


def mask_component_box(mask: np.ndarray) -> tuple[IntBox, int]:
    """(box of the largest 8-connected component, number of components); the zero box for an empty mask."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return ZERO_BOX, 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    i = 1 + int(np.argmax(areas))  # ties: the first in scan order, deterministic
    x, y, w, h = (int(v) for v in stats[i, :4])
    return (x, y, x + w, y + h), n - 1


def _target_box(t: _Target, width: int, height: int, cat: str) -> tuple[IntBox, int]:
    if t.mask is None:
        return ZERO_BOX, 0
    m = load_mask(t.mask)
    if m.shape != (height, width):
        console.warn(
            f"{cat}: mask {t.mask.name} is {m.shape[1]}x{m.shape[0]}, image {width}x{height}; resized"
        )
        m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return mask_component_box(m)


def _record_id(cat: str, root_of_cat: Path, p: Path) -> str:
    try:
        rel = p.relative_to(root_of_cat).with_suffix("")
    except ValueError:
        rel = Path(p.stem)
    return f"{cat}/{rel.as_posix()}"


# ---------------------------------------------------------------------------------------------- build


def _triplets(root: Path) -> list[Pair]:
    ref_dir, tgt_dir, mask_dir = root / "ref", root / "tgt", root / "mask"
    if not ref_dir.is_dir() or not tgt_dir.is_dir():
        raise BadInput(f"{root} does not match the 'triplets' layout: expected {EXPECTED['triplets']}")
    refs = {p.relative_to(ref_dir).with_suffix(""): p for p in _images(ref_dir)}
    cat = root.resolve().name
    pairs, no_ref, used = [], [], set()
    for t in console.progress(_images(tgt_dir), desc="triplets", unit="pair"):
        rel = t.relative_to(tgt_dir)
        ref = refs.get(rel.with_suffix(""))
        if ref is None:
            no_ref.append(rel.as_posix())
            continue
        mask = _mask_for(mask_dir, rel)
        if mask is not None:
            used.add(mask.resolve())
        w, h = image_size(t)
        box, ncomp = _target_box(_Target(t, None, mask, mask is not None), w, h, cat)
        pairs.append(
            Pair(
                id=f"{cat}/{rel.with_suffix('').as_posix()}",
                ref=ref, tgt=t, mask=mask, box=box, label=int(box != ZERO_BOX), width=w, height=h,
                category=cat, subset="triplets", refs=[ref], extra={"n_components": ncomp},
            )
        )  # fmt: skip
    _warn_list("target(s) without a matching reference skipped", no_ref)
    _warn_list("mask(s) without an image", _unused_masks(mask_dir, used, cat))
    if not pairs:
        raise BadInput(f"no pairs found under {root}: expected {EXPECTED['triplets']}")
    return pairs


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
        pairs = _triplets(root)
        _summary(pairs, {})
        return pairs
    cats = _mvtec(root, cfg.split) if cfg.layout == "mvtec" else _folder(root, cfg.split)
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
            box, ncomp = _target_box(t, w, h, c.name)
            if t.anomalous and box == ZERO_BOX:
                console.warn(f"{c.name}: mask of {t.path.name} is empty; recorded as normal")
            refs = [c.pool[j] for j in row]
            pairs.append(
                Pair(
                    id=_record_id(c.name, cat_root, t.path),
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
