"""The shared core: pair/prediction records, box helpers, image loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from differad_cli.core import boxes
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import list_images, load_mask, load_rgb, save_png
from differad_cli.core.records import (
    Pair,
    Prediction,
    RecordError,
    check_files,
    iter_jsonl,
    read_pairs,
    read_predictions,
    write_pairs,
    write_predictions,
)

# ------------------------------------------------------------------------------------------------ boxes


def test_iou_hand_computed() -> None:
    assert boxes.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert boxes.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert boxes.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges: exclusive x2
    assert boxes.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_iou_many_matches_scalar() -> None:
    rng = np.random.default_rng(0)
    a = np.sort(rng.integers(0, 100, size=(500, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    b = np.sort(rng.integers(0, 100, size=(500, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    a = a[:, [0, 1, 2, 3]]
    vec = boxes.iou_many(a, b)
    ref = [boxes.iou(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    np.testing.assert_allclose(vec, ref)


def test_mask_box_is_tight_and_exclusive() -> None:
    m = np.zeros((20, 30), bool)
    m[3:7, 10:12] = True
    assert boxes.mask_box(m) == (10, 3, 12, 7)
    assert boxes.mask_box(np.zeros((5, 5), bool)) == boxes.ZERO_BOX


def test_coordinate_round_trips() -> None:
    b = (64, 32, 128, 200)
    assert boxes.to_1000(b, 256, 256) == (250, 125, 500, 782)  # outward: 781.25 -> 782
    assert boxes.from_1000(boxes.to_1000(b, 256, 256), 256, 256) == (64, 32, 128, 200)
    r = boxes.to_resized(b, 256, 256, 252, 252)
    back = boxes.from_resized(r, 256, 256, 252, 252)
    assert max(abs(x - y) for x, y in zip(back, b, strict=True)) <= 1  # rounding at a smaller scale
    assert boxes.to_resized(b, 256, 256, 512, 512) == (128, 64, 256, 400)
    assert boxes.to_1000(boxes.ZERO_BOX, 100, 100) == boxes.ZERO_BOX
    assert boxes.from_1000((0, 0, 2000, 1500), 100, 50) == (0, 0, 100, 50)  # clipped


def test_thin_boxes_never_collapse_when_scaled_down() -> None:
    for w in (1024, 1600, 2448, 3000):
        for x in range(0, w - 1, 7):
            b = boxes.to_1000((x, 10, x + 1, 11), w, w)
            assert b[2] > b[0] and b[3] > b[1] and b[2] <= 1000 and b != boxes.ZERO_BOX
            r = boxes.to_resized((x, 10, x + 1, 11), w, w, 980, 980)
            assert r[2] > r[0] and r[3] > r[1] and r[2] <= 980
    assert boxes.to_1000((2999, 2999, 3000, 3000), 3000, 3000) == (999, 999, 1000, 1000)
    big = boxes.to_1000((0, 0, 3000, 3000), 3000, 3000)
    assert big == (0, 0, 1000, 1000)


def test_order_and_clip() -> None:
    assert boxes.order_box((10, 20, 0, 5)) == (0, 5, 10, 20)
    assert boxes.clip_box((-5, -1, 300, 40), 256, 32) == (0, 0, 256, 32)


# ------------------------------------------------------------------------------------------------ records


def _png(path: Path, size: tuple[int, int] = (16, 12), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


def test_pairs_round_trip_relative_paths_and_unknown_keys(tmp_path: Path) -> None:
    _png(tmp_path / "ref" / "a.png")
    _png(tmp_path / "tgt" / "a.png")
    rec = {
        "id": "a", "ref": "ref/a.png", "tgt": "tgt/a.png", "mask": None, "box": [1, 2, 5, 6], "label": 1,
        "width": 16, "height": 12, "category": "c", "my_key": {"x": 1},
    }  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text(json.dumps(rec) + "\n")
    pairs = read_pairs(tmp_path / "pairs.jsonl")
    assert pairs[0].tgt == (tmp_path / "tgt" / "a.png").resolve()
    assert pairs[0].extra == {"my_key": {"x": 1}}
    write_pairs(tmp_path / "out.jsonl", pairs)
    back = json.loads((tmp_path / "out.jsonl").read_text())
    assert back["tgt"] == "tgt/a.png" and back["my_key"] == {"x": 1} and back["box"] == [1, 2, 5, 6]
    assert check_files(pairs) == []


def test_missing_size_is_read_from_the_image(tmp_path: Path) -> None:
    _png(tmp_path / "t.png", (40, 30))
    rec = {"id": 1, "ref": "t.png", "tgt": "t.png", "box": [0, 0, 0, 0]}
    p = Pair.from_dict(rec, tmp_path)
    assert (p.width, p.height, p.label, p.id) == (40, 30, 0, "1")


@pytest.mark.parametrize(
    ("rec", "needle"),
    [
        (
            {"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, 5, 5], "label": 0, "width": 9, "height": 9},
            "zero box",
        ),
        (
            {"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, 0, 0], "label": 1, "width": 9, "height": 9},
            "zero box",
        ),
        ({"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, 50, 5], "width": 9, "height": 9}, "outside"),
        ({"id": "a", "ref": "r", "tgt": "t", "box": [5, 0, 2, 5], "width": 9, "height": 9}, "degenerate"),
        (
            {"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, "x", 5], "width": 9, "height": 9},
            "finite numbers",
        ),
        ({"id": "a", "tgt": "t", "box": [0, 0, 0, 0], "width": 9, "height": 9}, "'ref'"),
    ],
)
def test_invalid_records_are_reported_with_line(tmp_path: Path, rec: dict, needle: str) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps(rec) + "\n")
    with pytest.raises(RecordError) as e:
        read_pairs(f)
    assert needle in str(e.value) and "p.jsonl:1" in str(e.value)


def test_malformed_json_and_duplicates(tmp_path: Path) -> None:
    good = {"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, 0, 0], "width": 9, "height": 9}
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps(good) + "\n" + "{not json\n")
    with pytest.raises(RecordError, match=r"p\.jsonl:2: malformed JSON"):
        read_pairs(f)
    f.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(RecordError, match=r"duplicate id 'a' \(first at line 1\)"):
        read_pairs(f)
    f.write_text("\n")
    with pytest.raises(BadInput, match="no pair records"):
        read_pairs(f)


def test_partial_last_line_tolerated_only_when_asked(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": 1}\n{"id": 2')
    assert [o["id"] for _, o in iter_jsonl(f, allow_partial_last=True)] == [1]
    with pytest.raises(RecordError):
        list(iter_jsonl(f))


def test_predictions_round_trip_and_invalid_coordinates(tmp_path: Path) -> None:
    f = tmp_path / "pred.jsonl"
    write_predictions(f, [Prediction("a", (1, 2, 3, 4), True, "t", 0.5, {"k": 1})])
    f.write_text(f.read_text() + '{"id": "b", "box": [NaN, 0, 1, 1], "valid": true}\n{"id": "c"}\n')
    a, b, c = read_predictions(f)
    assert (a.box, a.valid, a.score, a.extra) == ((1, 2, 3, 4), True, 0.5, {"k": 1})
    assert not b.valid and not c.valid and not b.is_anomalous


# ------------------------------------------------------------------------------------------------ images


def test_load_rgb_converts_gray_rgba_and_16bit(tmp_path: Path) -> None:
    gray = _png(tmp_path / "g.png", (8, 6), "L")
    rgba = _png(tmp_path / "a.png", (8, 6), "RGBA")
    arr16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    for p in (gray, rgba, tmp_path / "d.png"):
        a = load_rgb(p)
        assert a.shape == (6, 8, 3) and a.dtype == np.uint8
    a16 = load_rgb(tmp_path / "d.png")
    assert a16[-1, -1, 0] == round(47 * 1365 * 255 / 65535)


def test_load_errors_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_rgb(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match="cannot read"):
        load_rgb(bad)
    big = _png(tmp_path / "big.png", (200, 200), "L")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(big, max_pixels=10_000)


def test_save_png_round_trip_and_mask(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    save_png(tmp_path / "x.png", img)
    np.testing.assert_array_equal(load_rgb(tmp_path / "x.png"), img)
    m = np.zeros((10, 12), bool)
    m[2:4, 5:9] = True
    save_png(tmp_path / "m.png", m)
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), m)
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_list_images_recursive_sorted_skips_hidden(tmp_path: Path) -> None:
    _png(tmp_path / "b" / "2.png")
    _png(tmp_path / "a" / "1.JPG")
    _png(tmp_path / ".hidden" / "3.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a/1.JPG", "b/2.png"]


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from differad_cli.core.io import FILE_MODE
    from differad_cli.core.records import write_jsonl

    save_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    write_jsonl(tmp_path / "x.jsonl", [{"id": 1}])
    for name in ("x.png", "x.jsonl"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == FILE_MODE  # not mkstemp's 0600


def test_load_mask_ignores_compression_speckles_and_accepts_0_1_masks(tmp_path: Path) -> None:
    m = np.zeros((20, 20), np.uint8)
    m[5:10, 5:10] = 255
    m[15, 15] = 6  # a JPEG-like speckle
    Image.fromarray(m).save(tmp_path / "m.png")
    assert boxes.mask_box(load_mask(tmp_path / "m.png")) == (5, 5, 10, 10)
    Image.fromarray((m == 255).astype(np.uint8)).save(tmp_path / "m01.png")  # a 0/1 mask
    assert boxes.mask_box(load_mask(tmp_path / "m01.png")) == (5, 5, 10, 10)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty.png")
    assert not load_mask(tmp_path / "empty.png").any()


def test_write_pairs_relative_paths_match_the_per_path_resolution(tmp_path) -> None:
    """write_pairs resolves each folder once; the result is what resolving every path gives: under the
    manifest's folder relative, elsewhere (also through a symlink leaving it) absolute."""
    from differad_cli.core.records import Pair, write_pairs

    outside = tmp_path / "outside"
    (outside / "imgs").mkdir(parents=True)
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (root / "link").symlink_to(outside / "imgs", target_is_directory=True)
    (root / "file.png").symlink_to(outside / "imgs")
    paths = [root / "imgs" / "a.png", outside / "imgs" / "b.png", root / "link" / "c.png", root / "file.png"]
    pair = Pair("x", paths[0], paths[1], (0, 0, 0, 0), 0, 4, 4, refs=paths)
    write_pairs(root / "pairs.jsonl", [pair])
    rec = json.loads((root / "pairs.jsonl").read_text())
    assert rec == pair.to_dict(root.resolve())  # the per-path (unmemoized) answer
    assert rec["refs"] == ["imgs/a.png", *map(str, paths[1:])]
