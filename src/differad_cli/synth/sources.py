"""Inputs of a synthesis run and the per-index generator: scanning folders of normals/textures, and
making and writing sample index (what each worker process runs)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import (
    IMAGE_SUFFIXES,
    image_size,
    list_images,
    load_rgb,
    save_png,
)
from differad_cli.core.records import Pair, dumps
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.geometry import (
    foreground_mask,
)
from differad_cli.synth.procedural import SURFACE_SETS, TEXTURES, white
from differad_cli.synth.sample import (
    Sample,
    fit_size,
    sample_rngs,
    synthesize_pair,
)


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


def category_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else (root.resolve().name or "default")


def inputs_digest(paths: list[Path], root: Path | None) -> str | None:
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
            surfaces = SURFACE_SETS[cfg.surfaces]
            family = list(surfaces)[index % len(surfaces)]
            ref = surfaces[family](cfg.size, cfg.size, r_src)
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
        elif cfg.surfaces == "blank":
            texture, tex_name = white, "builtin:white"
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
