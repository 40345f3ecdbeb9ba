"""Mask and image geometry of Algorithm 1: foreground, one connected component, blending, and the
jitter/rotation applied to target and mask together."""

from __future__ import annotations

import cv2
import numpy as np

from differad_cli.core.boxes import IntBox, mask_box


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
