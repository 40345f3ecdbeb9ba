"""DRAEM-family texture augmentation (Algorithm 1, line 7) built on lookup tables.

DRAEM draws 3 of 10 imgaug augmenters per texture. Seven of them are per-channel intensity maps
(gamma, brightness, solarize, posterize, invert, autocontrast, equalize), so consecutive ones compose into
one 256-entry table per channel, applied once with ``cv2.LUT``; the histogram-driven ones (autocontrast,
equalize) read the histogram of the image *as transformed so far* by pushing the original histogram
through the table, without touching pixels. Only hue/saturation, sharpness and rotation touch the image.
Brightness acts on R, G and B alike (imgaug scales the luma channel; the visual effect is the same family).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

OPS = (
    "gamma", "brightness", "sharpness", "hue_saturation", "solarize",
    "posterize", "invert", "autocontrast", "equalize", "rotate",
)  # fmt: skip
_IDENTITY = np.arange(256, dtype=np.float32)


def _clip_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- table ops: (3, 256) float tables


def _gamma(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    g = rng.uniform(0.5, 2.0, size=(3, 1)).astype(np.float32)  # per channel, like GammaContrast(per_channel)
    return 255.0 * (lut / 255.0) ** g


def _brightness(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    mul, add = rng.uniform(0.8, 1.2), rng.uniform(-30, 30)
    return np.clip(lut * np.float32(mul) + np.float32(add), 0, 255)


def _solarize(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= 0.5:  # Solarize(p=0.5)
        return lut
    t = rng.uniform(32, 128)
    return np.where(lut >= t, 255.0 - lut, lut)


def _posterize(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    bits = int(rng.integers(1, 9))
    keep = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return (_clip_u8(lut) & keep).astype(np.float32)


def _invert(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return 255.0 - lut


def _autocontrast(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """PIL's autocontrast with a random cutoff of 0-20% per side (imgaug's pillike default)."""
    cutoff = rng.uniform(0.0, 0.2)
    h = hist()
    out = lut.copy()
    for c in range(3):
        cum = np.cumsum(h[c])
        total = cum[-1]
        lo = int(np.searchsorted(cum, cutoff * total, side="right"))
        hi = int(np.searchsorted(cum, (1.0 - cutoff) * total, side="left"))
        if hi <= lo:
            continue
        v = np.rint(lut[c])
        out[c] = np.clip((v - lo) * (255.0 / (hi - lo)), 0, 255)
    return out


def _equalize(lut: np.ndarray, hist: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """PIL's equalize, per channel, from the histogram of the image as transformed so far."""
    h = hist()
    out = lut.copy()
    for c in range(3):
        nz = np.flatnonzero(h[c])
        if nz.size <= 1:
            continue
        step = (h[c].sum() - h[c][nz[-1]]) // 255
        if step <= 0:
            continue
        table = np.minimum((np.concatenate(([0.0], np.cumsum(h[c])[:-1])) + step // 2) // step, 255)
        out[c] = table[np.rint(lut[c]).astype(np.intp)]
    return out


_TABLE_OPS: dict[str, Callable[[np.ndarray, Callable[[], np.ndarray], np.random.Generator], np.ndarray]] = {
    "gamma": _gamma,
    "brightness": _brightness,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}


# --------------------------------------------------------------------------- image ops


def _hue_saturation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dh, ds = rng.uniform(-50, 50, size=2)  # imgaug units (hue -255..255 ~ one turn)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    h_lut = ((np.arange(256) + round(dh * 180.0 / 510.0)) % 180).astype(np.uint8)
    s_lut = _clip_u8(_IDENTITY + np.float32(ds))
    v_lut = np.arange(256, dtype=np.uint8)
    hsv = cv2.LUT(hsv, np.stack([h_lut, s_lut, v_lut], axis=1)[None])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0  # PIL's SMOOTH kernel


def _sharpness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = float(rng.uniform(0.0, 2.0))  # PIL ImageEnhance.Sharpness: blend of smoothed and original
    smooth = cv2.filter2D(img, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(img, f, smooth, 1.0 - f, 0.0)


def _rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Reflected borders: black corners pasted into a defect would be an artefact, not a texture.
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(rng.uniform(-45, 45)), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


_IMAGE_OPS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "hue_saturation": _hue_saturation,
    "sharpness": _sharpness,
    "rotate": _rotate,
}


def channel_hist(img: np.ndarray) -> np.ndarray:
    """(3, 256) float64 per-channel histogram."""
    return np.stack([cv2.calcHist([img], [c], None, [256], [0, 256]).ravel() for c in range(3)]).astype(
        np.float64
    )


def apply_ops(img: np.ndarray, ops: list[str], rng: np.random.Generator) -> np.ndarray:
    """Apply the named ops in order to an (H, W, 3) uint8 image; table ops are fused into one LUT pass."""
    lut = np.tile(_IDENTITY, (3, 1))
    pending = False
    hist0: list[np.ndarray] = []

    def current_hist() -> np.ndarray:  # histogram of the image as transformed by ``lut`` so far
        if not hist0:
            hist0.append(channel_hist(img))
        idx = np.rint(lut).astype(np.intp)
        return np.stack([np.bincount(idx[c], weights=hist0[0][c], minlength=256) for c in range(3)])

    for name in ops:
        if name in _TABLE_OPS:
            lut = _TABLE_OPS[name](lut, current_hist, rng).astype(np.float32)
            pending = True
        elif name in _IMAGE_OPS:
            if pending:
                img = cv2.LUT(img, np.ascontiguousarray(_clip_u8(lut).T[None]))
                lut, pending = np.tile(_IDENTITY, (3, 1)), False
            img = _IMAGE_OPS[name](img, rng)
            hist0.clear()
        else:
            raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(OPS)}")
    if pending:
        img = cv2.LUT(img, np.ascontiguousarray(_clip_u8(lut).T[None]))
    return np.ascontiguousarray(img)


def augment(img: np.ndarray, rng: np.random.Generator, *, k: int = 3) -> tuple[np.ndarray, list[str]]:
    """DRAEM's randAugmenter: ``k`` distinct ops in random order. Returns the image and the op names."""
    ops = [OPS[i] for i in rng.permutation(len(OPS))[:k]]
    return apply_ops(img, ops, rng), ops
