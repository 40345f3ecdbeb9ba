"""`differad synth`: synthetic reference/target pairs from defect-free images (paper III-C, Algorithm 1).

Each sample's randomness derives from (seed, index) alone, so the output is byte-identical for any number
of workers and on re-run, and an interrupted run resumes exactly where it stopped. Images are written to a
temporary name and renamed; a manifest line is appended only after its files are complete, in index order.

Two choices the paper leaves open, made here:
- Normal targets get the same brightness jitter and small rotation as anomalous ones (Algorithm 1 applies
  JitterRotate after both branches). Otherwise "target differs from reference at all" would itself reveal
  the label, and the model would learn to flag nuisance changes instead of defects.
- With ``--normals``, images keep their aspect ratio by default: the longer side becomes ``--size``
  (``--resize square`` stretches to size x size). Industrial frames are often far from square.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from differad_cli import console
from differad_cli.augment import augment
from differad_cli.boxes import ZERO_BOX, IntBox, area, mask_box
from differad_cli.errors import BadInput, ImageError
from differad_cli.images import (
    IMAGE_SUFFIXES,
    atomic_write_bytes,
    image_size,
    list_images,
    load_rgb,
    save_png,
)
from differad_cli.perlin import perlin_mask
from differad_cli.procedural import SURFACES, TEXTURES
from differad_cli.records import Pair, atomic_write_lines, dumps
from differad_cli.synth_config import MAX_SIZE, MIN_SIZE, SynthConfig, SynthSummary  # noqa: F401 (re-exported)

MANIFEST = "pairs.jsonl"
SETTINGS = "synth.json"
DEFAULT_N = 1000
AUTO_WORKER_MIN_TASKS = 32  # below this many pairs per worker a pool costs more than it saves


# ---------------------------------------------------------------------------------------------- pure steps


def sample_rngs(seed: int, index: int, k: int = 4) -> list[np.random.Generator]:
    """Independent streams for one sample: source, branch, anomaly, jitter.

    Separate streams keep e.g. the reference image fixed when only --p-normal or --beta-max changes.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(k)]


def foreground_mask(img: np.ndarray) -> np.ndarray | None:
    """Object mask for an object on a plain background; None means "use the full frame".

    Otsu on the blurred gray image; the class holding >= 95% of the border pixels is background. The
    foreground is everything not connected to the border through background (holes count as object),
    opened/closed to drop specks. Textures and objects cut by the frame fail the border test and get
    the full frame, the safe direction (defects may then land anywhere, as in DRAEM's texture classes),
    and so do scattered structures (PCB traces, print): an object is one dominant component.
    """
    h, w = img.shape[:2]
    gray = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, bw = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([bw[0], bw[-1], bw[:, 0], bw[:, -1]])
    hi = float(border.mean())
    if max(hi, 1.0 - hi) < 0.95:
        return None
    fg = (bw == (0 if hi > 0.5 else 1)).astype(np.uint8)
    k = max(3, (min(h, w) // 64) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    fg = cv2.morphologyEx(cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    _, labels = cv2.connectedComponents(1 - fg, connectivity=4)  # label 0 = foreground pixels
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    bg = np.isin(labels, edge[edge > 0])  # background regions that touch the frame
    out = ~bg
    share = float(out.mean())
    if share < 0.02 or share > 0.95:
        return None
    n, _, stats, _ = cv2.connectedComponentsWithStats(out.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if n <= 1 or areas.max() < 0.8 * areas.sum():
        return None  # scattered bright/dark structures (traces, print) on a surface, not an object
    return out


def _crop(mask: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """Box (x1, y1, x2, y2) of the non-zero pixels grown by ``margin`` (clipped); None when empty."""
    x1, y1, x2, y2 = mask_box(mask)
    if x2 == 0:
        return None
    h, w = mask.shape[:2]
    return max(0, x1 - margin), max(0, y1 - margin), min(w, x2 + margin), min(h, y2 + margin)


def one_component(
    mask: np.ndarray, rng: np.random.Generator, min_area: int, tries: int = 8
) -> np.ndarray | None:
    """Keep one 8-connected component, picked with probability proportional to its area; None if empty.

    Picking a uniformly random mask pixel and flood-filling its component gives exactly that choice
    and costs only the component's size (labelling the whole frame costs more than everything else).
    A component below ``min_area`` is dropped and another pixel drawn, up to ``tries`` times.
    """
    h, w = mask.shape[:2]
    img = mask.astype(np.uint8)
    flat = np.flatnonzero(img)
    flags = 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    for _ in range(tries):
        if flat.size == 0:
            return None
        y, x = divmod(int(flat[rng.integers(flat.size)]), w)
        filled = np.zeros((h + 2, w + 2), dtype=np.uint8)
        area = cv2.floodFill(img, filled, (x, y), 0, 0, 0, flags)[0]
        comp = filled[1:-1, 1:-1].view(bool)
        if area >= min_area:
            return comp
        img[comp] = 0
        flat = flat[~comp.ravel()[flat]]
    return None


def n_components(mask: np.ndarray) -> int:
    box = _crop(mask)
    if box is None:
        return 0
    x1, y1, x2, y2 = box
    return int(cv2.connectedComponents(mask[y1:y2, x1:x2].astype(np.uint8), connectivity=8)[0]) - 1


def blend(
    ref: np.ndarray, tex: np.ndarray, mask: np.ndarray, beta: float, box: IntBox | None = None
) -> np.ndarray:
    """I_tar = I_ref(1 - M) + ((1 - beta) I_tex + beta I_ref) M, computed only inside the mask's box.

    ``tex`` is a full-size texture, or (with ``box``) just the patch covering ``box``.
    """
    out = ref.copy()
    x1, y1, x2, y2 = mask_box(mask) if box is None else box
    r = ref[y1:y2, x1:x2].astype(np.float32)
    t = (tex if box is not None else tex[y1:y2, x1:x2]).astype(np.float32)
    m = mask[y1:y2, x1:x2, None].astype(np.float32) * np.float32(1.0 - beta)
    out[y1:y2, x1:x2] = np.clip(r + (t - r) * m + np.float32(0.5), 0, 255).astype(np.uint8)
    return out


def _rotation(h: int, w: int, angle: float) -> np.ndarray:
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)


def rotate_mask(mask: np.ndarray, angle: float) -> np.ndarray:
    """The mask rotated about the image centre (bilinear, re-thresholded at one half).

    Only the mask's box (plus a pixel of zeros) is warped, into the box of its rotated corners; the
    result equals warping the whole frame with a zero border.
    """
    h, w = mask.shape[:2]
    box = _crop(mask, margin=2)
    if box is None or angle == 0.0:
        return mask
    x1, y1, x2, y2 = box
    m = _rotation(h, w, angle)
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], dtype=np.float64) @ m.T
    ox1, oy1 = max(0, int(np.floor(corners[:, 0].min())) - 1), max(0, int(np.floor(corners[:, 1].min())) - 1)
    ox2, oy2 = min(w, int(np.ceil(corners[:, 0].max())) + 2), min(h, int(np.ceil(corners[:, 1].max())) + 2)
    out = np.zeros((h, w), dtype=bool)
    if ox2 <= ox1 or oy2 <= oy1:
        return out
    mc = m.copy()
    mc[:, 2] = m[:, :2] @ np.array([x1, y1], dtype=np.float64) + m[:, 2] - np.array([ox1, oy1])
    crop = mask[y1:y2, x1:x2].astype(np.uint8) * 255
    rot = cv2.warpAffine(crop, mc, (ox2 - ox1, oy2 - oy1), flags=cv2.INTER_LINEAR, borderValue=0)
    out[oy1:oy2, ox1:ox2] = rot >= 128
    return out


def jitter_rotate(
    img: np.ndarray, mask: np.ndarray | None, gain: float, angle: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Brightness gain (one LUT pass) and a rotation about the centre, applied to the mask in step.

    The image borders are reflected (no black corners for the model to flag); the mask is rotated
    bilinearly and re-thresholded at one half, so the box follows the defect. A defect near the edge
    would be mirrored into that border: rotate a target with a defect with ``jitter_rotate_defect``.
    """
    img = _gain_lut(img, gain)
    if angle == 0.0:
        return img, mask
    h, w = img.shape[:2]
    # OpenCV's vectorized warp handles 4 channels about twice as fast as 3, conversions included.
    rgba = cv2.cvtColor(img, cv2.COLOR_RGB2RGBA)
    rgba = cv2.warpAffine(
        rgba, _rotation(h, w, angle), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    img = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    return img, None if mask is None else rotate_mask(mask, angle)


def _gain_lut(img: np.ndarray, gain: float) -> np.ndarray:
    if gain == 1.0:
        return img
    lut = np.clip(np.arange(256, dtype=np.float32) * np.float32(gain) + np.float32(0.5), 0, 255)
    return cv2.LUT(img, lut.astype(np.uint8))


def jitter_rotate_defect(
    ref: np.ndarray,
    blended: np.ndarray,
    box: IntBox,
    gain: float,
    angle: float,
    final: np.ndarray | None = None,
) -> np.ndarray:
    """``jitter_rotate(blended)`` for a target that differs from ``ref`` only inside ``box``, with every
    changed pixel within a pixel of the rotated mask ``final`` (``rotate_mask`` of the defect's mask).

    The reflected border of a rotation repeats the pixels near the frame edge; a defect there would
    reappear outside the (zero-padded) rotated mask and box. So the frame is the rotated *reference*,
    and only the output pixels whose bilinear sample lies wholly inside the image near ``box`` (box
    grown by 2 px) take the rotated ``blended`` values, and of those (with ``final``) only the ones
    within a pixel of ``final``: a one-pixel-thin sliver that the mask's re-threshold drops is dropped
    from the image too, while the bilinear edge of the defect is kept.
    """
    if angle == 0.0:
        return jitter_rotate(blended, None, gain, 0.0)[0]
    h, w = ref.shape[:2]
    out, _ = jitter_rotate(ref, None, gain, angle)
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = max(0, x1 - 2), max(0, y1 - 2), min(w, x2 + 2), min(h, y2 + 2)
    if x2 <= x1 or y2 <= y1:
        return out
    m = _rotation(h, w, angle)
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], dtype=np.float64) @ m.T
    ox1, oy1 = max(0, int(np.floor(corners[:, 0].min())) - 1), max(0, int(np.floor(corners[:, 1].min())) - 1)
    ox2, oy2 = min(w, int(np.ceil(corners[:, 0].max())) + 2), min(h, int(np.ceil(corners[:, 1].max())) + 2)
    if ox2 <= ox1 or oy2 <= oy1:
        return out
    mc = m.copy()
    mc[:, 2] = m[:, :2] @ np.array([x1, y1], dtype=np.float64) + m[:, 2] - np.array([ox1, oy1])
    size = (ox2 - ox1, oy2 - oy1)
    # alpha 255 inside the crop, 0 beyond: after the warp, alpha == 255 marks samples wholly inside it
    crop = cv2.cvtColor(_gain_lut(np.ascontiguousarray(blended[y1:y2, x1:x2]), gain), cv2.COLOR_RGB2RGBA)
    patch = cv2.warpAffine(crop, mc, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    inside = patch[:, :, 3] == 255
    if final is not None:
        near = cv2.dilate(final[oy1:oy2, ox1:ox2].view(np.uint8), np.ones((3, 3), np.uint8))
        inside &= near.view(bool)
    np.copyto(out[oy1:oy2, ox1:ox2], patch[:, :, :3], where=inside[:, :, None])
    return out


@dataclass
class Sample:
    ref: np.ndarray
    tgt: np.ndarray
    mask: np.ndarray | None
    box: IntBox
    meta: dict[str, Any]
    fallback: bool = False


TEXTURE_CONTEXT = 64  # smallest texture window augmented around a defect (keeps its statistics global)


TextureSource = np.ndarray | Callable[[int, int, np.random.Generator], np.ndarray]


def texture_patch(
    texture: TextureSource, box: IntBox, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """The augmented texture over ``box``. Only a window around the box (>= TEXTURE_CONTEXT px a side) is
    augmented: the texture is only ever seen through the mask, so augmenting the whole frame is waste.
    A procedural texture (a maker function) is drawn at the window's size directly.
    """
    x1, y1, x2, y2 = box
    grow_x = max(0, TEXTURE_CONTEXT - (x2 - x1)) // 2
    grow_y = max(0, TEXTURE_CONTEXT - (y2 - y1)) // 2
    if callable(texture):
        wx1, wy1 = x1 - grow_x, y1 - grow_y
        window = texture(y2 - y1 + 2 * grow_y, x2 - x1 + 2 * grow_x, rng)
    else:
        h, w = texture.shape[:2]
        wx1, wy1 = max(0, x1 - grow_x), max(0, y1 - grow_y)
        wx2, wy2 = min(w, x2 + grow_x), min(h, y2 + grow_y)
        window = np.ascontiguousarray(texture[wy1:wy2, wx1:wx2])
    window, ops = augment(window, rng)
    return window[y1 - wy1 : y2 - wy1, x1 - wx1 : x2 - wx1], ops


def synthesize_pair(
    ref: np.ndarray,
    texture: TextureSource,
    fg: np.ndarray | None,
    rng_branch: np.random.Generator,
    rng_anom: np.random.Generator,
    rng_jit: np.random.Generator,
    cfg: SynthConfig,
) -> Sample:
    """Algorithm 1 for one reference image (texture already chosen: an image of the reference's size
    or a procedural maker; fg None = full frame)."""
    h, w = ref.shape[:2]
    gain = 1.0 + float(rng_jit.uniform(-cfg.brightness, cfg.brightness))
    angle = float(rng_jit.uniform(-cfg.rotation, cfg.rotation))
    if rng_branch.random() < cfg.p_normal:
        if not cfg.jitter_normals:
            return Sample(ref, ref.copy(), None, ZERO_BOX, {})
        tgt, _ = jitter_rotate(ref, None, gain, angle)
        return Sample(ref, tgt, None, ZERO_BOX, {"gain": round(gain, 4), "angle": round(angle, 3)})
    for region in (fg, None) if fg is not None else (None,):
        for _ in range(cfg.max_retries):
            m = perlin_mask((h, w), rng_anom, threshold=cfg.threshold)
            if region is not None:
                m &= region
            comp = one_component(m, rng_anom, cfg.min_area)
            if comp is None:
                continue
            final = rotate_mask(comp, angle)
            if int(final.sum()) < cfg.min_area or n_components(final) != 1:
                continue  # the rotation cut the region away or split it: redraw
            box = mask_box(comp)
            patch, ops = texture_patch(texture, box, rng_anom)
            beta = float(rng_anom.uniform(0.0, cfg.beta_max))
            tgt = jitter_rotate_defect(ref, blend(ref, patch, comp, beta, box), box, gain, angle, final)
            meta = {"beta": round(beta, 4), "ops": ops, "gain": round(gain, 4), "angle": round(angle, 3)}
            return Sample(ref, tgt, final, mask_box(final), meta)
    tgt, _ = jitter_rotate(ref, None, gain, angle)  # no usable region at all: an honest normal pair
    return Sample(ref, tgt, None, ZERO_BOX, {"gain": round(gain, 4), "angle": round(angle, 3)}, fallback=True)


# ---------------------------------------------------------------------------------------------- sources


def fit_size(img: np.ndarray, size: int, mode: str) -> np.ndarray:
    h, w = img.shape[:2]
    if mode == "square":
        nw = nh = size
    else:
        s = size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
    if (nh, nw) == (h, w):
        return img
    interp = cv2.INTER_AREA if nh * nw < h * w else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp)


def scan_folder(root: Path | None, what: str) -> tuple[list[Path], list[str]]:
    """Readable-looking images under ``root`` (header check only) and the skipped ones with reasons."""
    if root is None:
        return [], []
    if not root.exists():
        raise BadInput(f"{what} folder not found: {root}")
    if not root.is_dir():
        raise BadInput(f"{what} must be a folder, got a file: {root}")
    found = list_images(root)
    if not found:
        raise BadInput(
            f"no images in {what} folder {root} (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)"
        )
    good: list[Path] = []
    problems: list[str] = []
    for p in found:
        try:
            image_size(p)
        except ImageError as e:
            problems.append(str(e))
            continue
        good.append(p)
    if not good:
        raise BadInput(
            f"none of the {len(found)} images in {what} folder {root} could be read ({problems[0]})"
        )
    for msg in problems:
        console.warn(f"skipping {what} image: {msg}")
    skipped = sorted(set(map(str, found)) - set(map(str, good)))
    return good, skipped


def _category_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else (root.resolve().name or "default")


def _digest(paths: list[Path], root: Path | None) -> str | None:
    if root is None:
        return None
    h = hashlib.sha256()
    for p in paths:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


@dataclass
class Plan:
    """Everything a worker needs (picklable): settings and the resolved input lists."""

    cfg: SynthConfig
    out: Path
    normals: list[Path]
    textures: list[Path]
    categories: list[str]


class Generator:
    """Makes and writes sample ``index``; caches decoded inputs (results never depend on the cache)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.cfg = plan.cfg
        self._load_normal = lru_cache(maxsize=32)(self._load_normal_uncached)
        self._load_texture = lru_cache(maxsize=32)(self._load_texture_uncached)
        self._perm = lru_cache(maxsize=4)(self._perm_uncached)

    def _load_normal_uncached(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        img = fit_size(load_rgb(self.plan.normals[i]), self.cfg.size, self.cfg.resize)
        fg = foreground_mask(img) if self.cfg.fg == "auto" else None
        img.flags.writeable = False
        return img, fg

    def _load_texture_uncached(self, j: int, h: int, w: int) -> np.ndarray:
        img = load_rgb(self.plan.textures[j])
        shrink = img.shape[0] * img.shape[1] > h * w
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def _perm_uncached(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, 0x5EED, epoch]).permutation(len(self.plan.normals))

    def make(self, index: int) -> tuple[Sample, str, str, list[str]]:
        """(sample, category, source, skipped input paths) for one index."""
        cfg = self.cfg
        r_src, r_branch, r_anom, r_jit = sample_rngs(cfg.seed, index)
        skipped: list[str] = []
        if self.plan.normals:
            n = len(self.plan.normals)
            perm = self._perm(index // n)
            for k in range(n):  # an unreadable image hands its turn to the next one in the permutation
                i = int(perm[(index + k) % n])
                try:
                    ref, fg = self._load_normal(i)
                    break
                except ImageError as e:
                    skipped.append(f"{self.plan.normals[i]}\t{e}")
            else:
                raise BadInput("none of the normal images could be decoded")
            category = cfg.category or self.plan.categories[i]
            source = self.plan.normals[i].relative_to(cfg.normals).as_posix() if cfg.normals else ""
        else:
            family = list(SURFACES)[index % len(SURFACES)]
            ref = SURFACES[family](cfg.size, cfg.size, r_src)
            fg = foreground_mask(ref) if cfg.fg == "auto" else None
            category, source = cfg.category or family, f"builtin:{family}"
        h, w = ref.shape[:2]
        if self.plan.textures:
            t = len(self.plan.textures)
            first = int(r_src.integers(t))
            for k in range(t):
                j = (first + k) % t
                try:
                    texture = self._load_texture(j, h, w)
                    break
                except ImageError as e:
                    skipped.append(f"{self.plan.textures[j]}\t{e}")
            else:
                raise BadInput("none of the texture images could be decoded")
            tex_name = self.plan.textures[j].relative_to(cfg.textures).as_posix() if cfg.textures else ""
        else:
            name = list(TEXTURES)[int(r_src.integers(len(TEXTURES)))]
            texture, tex_name = TEXTURES[name], f"builtin:{name}"
        sample = synthesize_pair(ref, texture, fg, r_branch, r_anom, r_jit, cfg)
        if sample.mask is not None:
            sample.meta = {"texture": tex_name, **sample.meta}
        return sample, category, source, skipped

    def __call__(self, index: int) -> tuple[int, str, list[str], bool]:
        """Make, write (atomic files) and describe sample ``index`` as its manifest line."""
        sample, category, source, skipped = self.make(index)
        out, cfg = self.plan.out, self.cfg
        stem = f"{index:06d}"
        ref_p, tgt_p = out / "ref" / f"{stem}.png", out / "tgt" / f"{stem}.png"
        mask_p = out / "mask" / f"{stem}.png" if sample.mask is not None else None
        save_png(ref_p, sample.ref, cfg.png_level)
        save_png(tgt_p, sample.tgt, cfg.png_level)
        if mask_p is not None:
            save_png(mask_p, sample.mask, 9)  # binary masks compress to almost nothing at any level
        h, w = sample.tgt.shape[:2]
        pair = Pair(
            id=f"synth-{stem}",
            ref=ref_p,
            tgt=tgt_p,
            box=sample.box,
            label=0 if sample.mask is None else 1,
            width=w,
            height=h,
            mask=mask_p,
            category=category,
            subset=cfg.subset,
            extra={"synth": {"source": source, **sample.meta}},
        )
        return index, dumps(pair.to_dict(out)), skipped, sample.fallback


_WORKER: Generator | None = None


def _die_with_parent() -> None:
    """Ask Linux to end this worker when its parent dies (a killed run must not leave orphans behind)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(plan: Plan) -> None:
    global _WORKER
    _die_with_parent()
    _WORKER = Generator(plan)


def _work(index: int) -> tuple[int, str, list[str], bool]:
    assert _WORKER is not None
    return _WORKER(index)


# ---------------------------------------------------------------------------------------------- run


_ID_RE = re.compile(r"^synth-(\d{6,})$")


def _settings(cfg: SynthConfig, normals: list[Path], textures: list[Path]) -> dict[str, Any]:
    skip = {"out", "n", "workers", "resume"}
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}
    d["normals"] = None if cfg.normals is None else str(cfg.normals)
    d["textures"] = None if cfg.textures is None else str(cfg.textures)
    d["normals_digest"] = _digest(normals, cfg.normals)
    d["textures_digest"] = _digest(textures, cfg.textures)
    return d


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out must be a folder, got a file: {out}")
    try:
        for sub in ("ref", "tgt", "mask"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput(f"cannot write to output folder {out}: {e.strerror or e}") from None


def _finished(out: Path) -> dict[int, str]:
    """Manifest lines of finished samples (record complete, files present), by index; bad lines dropped."""
    path = out / MANIFEST
    done: dict[int, str] = {}
    if not path.is_file():
        return done
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            text = line.rstrip("\n")
            if not line.endswith("\n") or not text.strip():
                continue  # a partial last line from an interrupted write
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                continue
            m = _ID_RE.match(str(obj.get("id", ""))) if isinstance(obj, dict) else None
            if m is None:
                continue
            files = [obj.get("ref"), obj.get("tgt")] + ([obj["mask"]] if obj.get("mask") else [])
            if all(isinstance(p, str) and (out / p).is_file() for p in files):
                done[int(m.group(1))] = text
    return done


def _count_records(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _auto_workers(todo: int, requested: int) -> int:
    if requested:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, todo // AUTO_WORKER_MIN_TASKS))


def _pool_context() -> Any:
    """fork on Linux when this process runs no other Python thread (instant start; children never
    re-import the caller's ``__main__``, so unguarded scripts work), else forkserver preloaded with this
    module; spawn elsewhere. Workers only run NumPy/OpenCV on single threads, so fork is safe here."""
    if sys.platform.startswith("linux"):
        if threading.active_count() == 1:
            return mp.get_context("fork")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["differad_cli.synth"])
        return ctx
    return mp.get_context("spawn")


def _pool_results(plan: Plan, todo: list[int], workers: int, stack: ExitStack) -> Iterator[tuple]:
    """Ordered results from a process pool, started now (before any progress-bar thread exists, so the
    fork start method stays available). A worker that dies raises instead of hanging the run."""
    pool = ProcessPoolExecutor(
        workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(plan,)
    )
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)
    chunk = max(1, min(16, len(todo) // (workers * 8)))
    return _unbroken(pool.map(_work, todo, chunksize=chunk))


def _unbroken(results: Iterator[tuple]) -> Iterator[tuple]:
    try:
        yield from results
    except BrokenProcessPool:
        raise RuntimeError(
            "a synth worker process died; when calling synthesize() from a script, guard the call with "
            "`if __name__ == '__main__':`, or use workers=1"
        ) from None


def synthesize(cfg: SynthConfig) -> SynthSummary:
    """Run Algorithm 1 ``cfg.n`` times into ``cfg.out`` (resuming when asked) and summarize the manifest."""
    t0 = time.perf_counter()
    cfg.validate()
    out = Path(cfg.out)
    cfg = SynthConfig(**{**asdict(cfg), "out": out})
    cfg.normals = Path(cfg.normals).resolve() if cfg.normals else None
    cfg.textures = Path(cfg.textures).resolve() if cfg.textures else None
    normals, skipped_n = scan_folder(cfg.normals, "--normals")
    textures, skipped_t = scan_folder(cfg.textures, "--textures")
    n = cfg.n if cfg.n is not None else (len(normals) if normals else DEFAULT_N)
    manifest = out / MANIFEST
    existing = _count_records(manifest)
    if existing and not cfg.resume:
        raise BadInput(
            f"{manifest} already holds {existing} records; pass --resume to continue that run "
            "or choose a new --out folder"
        )
    _prepare_out(out)
    settings = _settings(cfg, normals, textures)
    settings_path = out / SETTINGS
    if cfg.resume and settings_path.is_file():
        try:
            before = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            before = None
        if isinstance(before, dict) and before != settings:
            diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise BadInput(
                f"cannot resume {out}: it was made with different settings ({', '.join(diff)}); "
                "repeat the original options or choose a new --out folder"
            )
    elif cfg.resume and existing:
        console.warn(f"{settings_path} is missing: cannot check that the resumed settings match")
    atomic_write_bytes(settings_path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())

    done = _finished(out) if cfg.resume else {}
    if done and max(done) >= n:
        raise BadInput(
            f"{manifest} already holds pairs up to index {max(done)}; pass --n {max(done) + 1} or more"
        )
    start = 0
    while start in done:
        start += 1
    atomic_write_lines(manifest, [done[i] for i in range(start)])  # drops partial lines and holes
    if cfg.resume:
        for sub in ("ref", "tgt", "mask"):
            for stale in (out / sub).glob(".*.tmp"):
                stale.unlink(missing_ok=True)
    todo = [i for i in range(start, n) if i not in done]
    resumed = n - len(todo)
    if resumed:
        console.info(f"resuming {out}: {resumed} of {n} pairs already done")

    categories = [_category_of(p, cfg.normals) for p in normals] if cfg.normals else []
    plan = Plan(cfg=cfg, out=out.resolve(), normals=normals, textures=textures, categories=categories)
    workers = _auto_workers(len(todo), cfg.workers)
    skipped = set(skipped_n) | set(skipped_t)
    fallbacks = 0
    t_gen = time.perf_counter()
    with ExitStack() as stack:
        if workers > 1 and len(todo) > 1:
            results: Iterator[tuple] = _pool_results(plan, todo, workers, stack)
        else:
            gen = Generator(plan)
            results = (gen(i) for i in todo)
        f = stack.enter_context(manifest.open("a", encoding="utf-8"))
        for i in console.progress(range(start, n), total=n - start, desc="synth", unit="pair"):
            if i in done:
                line = done[i]
            else:
                _, line, bad, fb = next(results)
                fallbacks += fb
                for b in bad:
                    path, _, why = b.partition("\t")
                    if path not in skipped:
                        console.warn(f"skipping unreadable image: {why}")
                        skipped.add(path)
            f.write(line + "\n")
            f.flush()
    gen_elapsed = time.perf_counter() - t_gen
    elapsed = time.perf_counter() - t0
    return _summarize(manifest, len(todo), resumed, sorted(skipped), fallbacks, elapsed, gen_elapsed)


def _summarize(
    manifest: Path,
    generated: int,
    resumed: int,
    skipped: list[str],
    fallbacks: int,
    elapsed: float,
    gen_s: float,
) -> SynthSummary:
    labels, areas = [], []
    with manifest.open("r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                labels.append(int(obj.get("label", 0)))
                if obj.get("label") == 1:
                    areas.append(area(obj["box"]))
    written = len(labels)
    anomalous = sum(labels)
    return SynthSummary(
        manifest=manifest,
        written=written,
        generated=generated,
        resumed=resumed,
        anomalous=anomalous,
        anomalous_share=anomalous / written if written else 0.0,
        mean_box_area=statistics.fmean(areas) if areas else 0.0,
        median_box_area=float(statistics.median(areas)) if areas else 0.0,
        skipped=skipped,
        fallbacks=fallbacks,
        elapsed=elapsed,
        pairs_per_s=generated / gen_s if gen_s > 0 and generated else 0.0,
    )
