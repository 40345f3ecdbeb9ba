"""The training-free ``diff`` backend: classical golden-template inspection of a reference/target pair.

Why it exists: it makes ``predict`` useful on a fresh machine (no weights) and gives the paper's VLMs a
non-learned baseline. Steps, all on a downscaled copy (longest side ``work_size``):

1. align the reference to the target: phase correlation for the shift, then ECC (Euclidean: shift +
   rotation) refined from it; a failed or implausible fit falls back to the shift alone;
2. match each channel's mean/std of the aligned reference to the target's (illumination drift);
3. blur both, and take a *tolerant* difference: how far the target leaves the [min, max] envelope of the
   reference over a 3x3 neighbourhood, so residual sub-pixel misalignment and edges do not fire;
4. hysteresis: pixels above ``threshold`` (0-255 intensity units, after opening) seed regions that grow
   over pixels above ``threshold * low_ratio``; the largest seeded region is the anomaly when its area is
   at least ``min_area`` of the image, otherwise the pair is normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX, IntBox
from differad_cli.core.errors import BadInput
from differad_cli.core.images import load_pair_images, load_rgb
from differad_cli.core.records import Pair, Prediction

GROW = 4  # working pixels a region may grow beyond its seeds over weaker differences
ECC_MARGIN = 0.12  # image fraction left out on each side when fitting the alignment


@dataclass
class DiffConfig:
    threshold: float = field(
        default=20.0,
        metadata={"help": "Seed difference, 0-255 intensity units: lower finds fainter defects."},
    )
    low_ratio: float = field(default=0.5, metadata={"help": "Regions grow over pixels above threshold*this."})
    min_area: float = field(
        default=0.0005, metadata={"help": "Smallest anomaly, as a fraction of the image area (else normal)."}
    )
    work_size: int = field(default=256, metadata={"help": "Longest side of the working resolution (pixels)."})
    blur: float = field(default=1.0, metadata={"help": "Gaussian sigma (working pixels) against noise."})
    align: bool = field(default=True, metadata={"help": "Align the reference (shift + rotation) first."})
    max_rotation: float = field(default=15.0, metadata={"help": "Reject alignments rotating more (degrees)."})
    max_shift: float = field(
        default=0.25, metadata={"help": "Reject shifts larger than this image fraction."}
    )


@dataclass
class DiffResult:
    box: IntBox  # target pixels, x2/y2 exclusive; ZERO_BOX when normal
    anomalous: bool
    score: float  # peak tolerant difference inside the region (0-1), 0 when normal
    area: float  # region area as a fraction of the image
    shift: tuple[float, float]  # how far the target's content moved from the reference's (image centre, px)
    rotation: float  # its rotation, degrees, counter-clockwise positive (cv2.getRotationMatrix2D's sign)
    diff_map: np.ndarray | None = None  # working-resolution difference map (0-255), when asked for

    def explanation(self) -> str:
        align = f"target moved ({self.shift[0]:+.1f}, {self.shift[1]:+.1f}) px"
        align += f" and rotated {self.rotation:+.2f} deg from the reference"
        if not self.anomalous:
            return f"no region differs from the reference beyond the threshold; {align}"
        return (
            f"a region covering {100 * self.area:.2f}% of the image differs from the reference "
            f"(peak difference {self.score:.2f}); {align}"
        )


def _to_work(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img.astype(np.float32)
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interp).astype(np.float32)


def _ecc(tgt: np.ndarray, ref: np.ndarray, warp: np.ndarray, iters: int) -> np.ndarray | None:
    """One ECC (Euclidean) fit on the central part: a moved target's borders hold filled-in content."""
    h, w = tgt.shape
    my, mx = round(h * ECC_MARGIN), round(w * ECC_MARGIN)
    fit = np.zeros((h, w), np.uint8)
    fit[my : h - my, mx : w - mx] = 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iters, 1e-6)
    try:
        _, out = cv2.findTransformECC(tgt, ref, warp.copy(), cv2.MOTION_EUCLIDEAN, criteria, fit, 5)
    except cv2.error:
        return None  # did not converge (flat or unrelated images)
    return out


def estimate_alignment(ref_gray: np.ndarray, tgt_gray: np.ndarray, cfg: DiffConfig) -> np.ndarray:
    """2x3 warp W with ref(W(x)) ~ tgt(x) (use with WARP_INVERSE_MAP); identity when nothing fits.

    Coarse to fine: phase correlation and ECC on a half-size copy (cheap, wide basin), then a short ECC
    refinement at full working size (sub-pixel accuracy where it matters: at the image borders).
    """
    h, w = tgt_gray.shape
    factors = (2, 1) if min(h, w) >= 64 else (1,)
    warp = np.eye(2, 3, dtype=np.float32)
    prev = factors[0]
    for level, f in enumerate(factors):
        t = cv2.resize(tgt_gray, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else tgt_gray
        r = cv2.resize(ref_gray, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else ref_gray
        if level == 0:
            win = cv2.createHanningWindow((t.shape[1], t.shape[0]), cv2.CV_32F)
            (dx, dy), _ = cv2.phaseCorrelate(t, r, win)
            if abs(dx) <= cfg.max_shift * t.shape[1] and abs(dy) <= cfg.max_shift * t.shape[0]:
                warp[:, 2] = (dx, dy)
        else:
            warp[:, 2] *= prev / f
        prev = f
        fitted = _ecc(t, r, warp, 100 if level == 0 else 30)
        if fitted is None:
            continue
        angle = np.degrees(np.arctan2(fitted[1, 0], fitted[0, 0]))
        if abs(angle) <= cfg.max_rotation and np.all(np.abs(fitted[:, 2]) <= cfg.max_shift * max(t.shape)):
            warp = fitted.astype(np.float32)
    warp[:, 2] *= prev
    return warp


def _fit_gain(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a*x + b over corresponding pixels, robust to the defect (a minority of outlier pairs).

    Least squares, then refits on the pairs whose residual lies within 3 robust sigmas (MAD).
    """
    if x.var() < 1.0:  # a flat reference channel: the (median) offset is all there is
        return 1.0, float(np.median(y - x))
    keep = np.ones(x.shape, bool)
    a, b = 1.0, 0.0
    for _ in range(3):
        xs, ys = x[keep], y[keep]
        if xs.size < 16 or xs.var() < 1.0:
            break
        a = float(np.clip(np.cov(xs, ys, bias=True)[0, 1] / xs.var(), 0.5, 2.0))
        b = float(ys.mean() - a * xs.mean())
        res = y - (a * x + b)
        med = float(np.median(res))
        keep = np.abs(res - med) <= 3.0 * 1.4826 * float(np.median(np.abs(res - med))) + 2.0
    return a, b


def _normalize(ref: np.ndarray, tgt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-channel gain/offset of the aligned reference fitted to the target (illumination drift)."""
    out = np.empty_like(ref)
    sub = valid.copy()
    sub[1::2, :] = False  # a quarter of the pixels is plenty for two parameters
    sub[:, 1::2] = False
    for c in range(ref.shape[2]):
        x, y = ref[:, :, c][sub], tgt[:, :, c][sub]
        if x.size < 16:
            out[:, :, c] = ref[:, :, c]
            continue
        a, b = _fit_gain(x, y)
        out[:, :, c] = ref[:, :, c] * a + b
    return np.clip(out, 0.0, 255.0, out=out)  # the target saturates too: never flag clipped highlights


def _motion(warp: np.ndarray, w: int, h: int, scale: float) -> tuple[tuple[float, float], float]:
    """Reference -> target motion from ``warp`` (which maps target to reference coordinates): the
    displacement of the image centre in target pixels, and the rotation in degrees (counter-clockwise
    positive, as cv2.getRotationMatrix2D; in image coordinates that is the angle of ``warp`` itself)."""
    inv = cv2.invertAffineTransform(warp.astype(np.float64))
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    moved = inv[:, :2] @ c + inv[:, 2] - c
    rotation = float(np.degrees(np.arctan2(warp[1, 0], warp[0, 0])))
    return (float(moved[0]) / scale, float(moved[1]) / scale), rotation


@dataclass
class WorkingReference:
    """The reference at one target size: resized to the working resolution and, for alignment, its blurred
    gray copy. Line mode computes it once per reference and target size instead of once per pair."""

    height: int  # target size it was made for
    width: int
    scale: float
    rgb: np.ndarray  # working-resolution float32 RGB
    gray: np.ndarray  # blurred gray (alignment)


def working_reference(ref: np.ndarray, height: int, width: int, cfg: DiffConfig) -> WorkingReference:
    if ref.shape[:2] != (height, width):
        ref = cv2.resize(ref, (width, height), interpolation=cv2.INTER_AREA)
    # small images are upsampled too: blur, tolerance and morphology then act at one, tuned scale
    scale = cfg.work_size / max(height, width)
    r = _to_work(ref, scale)
    gray = cv2.GaussianBlur(cv2.cvtColor(r, cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
    return WorkingReference(height, width, scale, r, gray)


def localize(
    ref: np.ndarray | WorkingReference,
    tgt: np.ndarray,
    cfg: DiffConfig | None = None,
    *,
    keep_map: bool = False,
) -> DiffResult:
    """Reference (RGB uint8, or prepared for this target size) and target -> the anomaly box in target
    pixels (or normal)."""
    cfg = cfg or DiffConfig()
    height, width = tgt.shape[:2]
    if not isinstance(ref, WorkingReference):
        ref = working_reference(ref, height, width, cfg)
    elif (ref.height, ref.width) != (height, width):
        raise ValueError(f"reference prepared for {ref.width}x{ref.height}, target is {width}x{height}")
    scale = ref.scale
    r, t = ref.rgb, _to_work(tgt, scale)
    h, w = t.shape[:2]
    valid = np.ones((h, w), dtype=np.uint8)
    warp = np.eye(2, 3, dtype=np.float32)
    if cfg.align and min(h, w) >= 16:
        tg = cv2.GaussianBlur(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
        warp = estimate_alignment(ref.gray, tg, cfg)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        r = cv2.warpAffine(r, warp, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.warpAffine(valid, warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        valid = cv2.erode(valid, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    vmask = valid.astype(bool)
    r = _normalize(r, t, vmask if vmask.sum() >= 16 else np.ones_like(vmask))
    if cfg.blur > 0:
        r = cv2.GaussianBlur(r, (0, 0), cfg.blur)
        t = cv2.GaussianBlur(t, (0, 0), cfg.blur)
    k3 = np.ones((3, 3), np.uint8)
    above = t - cv2.dilate(r, k3)
    below = cv2.erode(r, k3) - t
    diff = np.maximum(np.maximum(above, below), 0).max(axis=2)
    diff[~vmask] = 0
    strong = cv2.morphologyEx((diff > cfg.threshold).astype(np.uint8), cv2.MORPH_OPEN, k3)
    # weak pixels extend a seeded region only near its seeds (not along every edge it touches)
    near = cv2.dilate(strong, np.ones((2 * GROW + 1, 2 * GROW + 1), np.uint8))
    weak = ((diff > cfg.threshold * cfg.low_ratio) & (near > 0)).astype(np.uint8) | strong
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    seeded = np.zeros(n, dtype=bool)
    seeded[np.unique(labels[strong.astype(bool)])] = True
    seeded[0] = False
    shift, rotation = _motion(warp, w, h, scale)
    dmap = diff if keep_map else None
    if not seeded.any():
        return DiffResult(ZERO_BOX, False, 0.0, 0.0, shift, rotation, dmap)
    areas = np.where(seeded, stats[:, cv2.CC_STAT_AREA], -1)
    best = int(np.argmax(areas))
    frac = float(areas[best]) / float(h * w)
    if frac < cfg.min_area:
        return DiffResult(ZERO_BOX, False, 0.0, frac, shift, rotation, dmap)
    x, y, bw, bh = (int(v) for v in stats[best, :4])
    box = (
        max(0, int(np.floor(x / scale))),
        max(0, int(np.floor(y / scale))),
        min(width, int(np.ceil((x + bw) / scale))),
        min(height, int(np.ceil((y + bh) / scale))),
    )
    score = float(diff[labels == best].max()) / 255.0
    return DiffResult(box, True, score, frac, shift, rotation, dmap)


class DiffBackend:
    """The ``diff`` backend: :func:`localize` on each pair's images."""

    def __init__(self, threshold: float | None = None, min_area: float | None = None):
        cfg = DiffConfig()
        if threshold is not None:
            if threshold <= 0:
                raise BadInput("--threshold must be positive")
            cfg.threshold = threshold
        if min_area is not None:
            if not 0 <= min_area < 1:
                raise BadInput("--min-area must be a fraction in [0, 1)")
            cfg.min_area = min_area
        self.cfg = cfg

    def predict(self, pairs: list[Pair]) -> list[Prediction]:
        return [self._answer(p.id, localize(*load_pair_images(p.ref, p.tgt), self.cfg)) for p in pairs]

    @staticmethod
    def _answer(pid: str, res: DiffResult) -> Prediction:
        return Prediction(pid, res.box, True, res.explanation(), round(res.score, 4))

    def with_reference(self, ref: Path) -> Callable[[Pair], Prediction]:
        """Line mode: the reference decoded once and prepared once per target size (its working-resolution
        copy and alignment image); each call then answers one target against it."""
        source = load_rgb(ref)
        prepared: dict[tuple[int, int], WorkingReference] = {}

        def answer(pair: Pair) -> Prediction:
            tgt = load_rgb(pair.tgt)
            size = tgt.shape[:2]
            if size not in prepared:
                if source.shape[:2] != size:
                    console.warn(
                        f"reference {ref.name} is {source.shape[1]}x{source.shape[0]}, targets of "
                        f"{size[1]}x{size[0]} get it resized"
                    )
                prepared[size] = working_reference(source, size[0], size[1], self.cfg)
            return self._answer(pair.id, localize(prepared[size], tgt, self.cfg))

        return answer
