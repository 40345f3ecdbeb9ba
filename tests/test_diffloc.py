"""The training-free diff localizer on generated pairs: shifted/rotated references, brightness, defects."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from differad_cli.core.boxes import iou
from differad_cli.predict.backends.diff import DiffConfig, localize


def scene(seed: int, size: int = 192) -> np.ndarray:
    """A cluttered product-like image: coloured discs on a grey background, slight sensor noise."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 90, np.uint8)
    for _ in range(25):
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, (x, y), int(rng.integers(4, size // 9)), colour, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def move(img: np.ndarray, dx: float, dy: float, angle: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def relight(img: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


CASES = [(0, 4.0, -3.0, 2.0), (1, -5.0, 2.0, -3.5), (2, 2.5, 5.0, 4.0), (3, 0.0, 0.0, 0.0)]


@pytest.mark.parametrize(("seed", "dx", "dy", "angle"), CASES)
def test_finds_pasted_square_at_shifted_rotated_reference(
    seed: int, dx: float, dy: float, angle: float
) -> None:
    ref = scene(seed)
    tgt = relight(move(ref, dx, dy, angle), 1.08, -6)
    rng = np.random.default_rng(seed + 50)
    x, y = (int(v) for v in rng.integers(30, 140, 2))
    tgt[y : y + 20, x : x + 24] = (235, 20, 200)
    res = localize(ref, tgt)
    assert res.anomalous and res.score > 0
    assert iou(res.box, (x, y, x + 24, y + 20)) >= 0.5, (res.box, (x, y))
    assert abs(abs(res.rotation) - abs(angle)) < 1.0  # the alignment really estimated the rotation


@pytest.mark.parametrize(("seed", "dx", "dy", "angle"), CASES)
def test_normal_when_only_shifted_rotated_or_relit(seed: int, dx: float, dy: float, angle: float) -> None:
    ref = scene(seed + 10)
    for tgt in (
        move(ref, dx, dy, angle),
        relight(move(ref, dx, dy, angle), 0.85, 12),
        relight(ref, 1.2, -10),
    ):
        res = localize(ref, tgt)
        assert not res.anomalous and res.box == (0, 0, 0, 0), res


def test_alignment_off_produces_false_alarm_on_shift() -> None:
    """The alignment step is what makes shifted pairs normal (checks the test above can fail)."""
    ref = scene(7)
    assert localize(ref, move(ref, 6, -4, 3.0), DiffConfig(align=False)).anomalous


def test_threshold_and_min_area_control_detection() -> None:
    ref = scene(5)
    tgt = ref.copy()
    tgt[60:66, 60:66] = np.clip(tgt[60:66, 60:66].astype(int) + 45, 0, 255)  # faint, small defect
    assert localize(ref, tgt, DiffConfig(threshold=25)).anomalous
    # pixel seeds need 80; the window-mean seeds (area_ratio x threshold) still see the raised patch at 80
    # and stop seeing it once its window mean (~35 of 255) is under that level
    assert not localize(ref, tgt, DiffConfig(threshold=80, area_window=0)).anomalous
    assert localize(ref, tgt, DiffConfig(threshold=80)).anomalous
    assert not localize(ref, tgt, DiffConfig(threshold=160)).anomalous
    assert not localize(ref, tgt, DiffConfig(threshold=25, min_area=0.01)).anomalous


def test_box_in_target_pixels_for_large_images_and_other_ref_size() -> None:
    ref = cv2.resize(scene(4, 200), (600, 450))
    tgt = ref.copy()
    tgt[300:360, 100:190] = (0, 255, 0)
    res = localize(cv2.resize(ref, (300, 225)), tgt, keep_map=True)  # half-size reference
    assert iou(res.box, (100, 300, 190, 360)) >= 0.6
    assert 0 <= res.box[0] < res.box[2] <= 600 and 0 <= res.box[1] < res.box[3] <= 450
    assert res.diff_map is not None and res.diff_map.shape == (192, 256)
    assert "region covering" in res.explanation()


def test_flat_and_tiny_images_do_not_crash() -> None:
    flat = np.full((40, 40, 3), 128, np.uint8)
    assert not localize(flat, flat).anomalous
    tiny = np.zeros((8, 8, 3), np.uint8)
    tiny2 = tiny.copy()
    tiny2[2:6, 2:6] = 255
    res = localize(tiny, tiny2)
    assert res.anomalous
    assert res.box[0] <= 2 and res.box[1] <= 2 and res.box[2] >= 6 and res.box[3] >= 6  # blur widens it
    assert "no region" in localize(flat, flat).explanation()


def test_explanation_reports_how_the_target_moved_from_the_reference() -> None:
    ref = scene(4)
    res = localize(ref, move(ref, 8.0, 5.0, 0.0))
    assert abs(res.shift[0] - 8.0) < 0.5 and abs(res.shift[1] - 5.0) < 0.5, res.shift
    assert "target moved (+8.0, +5.0) px" in res.explanation()
    res = localize(ref, move(ref, 8.0, 5.0, 3.0))  # rotated about the centre: the centre moved (8, 5)
    assert abs(res.shift[0] - 8.0) < 0.5 and abs(res.shift[1] - 5.0) < 0.5, res.shift
    assert abs(res.rotation - 3.0) < 0.1 and f"rotated {res.rotation:+.2f} deg" in res.explanation()
