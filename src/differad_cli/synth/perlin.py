"""Vectorized float32 Perlin noise, the source of the paper's irregular defect regions (Algorithm 1, line 8).

DRAEM builds its noise in float64 from gradient grids blown up to full size with ``np.repeat`` and then
rotates the finished image (leaving empty corners). Here the same maths runs in float32 by broadcasting
per-cell gradients against per-pixel offsets, on a canvas that covers the rotated frame at reduced
resolution, and one ``warpAffine`` rotates and upsamples it: any image size (no divisibility rule), no
empty corners, and over 20x less work.
"""

from __future__ import annotations

import math

import numpy as np

# DRAEM's scales: 2**k lattice periods per axis, k drawn independently for each axis from 0..5.
MIN_SCALE_EXP = 0
MAX_SCALE_EXP = 5


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * np.float32(6.0) - np.float32(15.0)) + np.float32(10.0))


def _lattice_noise(
    ny: int, nx: int, ch: int, cw: int, rng: np.random.Generator, amplitude: float = 1.0
) -> np.ndarray:
    """Unrotated noise on an (ny*ch, nx*cw) canvas: ny x nx lattice cells of ch x cw pixels each.

    Pure broadcasting over an (ny, ch, W) view: gradients are expanded along x once (ny+1 rows, cheap),
    offsets along y vary per row within a cell, so there is no per-pixel gather and no repeated
    full-size gradient grid; the innermost axis stays long and contiguous.
    """
    phi = rng.random((ny + 1, nx + 1), dtype=np.float32) * np.float32(2 * math.pi)
    gx = np.cos(phi) * np.float32(amplitude)  # noise is linear in the gradients: scale them, not the canvas
    gy = np.sin(phi) * np.float32(amplitude)
    fx = (np.arange(cw, dtype=np.float32) + np.float32(0.5)) / np.float32(cw)
    fy = ((np.arange(ch, dtype=np.float32) + np.float32(0.5)) / np.float32(ch))[None, :, None]
    fx_w = np.tile(fx, nx)[None, None, :]  # (1, 1, W)
    fx1_w = fx_w - np.float32(1.0)
    fy1 = fy - np.float32(1.0)

    def cols(g: np.ndarray, right: bool) -> np.ndarray:  # (ny+1, W): each cell's left/right corner value
        return np.repeat(g[:, 1:] if right else g[:, :-1], cw, axis=1)[:, None, :]

    gxl, gxr, gyl, gyr = cols(gx, False), cols(gx, True), cols(gy, False), cols(gy, True)
    tx = _fade(fx_w)
    ty = _fade(fy)
    # Four corner contributions and three lerps, in place: four full-size buffers in all.
    top = gyl[:-1] * fy
    top += gxl[:-1] * fx_w  # n00
    n10 = gyr[:-1] * fy
    n10 += gxr[:-1] * fx1_w
    n10 -= top
    n10 *= tx
    top += n10  # lerp(n00, n10, tx)
    bot = gyl[1:] * fy1
    bot += gxl[1:] * fx_w  # n01
    n11 = gyr[1:] * fy1
    n11 += gxr[1:] * fx1_w
    n11 -= bot
    n11 *= tx
    bot += n11  # lerp(n01, n11, tx)
    bot -= top
    bot *= ty
    top += bot
    return top.reshape(ny * ch, nx * cw)


def perlin_noise(
    shape: tuple[int, int],
    res: tuple[float, float],
    rng: np.random.Generator,
    *,
    angle: float = 0.0,
) -> np.ndarray:
    """Perlin noise of ``shape`` (H, W) with ``res`` = (periods along y, periods along x), float32.

    ``angle`` (degrees) rotates the noise image about its centre. The noise is generated unrotated on a
    canvas that covers the rotated frame (no empty corners, unlike rotating a finished image), at up to
    1/8 resolution while a lattice cell still spans >= 4 canvas pixels (Perlin noise is smooth inside a
    cell, so bilinear upsampling loses nothing visible), then rotated and upscaled in one ``warpAffine``.
    Values lie roughly in [-1, 1] (scaled by sqrt(2) like DRAEM, so its 0.5 threshold means the same).
    """
    import cv2

    h, w = int(shape[0]), int(shape[1])
    cell_h = h / max(float(res[0]), 1e-6)
    cell_w = w / max(float(res[1]), 1e-6)
    k = int(max(1, min(8, min(cell_h, cell_w) // 4)))  # canvas downsampling factor
    ch = max(1, round(cell_h / k))
    cw = max(1, round(cell_w / k))
    theta = math.radians(angle)
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    # Canvas = the rotated frame's bounding box (plus a pixel each side for interpolation).
    ny = math.ceil(((w * s + h * c) / k + 2.0) / ch)
    nx = math.ceil(((w * c + h * s) / k + 2.0) / cw)
    canvas = _lattice_noise(ny, nx, ch, cw, rng, amplitude=math.sqrt(2.0))
    # Inverse map: output pixel -> canvas pixel = R(angle) * (p - out_centre) / k + canvas_centre.
    c, s = math.cos(theta) / k, math.sin(theta) / k
    ox, oy = (w - 1) / 2.0, (h - 1) / 2.0
    sx, sy = (nx * cw - 1) / 2.0, (ny * ch - 1) / 2.0
    m = np.array([[c, -s, sx - c * ox + s * oy], [s, c, sy - s * ox - c * oy]], dtype=np.float64)
    return cv2.warpAffine(
        canvas, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )


def sample_scale(
    rng: np.random.Generator, lo: int = MIN_SCALE_EXP, hi: int = MAX_SCALE_EXP
) -> tuple[int, int]:
    """(periods along y, periods along x), each 2**k with k ~ U{lo..hi} independently (DRAEM's choice)."""
    ky, kx = rng.integers(lo, hi + 1, size=2)
    return 2 ** int(ky), 2 ** int(kx)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    threshold: float = 0.5,
    max_angle: float = 90.0,
) -> np.ndarray:
    """A thresholded Perlin mask (bool) with random per-axis scales and a random rotation."""
    res = sample_scale(rng)
    angle = float(rng.uniform(-max_angle, max_angle))
    return perlin_noise(shape, res, rng, angle=angle) > np.float32(threshold)


def fractal_noise(
    shape: tuple[int, int], rng: np.random.Generator, *, base: int = 4, octaves: int = 4, angle: float = 0.0
) -> np.ndarray:
    """Sum of octaves (1, 1/2, 1/4, ...) normalized to [0, 1]: the raw material of procedural surfaces."""
    out = np.zeros(shape, dtype=np.float32)
    amp = 1.0
    for o in range(octaves):
        r = base * 2**o
        out += np.float32(amp) * perlin_noise(shape, (r, r), rng, angle=angle)
        amp *= 0.5
    lo, hi = float(out.min()), float(out.max())
    return (out - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1e-6))
