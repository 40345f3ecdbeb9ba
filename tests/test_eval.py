from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from differad_cli.cli.app import app
from differad_cli.core.images import save_png
from differad_cli.core.records import Pair, write_jsonl
from differad_cli.eval.maps import calibrate_threshold, load_map, map_box, split_calibration

runner = CliRunner()
SIZE = 32


def _images(tmp: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    (tmp / "img").mkdir(exist_ok=True)
    for i in range(n):
        save_png(tmp / "img" / f"r{i}.png", rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
        save_png(tmp / "img" / f"t{i}.png", rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def _pair_rec(i: int, box, category: str = "cat", subset: str | None = None) -> dict:
    rec = {"id": f"p{i}", "ref": f"img/r{i}.png", "tgt": f"img/t{i}.png", "box": list(box),
           "label": int(any(box)), "width": SIZE, "height": SIZE, "category": category}  # fmt: skip
    if subset:
        rec["subset"] = subset
    return rec


@pytest.fixture()
def small_set(tmp_path: Path) -> Path:
    """4 pairs: two anomalous (one hit, one miss), two normal (one right, one unparsable)."""
    _images(tmp_path, 4)
    write_jsonl(tmp_path / "pairs.jsonl", [
        _pair_rec(0, (4, 4, 12, 12), "a", "easy"), _pair_rec(1, (20, 20, 30, 30), "b", "hard"),
        _pair_rec(2, (0, 0, 0, 0), "a", "easy"), _pair_rec(3, (0, 0, 0, 0), "b", "hard"),
    ])  # fmt: skip
    write_jsonl(tmp_path / "pred.jsonl", [
        {"id": "p0", "box": [4, 4, 12, 12], "valid": True, "text": "<answer>(125,125),(375,375)</answer>"},
        {"id": "p1", "box": [0, 0, 5, 5], "valid": True, "text": None},
        {"id": "p2", "box": [0, 0, 0, 0], "valid": True, "text": None},
        {"id": "p3", "box": [0, 0, 0, 0], "valid": False, "text": "garbage"},
    ])  # fmt: skip
    return tmp_path


def test_eval_end_to_end(small_set: Path) -> None:
    out = small_set / "eval"
    args = ["eval", "--pairs", str(small_set / "pairs.jsonl"), "--pred", str(small_set / "pred.jsonl")]
    res = runner.invoke(app, [*args, "--out", str(out), "--overlays", "2"])
    assert res.exit_code == 0, res.output
    assert "Overall" in res.stdout and "Per category" in res.stdout and "Per subset" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    o = metrics["overall"]
    # scores 1, 0, 1, 0 -> mIoU 0.5, Acc 0.5; flagged p0 and p1 -> detection P 1/2, R 1/2.
    assert (o["n"], o["n_ano"], o["n_nor"], o["invalid"]) == (4, 2, 2, 1)
    assert o["miou"] == pytest.approx(0.5) and o["acc_0.3"] == pytest.approx(0.5)
    assert o["f1_0.3"] == pytest.approx(0.5) and o["image_f1"] == pytest.approx(1.0)
    assert set(metrics["per_category"]) == {"a", "b"} and set(metrics["per_subset"]) == {"easy", "hard"}
    assert metrics["per_category"]["a"]["miou"] == pytest.approx(1.0)
    report = (out / "report.md").read_text()
    assert "| all |" in report and "iou_hist.png" in report
    overlays = sorted((out / "overlays").glob("*.png"))
    assert [p.name for p in overlays] == ["001_p1.png", "002_p3.png"]  # the two zero-score cases
    img = cv2.imread(str(overlays[0]))
    assert img.shape[1] > 2 * 256 - 1  # reference beside target, upscaled for legibility
    assert cv2.imread(str(out / "iou_hist.png")) is not None
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [1.0, 0.0, 1.0, 0.0]
    # --json prints metrics.json itself; another threshold renames the keys
    res = runner.invoke(app, [*args, "--out", str(out), "--json", "--iou-threshold", "0.5", "-q"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed == json.loads((out / "metrics.json").read_text())
    assert "acc_0.5" in printed["overall"] and "acc_0.3" not in printed["overall"]


def test_eval_missing_and_unknown_predictions_are_reported(small_set: Path) -> None:
    write_jsonl(small_set / "partial.jsonl", [
        {"id": "p0", "box": [4, 4, 12, 12], "valid": True},
        {"id": "ghost", "box": [0, 0, 1, 1], "valid": True},
    ])  # fmt: skip
    res = runner.invoke(app, ["eval", "--pairs", str(small_set / "pairs.jsonl"), "--pred",
                              str(small_set / "partial.jsonl"), "--out", str(small_set / "e")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "3 pair(s) have no prediction" in res.output and "ghost" in res.output
    o = json.loads((small_set / "e" / "metrics.json").read_text())["overall"]
    assert o["invalid"] == 3 and o["missing"] == 3


def test_eval_bad_input_exit_2(small_set: Path) -> None:
    pairs, pred, out = str(small_set / "pairs.jsonl"), str(small_set / "pred.jsonl"), str(small_set / "o")
    (small_set / "bad.jsonl").write_text('{"id": "p0", "box": [1,2,3,4]}\n{"id": broken\n')
    (small_set / "latin1.jsonl").write_bytes('{"id": "p0", "category": "Größe"}\n'.encode("latin-1"))
    write_jsonl(
        small_set / "dup.jsonl", [{"id": "p0", "box": [0, 0, 0, 0]}, {"id": "p0", "box": [0, 0, 0, 0]}]
    )
    cases = {
        "exactly one of --pred": ["--pairs", pairs, "--out", out],
        "exactly one of": ["--pairs", pairs, "--pred", pred, "--maps", str(small_set), "--out", out],
        "bad.jsonl:2": ["--pairs", pairs, "--pred", str(small_set / "bad.jsonl"), "--out", out],
        "duplicate prediction id": ["--pairs", pairs, "--pred", str(small_set / "dup.jsonl"), "--out", out],
        "file not found": ["--pairs", pairs, "--pred", str(small_set / "nope.jsonl"), "--out", out],
        "anomaly map(s) missing": ["--pairs", pairs, "--maps", str(small_set / "img"), "--out", out],
        "must be in (0, 1]": ["--pairs", pairs, "--pred", pred, "--out", out, "--iou-threshold", "0"],
        "exactly one of --pred PRED.jsonl, --maps DIR, or a backend": [
            "--pairs", pairs, "--pred", pred, "--backend", "diff", "--out", out,
        ],
        "is a file": ["--pairs", pairs, "--pred", pred, "--out", pairs],
        "not UTF-8": ["--pairs", str(small_set / "latin1.jsonl"), "--pred", pred, "--out", out],
        "--seed": ["--pairs", pairs, "--maps", str(small_set), "--seed", "-1", "--out", out],
        "--threshold, --min-area: backend option(s) without a backend": [
            "--pairs", pairs, "--pred", pred, "--out", out, "--threshold", "30", "--min-area", "0.01",
        ],
    }  # fmt: skip
    for needle, args in cases.items():
        res = runner.invoke(app, ["eval", *args])
        assert res.exit_code == 2, (needle, res.output)
        assert needle in res.output, (needle, res.output)
        assert "Traceback" not in res.output
    assert not (small_set / "o" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------- maps


def _maps_set(tmp: Path, n: int = 40) -> tuple[list[Pair], Path]:
    """Synthetic anomaly maps: low noise everywhere, a bright blob on the defect, a dim decoy blob."""
    rng = np.random.default_rng(1)
    maps = tmp / "maps"
    maps.mkdir()
    pairs, recs = [], []
    for i in range(n):
        anomalous = i % 2 == 0
        x, y = int(rng.integers(2, 20)), int(rng.integers(2, 20))
        box = (x, y, x + 8, y + 6) if anomalous else (0, 0, 0, 0)
        amap = rng.uniform(0.0, 0.3, (SIZE, SIZE)).astype(np.float32)
        if anomalous:
            amap[y : y + 6, x : x + 8] = rng.uniform(0.7, 0.9, (6, 8))
            amap[0:2, 30:32] = 0.75  # a small decoy: the largest component must win
        rec = _pair_rec(i, box)
        recs.append(rec)
        pairs.append(Pair(rec["id"], tmp / rec["ref"], tmp / rec["tgt"], box, rec["label"], SIZE, SIZE))
        if i % 5 == 1:  # a 16-bit PNG at twice the target size: resized on load
            big = cv2.resize(amap, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(maps / f"p{i}.png"), np.round(big * 65535).astype(np.uint16))
        else:
            np.save(maps / f"p{i}.npy", amap)
    write_jsonl(tmp / "pairs.jsonl", recs)
    return pairs, maps


def test_map_box_largest_component() -> None:
    a = np.zeros((20, 20), np.float32)
    a[1:3, 1:3] = 1.0
    a[10:15, 5:12] = 0.9
    assert map_box(a, 0.5) == (5, 10, 12, 15)
    assert map_box(a, 0.95) == (1, 1, 3, 3)
    assert map_box(a, 1.0) == (0, 0, 0, 0)


def test_load_map_formats_and_resize(tmp_path: Path) -> None:
    a = np.linspace(0, 1, 16 * 8, dtype=np.float32).reshape(16, 8)
    np.save(tmp_path / "m.npy", a[None])  # (1, H, W) is squeezed
    assert load_map(tmp_path / "m.npy").shape == (16, 8)
    assert load_map(tmp_path / "m.npy", width=4, height=8).shape == (8, 4)
    cv2.imwrite(str(tmp_path / "m.png"), (a * 65535).astype(np.uint16))
    assert load_map(tmp_path / "m.png").max() == 1.0 and load_map(tmp_path / "m.png").min() == 0.0
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0], [0.5, np.inf]]))
    assert np.isfinite(load_map(tmp_path / "nan.npy")).all()


def test_split_is_seeded_and_order_independent(tmp_path: Path) -> None:
    pairs, _ = _maps_set(tmp_path, 20)
    cal, ev = split_calibration(pairs, seed=3)
    cal2, _ = split_calibration(list(reversed(pairs)), seed=3)
    assert [p.id for p in cal] == [p.id for p in cal2] and len(cal) == 6 and len(ev) == 14
    assert {p.id for p in cal} | {p.id for p in ev} == {p.id for p in pairs}
    assert [p.id for p in split_calibration(pairs, seed=4)[0]] != [p.id for p in cal]


def test_calibration_finds_a_separating_threshold(tmp_path: Path) -> None:
    pairs, maps_dir = _maps_set(tmp_path)
    maps = {p.id: next(maps_dir.glob(f"{p.id}.*")) for p in pairs}
    cal = calibrate_threshold(pairs, maps, seed=0)
    assert 0.3 <= cal["threshold"] < 0.7 and cal["cal_f1"] == pytest.approx(1.0)
    assert cal["objective"] == "f1_0.3" and cal["n_candidates"] > 10


def test_eval_maps_cli(tmp_path: Path) -> None:
    _maps_set(tmp_path)
    out = tmp_path / "eval"
    args = [
        "eval",
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--maps",
        str(tmp_path / "maps"),
        "--out",
        str(out),
    ]
    res = runner.invoke(app, [*args, "--seed", "0", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["calibration"]["n_cal"] == 12 and m["calibration"]["n_eval"] == 28
    assert m["overall"]["n"] == 28 and m["overall"]["f1_0.3"] == pytest.approx(1.0)
    assert m["overall"]["miou"] > 0.9
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["split"] for p in preds).count("cal") == 12


def test_load_map_inf_is_most_anomalous_and_empty_file_is_bad_input(tmp_path: Path) -> None:
    from differad_cli.core.errors import BadInput

    a = np.full((64, 64), 0.1, np.float32)
    a[10:20, 30:40] = np.inf
    a[50:52, 0:2] = 0.5
    a[0, 0] = np.nan
    np.save(tmp_path / "m.npy", a)
    m = load_map(tmp_path / "m.npy")
    assert np.isfinite(m).all() and m[15, 35] == m.max() == 0.5 and m[0, 0] == m.min()
    assert map_box(m, 0.25) == (30, 10, 40, 20)  # the +inf block is the largest region
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(BadInput, match=r"not a numeric \.npy anomaly map"):
        load_map(tmp_path / "empty.npy")


@pytest.mark.parametrize(
    "junk",
    [
        "pickled",  # an object array: loading it would run pickle
        "garbage",  # bytes that are no .npy at all
        "truncated",  # a valid header whose data is cut short
        "structured",  # a record dtype, not numbers
        "complex",  # numbers, but not an anomaly score
        "huge",  # a header claiming 10^10 values (nothing that big is ever allocated)
    ],
)
def test_junk_npy_maps_are_one_line_bad_input(tmp_path: Path, junk: str) -> None:
    from differad_cli.core.errors import BadInput

    p = tmp_path / f"{junk}.npy"
    if junk == "pickled":
        np.save(p, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    elif junk == "garbage":
        p.write_bytes(b"\x80\x04this is not an array\x00" * 10)
    elif junk == "truncated":
        np.save(p, np.zeros((64, 64), np.float32))
        p.write_bytes(p.read_bytes()[:-100])
    elif junk == "structured":
        np.save(p, np.zeros((4, 4), dtype=[("a", "f4"), ("b", "i4")]))
    elif junk == "complex":
        np.save(p, np.zeros((4, 4), np.complex64))
    else:
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
        header += " " * (117 - len(header)) + "\n"
        p.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)
    with pytest.raises(BadInput, match=f"^not a numeric \\.npy anomaly map: {re.escape(str(p))}$"):
        load_map(p)


def test_eval_warns_when_a_target_no_longer_matches_its_record(small_set: Path) -> None:
    import json as _json

    recs = [_json.loads(line) for line in (small_set / "pairs.jsonl").read_text().splitlines()]
    recs[0]["width"] += 10
    recs[0]["box"] = [0, 0, 0, 0]
    recs[0]["label"] = 0
    write_jsonl(small_set / "stale.jsonl", recs)
    res = runner.invoke(app, ["eval", "--pairs", str(small_set / "stale.jsonl"), "--pred",
                              str(small_set / "pred.jsonl"), "--out", str(small_set / "o2")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "1 target image(s) differ in size from their record" in res.output
