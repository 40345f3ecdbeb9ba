"""Built-in defect-free surfaces and paste textures, so `differad synth` runs on a fresh machine.

Surfaces imitate common inspection subjects: four full-frame textures (brushed metal, woven fabric, PCB
traces, tiles) and one object on a plain background (a molded part, where foreground masking matters).
Textures are the "external" material pasted into defects (DRAEM uses DTD; these stand in for it).
Everything is drawn from the caller's Generator, so a (seed, index) pair fixes the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from differad_cli.synth.perlin import fractal_noise, perlin_noise

Maker = Callable[[int, int, np.random.Generator], np.ndarray]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + np.float32(0.5), 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> np.ndarray:
    return rng.integers(lo, hi, size=3).astype(np.float32)


def _gray_to_rgb(v: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """Gray float image times a per-channel tint, as uint8 RGB."""
    return _u8(v[:, :, None] * tint[None, None, :])


def _noise(h: int, w: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean sensor-like noise of standard deviation ``sigma`` (uniform: 4x cheaper than Gaussian)."""
    a = rng.random((h, w), dtype=np.float32)
    a -= np.float32(0.5)
    a *= np.float32(sigma * math.sqrt(12.0))
    return a


# ---------------------------------------------------------------------------------------------- surfaces


def brushed_metal(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    vertical = bool(rng.random() < 0.5)
    hh, ww = (w, h) if vertical else (h, w)
    streaks = cv2.blur(_noise(hh, ww, rng, 40.0), (max(3, ww // 3), 1))
    base = rng.uniform(110, 190)
    shade = np.linspace(-1.0, 1.0, hh, dtype=np.float32)[:, None] * np.float32(rng.uniform(-20, 20))
    v = np.float32(base) + streaks * np.float32(rng.uniform(0.6, 1.4)) + shade + _noise(hh, ww, rng, 3.0)
    if vertical:
        v = np.ascontiguousarray(v.T)
    tint = 1.0 + rng.uniform(-0.04, 0.04, size=3).astype(np.float32)
    return _gray_to_rgb(v, tint)


def woven_fabric(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    p = int(rng.integers(max(4, min(h, w) // 40), max(6, min(h, w) // 16) + 1))
    y = np.arange(h, dtype=np.float32)
    x = np.arange(w, dtype=np.float32)
    prof_y = np.abs(np.sin(np.pi * (y + 0.5) / p))[:, None]  # warp threads run along x
    prof_x = np.abs(np.sin(np.pi * (x + 0.5) / p))[None, :]
    over = ((np.arange(h)[:, None] // p + np.arange(w)[None, :] // p) % 2).astype(bool)
    v = np.where(over, 0.55 + 0.45 * prof_y, 0.45 + 0.45 * prof_x).astype(np.float32)
    colour = _colour(rng, 40, 220)
    rgb = v[:, :, None] * colour[None, None, :] + _noise(h, w, rng, 6.0)[:, :, None]
    return _u8(rgb)


def pcb(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    s = min(h, w) / 256.0
    board = np.array([rng.uniform(15, 45), rng.uniform(85, 135), rng.uniform(40, 75)], dtype=np.float32)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = board
    img += _noise(h, w, rng, 4.0)[:, :, None]
    img = _u8(img)
    copper = tuple(int(c) for c in rng.integers([170, 120, 40], [230, 170, 90]))
    for _ in range(int(rng.integers(8, 20))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        pts = [(x, y)]
        for _ in range(int(rng.integers(2, 5))):  # Manhattan routing with the odd 45-degree jog
            d = int(rng.integers(int(10 * s) + 1, int(80 * s) + 2))
            kind = int(rng.integers(0, 3))
            if kind == 0:
                x += d * (1 if rng.random() < 0.5 else -1)
            elif kind == 1:
                y += d * (1 if rng.random() < 0.5 else -1)
            else:
                x += d // 2
                y += d // 2
            pts.append((x, y))
        thick = max(1, round(rng.uniform(1, 4) * s))
        cv2.polylines(img, [np.array(pts, dtype=np.int32)], False, copper, thick, cv2.LINE_AA)
        r = max(2, round(rng.uniform(2.5, 5) * s))
        for px, py in (pts[0], pts[-1]):
            cv2.circle(img, (px, py), r, copper, -1, cv2.LINE_AA)
            cv2.circle(img, (px, py), max(1, r // 2), (20, 20, 20), -1, cv2.LINE_AA)
    return img


def tiles(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    t = int(rng.integers(max(8, min(h, w) // 6), max(10, min(h, w) // 3) + 1))
    g = max(1, round(t * rng.uniform(0.04, 0.09)))
    base = _colour(rng, 60, 220)
    grout = base * np.float32(rng.uniform(0.75, 1.2))
    ny, nx = h // t + 2, w // t + 2
    var = rng.uniform(-12, 12, size=(ny, nx)).astype(np.float32)
    oy, ox = int(rng.integers(0, t)), int(rng.integers(0, t))
    yy = (np.arange(h) + oy) // t
    xx = (np.arange(w) + ox) // t
    v = var[yy[:, None], xx[None, :]]
    in_grout = (((np.arange(h) + oy) % t) < g)[:, None] | (((np.arange(w) + ox) % t) < g)[None, :]
    stone = perlin_noise((h, w), (8, 8), rng) * np.float32(10.0)
    rgb = base[None, None, :] + (v + stone + _noise(h, w, rng, 3.0))[:, :, None]
    rgb = np.where(in_grout[:, :, None], grout[None, None, :] + _noise(h, w, rng, 3.0)[:, :, None], rgb)
    return _u8(rgb)


def molded_part(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A plastic/metal part on a plain, contrasting background: the case foreground masking exists for."""
    bg_level = rng.uniform(10, 60) if rng.random() < 0.5 else rng.uniform(190, 245)
    part_level = rng.uniform(120, 200) if bg_level > 128 else rng.uniform(90, 210)
    if abs(part_level - bg_level) < 60:
        part_level = bg_level + (70 if bg_level < 128 else -70)
    img = np.full((h, w), bg_level, dtype=np.float32) + _noise(h, w, rng, 2.0)
    mask = np.zeros((h, w), dtype=np.uint8)
    cx, cy = w / 2 + rng.uniform(-0.08, 0.08) * w, h / 2 + rng.uniform(-0.08, 0.08) * h
    ax, ay = rng.uniform(0.22, 0.36) * w, rng.uniform(0.22, 0.36) * h
    if rng.random() < 0.5:
        cv2.ellipse(
            mask, (round(cx), round(cy)), (round(ax), round(ay)), float(rng.uniform(0, 180)), 0, 360, 255, -1
        )
    else:  # rounded rectangle: a rectangle dilated by a disc
        r = max(2, round(min(ax, ay) * rng.uniform(0.1, 0.4)))
        p1 = (round(cx - ax + r), round(cy - ay + r))
        p2 = (round(cx + ax - r), round(cy + ay - r))
        cv2.rectangle(mask, p1, p2, 255, -1)
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    part = mask > 0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    shade = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / max(ax, ay) * rng.uniform(5, 20)
    img[part] = part_level + shade[part] + _noise(h, w, rng, 3.0)[part]
    for _ in range(int(rng.integers(0, 4))):  # screw bosses: rings inside the part
        ang2, rad = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.6)
        px, py = round(cx + math.cos(ang2) * ax * rad), round(cy + math.sin(ang2) * ay * rad)
        rr = max(2, round(min(ax, ay) * rng.uniform(0.06, 0.12)))
        ring = part_level + (-35 if part_level > 128 else 35)
        cv2.circle(img, (px, py), rr, float(ring), max(1, rr // 3), cv2.LINE_AA)
    tint = 1.0 + rng.uniform(-0.06, 0.06, size=3).astype(np.float32)
    return _gray_to_rgb(cv2.GaussianBlur(img, (3, 3), 0), tint)


def blank(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Black: with white defects (``white``) the easiest pairs there are, a learner's first curriculum stage
    (docs/learning.md): what differs is visible without the reference and always looks the same, so the
    model learns where to look before it learns to compare."""
    return np.zeros((h, w, 3), np.uint8)


SURFACES: dict[str, Maker] = {
    "brushed_metal": brushed_metal,
    "woven_fabric": woven_fabric,
    "pcb": pcb,
    "tiles": tiles,
    "molded_part": molded_part,
}


# Surface sets of `differad synth --surfaces` (built-in surfaces only).
SURFACE_SETS: dict[str, dict[str, Maker]] = {"textured": SURFACES, "blank": {"blank": blank}}


# ---------------------------------------------------------------------------------------------- textures


def _two_tone(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = _colour(rng), _colour(rng)
    return _u8(a[None, None, :] + v[:, :, None] * (b - a)[None, None, :])


def tex_cloud(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return _two_tone(fractal_noise((h, w), rng, base=int(rng.integers(2, 9)), octaves=3), rng)


def tex_stripes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(4, max(6.0, min(h, w) / 6))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    v = 0.5 + 0.5 * np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * np.float32(2 * math.pi / period))
    return _two_tone(v.astype(np.float32), rng)


def tex_spots(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = _colour(rng).astype(np.uint8)
    rmax = max(2, min(h, w) // 10)
    for _ in range(int(rng.integers(20, 80))):
        c = tuple(int(x) for x in rng.integers(0, 256, size=3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, rmax)), c, -1)
    return img


def tex_scratches(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = _colour(rng).astype(np.uint8)
    for _ in range(int(rng.integers(15, 60))):
        c = tuple(int(x) for x in rng.integers(0, 256, size=3))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, c, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def tex_marble(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    turb = fractal_noise((h, w), rng, base=4, octaves=3)
    xx = np.arange(w, dtype=np.float32)[None, :]
    freq = np.float32(2 * math.pi * rng.uniform(2, 8) / w)
    v = 0.5 + 0.5 * np.sin(xx * freq + turb * np.float32(rng.uniform(4, 10)))
    return _two_tone(v.astype(np.float32), rng)


def white(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """The blank surfaces' defect material (pasted without augmentation)."""
    return np.full((h, w, 3), 255, np.uint8)


TEXTURES: dict[str, Maker] = {
    "cloud": tex_cloud,
    "stripes": tex_stripes,
    "spots": tex_spots,
    "scratches": tex_scratches,
    "marble": tex_marble,
}
