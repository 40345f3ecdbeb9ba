"""`differad pair` over the public datasets' own layouts: a tiny tree per dataset, built here with the real
names, depths, file formats and mask conventions, checked record by record; the multi-defect policy; auto."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_helpers import pattern, run_cli

SIZE = 32


def write(path: Path, arr: np.ndarray) -> Path:
    """Any format by suffix (.JPG/.jpg as the datasets ship them, .png for masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr[:, :, ::-1] if arr.ndim == 3 else arr)
    return path


def mask(*regions: tuple[int, int, int, int, int]) -> np.ndarray:
    """A uint8 mask: (x1, y1, x2, y2, value) rectangles, x2/y2 exclusive."""
    m = np.zeros((SIZE, SIZE), np.uint8)
    for x1, y1, x2, y2, v in regions:
        m[y1:y2, x1:x2] = v
    return m


SMALL, LARGE = (2, 2, 5, 4), (16, 10, 28, 26)  # 6 px and 192 px
UNION = (2, 2, 28, 26)


def pair(monkeypatch, data: Path, out: Path, *args: object) -> dict[str, dict]:
    assert run_cli(monkeypatch, "pair", "--data", data, "--out", out, "--no-cache", *args) == 0
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


# ------------------------------------------------------------------------------------------------ trees


def make_visa(root: Path) -> Path:
    top = root / "VisA_20220922"
    imgs = top / "candle" / "Data" / "Images"
    write(imgs / "Normal" / "0000.JPG", pattern("hstripes", 0))
    write(imgs / "Normal" / "0001.JPG", pattern("vstripes", 1))
    write(imgs / "Normal" / "0002.JPG", pattern("vstripes", 2))  # a test normal: never a reference
    write(imgs / "Anomaly" / "000.JPG", pattern("hstripes", 3))
    # VisA masks hold small values: the larger region is 1, the smaller 2 (half the maximum would lose it)
    write(top / "candle" / "Data" / "Masks" / "Anomaly" / "000.png", mask((*SMALL, 2), (*LARGE, 1)))
    (top / "split_csv").mkdir(parents=True)
    (top / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,train,normal,candle/Data/Images/Normal/0001.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0002.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/404.JPG,candle/Data/Masks/Anomaly/404.png\n"
    )
    return top


def make_loco(root: Path) -> Path:
    top = root / "mvtec_loco_anomaly_detection"
    cat = top / "juice_bottle"
    write(cat / "train" / "good" / "000.png", pattern("hstripes", 0))
    write(cat / "train" / "good" / "001.png", pattern("checker", 1))
    write(cat / "validation" / "good" / "000.png", pattern("vstripes", 2))  # the pool includes validation
    write(cat / "test" / "good" / "000.png", pattern("vstripes", 3))
    write(cat / "test" / "logical_anomalies" / "000.png", pattern("hstripes", 4))
    write(cat / "test" / "structural_anomalies" / "000.png", pattern("checker", 5))
    gt = cat / "ground_truth"
    write(gt / "logical_anomalies" / "000" / "000.png", mask((*SMALL, 255)))  # one file per defect,
    write(gt / "logical_anomalies" / "000" / "001.png", mask((*LARGE, 253)))  # each with its type's level
    write(gt / "structural_anomalies" / "000" / "000.png", mask((*LARGE, 255)))
    (cat / "ground_truth" / "logical_anomalies" / "000" / "defects_config.json").write_text("[]")
    return top


def make_ad2(root: Path) -> Path:
    top = root / "mvtec_ad_2"
    cat = top / "sheet_metal"
    write(cat / "train" / "good" / "000_regular.png", pattern("hstripes", 0))
    write(cat / "validation" / "good" / "000_regular.png", pattern("checker", 1))
    write(cat / "test_public" / "good" / "000_regular.png", pattern("checker", 2))
    write(cat / "test_public" / "bad" / "000_regular.png", pattern("hstripes", 3))
    write(cat / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png", mask((*LARGE, 255)))
    write(cat / "test_private" / "000_regular.png", pattern("checker", 4))  # no labels: never a target
    write(cat / "test_private_mixed" / "000_mixed.png", pattern("checker", 5))
    return top


def make_ksdd2(root: Path) -> Path:
    top = root / "KolektorSDD2"
    for split, name, kind, m in (
        ("train", "10000", "hstripes", mask()),
        ("train", "10001", "checker", mask()),
        ("train", "10002", "vstripes", mask((*LARGE, 255))),  # defective: never a reference
        ("test", "20000", "hstripes", mask((*LARGE, 255))),
        ("test", "20001", "vstripes", mask()),  # empty ground truth: a normal image
    ):
        write(top / split / f"{name}.png", pattern(kind, int(name) % 7))
        write(top / split / f"{name}_GT.png", m)
    return top


def make_realiad(root: Path) -> Path:
    top = root / "Real-IAD"
    cat = top / "realiad_256" / "audiojack"
    files = {
        "OK/S0001/audiojack_0001_OK_C1_20231021130059.jpg": "hstripes",
        "OK/S0001/audiojack_0001_OK_C2_20231021130059.jpg": "checker",
        "OK/S0002/audiojack_0002_OK_C1_20231021130101.jpg": "dark",
        "OK/S0002/audiojack_0002_OK_C2_20231021130101.jpg": "vstripes",
        "OK/S0003/audiojack_0003_OK_C1_20231021130103.jpg": "hstripes",
        "NG/AK/S0010/audiojack_0010_NG_C1_20231021130200.jpg": "checker",  # looks like C2, is C1
        "NG/AK/S0010/audiojack_0010_NG_C2_20231021130200.jpg": "checker",  # defect out of sight
    }
    for rel, kind in files.items():
        write(cat / rel, pattern(kind, len(rel)))
    write(cat / "NG/AK/S0010/audiojack_0010_NG_C1_20231021130200.png", mask((*SMALL, 255), (*LARGE, 255)))
    ok = [{"category": "audiojack", "anomaly_class": "OK", "image_path": r, "mask_path": None} for r in files]
    doc = {
        "meta": {"prefix": "", "normal_class": "OK"},
        "train": ok[:4],
        "test": [
            ok[4],
            {
                "category": "audiojack", "anomaly_class": "AK", "image_path": list(files)[5],
                "mask_path": "NG/AK/S0010/audiojack_0010_NG_C1_20231021130200.png",
            },
            {"category": "audiojack", "anomaly_class": "AK", "image_path": list(files)[6], "mask_path": None},
        ],
    }  # fmt: skip
    (top / "realiad_jsons" / "realiad_jsons").mkdir(parents=True)
    (top / "realiad_jsons" / "realiad_jsons" / "audiojack.json").write_text(json.dumps(doc))
    return top


def make_deeppcb(root: Path) -> Path:
    top = root / "DeepPCB"
    g = top / "PCBData" / "group00041"
    write(g / "00041" / "00041000_test.jpg", pattern("checker", 0)[:, :, 0])  # binarized grayscale
    write(g / "00041" / "00041000_temp.jpg", pattern("checker", 1)[:, :, 0])
    (g / "00041_not").mkdir(parents=True)
    # spaces as the files have them, a comma line as the README says, a box reaching past the image
    (g / "00041_not" / "00041000.txt").write_text(
        f"{' '.join(map(str, LARGE))} 1\n2,2,5,4,3\n30 30 40 40 2\n"
    )
    (top / "PCBData" / "test.txt").write_text(
        "group00041/00041/00041000.jpg group00041/00041_not/00041000.txt\n"
        "group00041/00041/00041999.jpg group00041/00041_not/00041999.txt\n"
    )
    (top / "PCBData" / "trainval.txt").write_text("")
    return top


# ------------------------------------------------------------------------------------------------ records


def test_visa_labels_from_split_csv_and_small_mask_values(tmp_path, monkeypatch, capsys) -> None:
    top = make_visa(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "visa", "--k", 2)
    assert "1 file(s) named in split_csv/1cls.csv missing" in capsys.readouterr().err
    assert set(recs) == {"candle/Data/Images/Normal/0002", "candle/Data/Images/Anomaly/000"}
    ano = recs["candle/Data/Images/Anomaly/000"]
    assert ano["box"] == list(LARGE) and ano["n_components"] == 2 and ano["label"] == 1
    assert ano["subset"] == "anomaly" and ano["category"] == "candle"
    assert ano["ref"].endswith("Normal/0000.JPG")  # hstripes
    good = recs["candle/Data/Images/Normal/0002"]
    assert good["label"] == 0 and good["subset"] == "good"
    assert good["ref"].endswith("Normal/0001.JPG")  # vstripes; 0002 itself is not in the pool
    assert all(not r.endswith("0002.JPG") for r in good["refs"])


def test_mvtec_loco_unions_the_mask_files_and_pools_validation(tmp_path, monkeypatch) -> None:
    top = make_loco(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "mvtec_loco", "--k", 3)
    assert set(recs) == {
        "juice_bottle/test/good/000",
        "juice_bottle/test/logical_anomalies/000",
        "juice_bottle/test/structural_anomalies/000",
    }
    logical = recs["juice_bottle/test/logical_anomalies/000"]
    assert logical["box"] == list(LARGE) and logical["n_components"] == 2
    assert logical["subset"] == "logical_anomalies" and logical["ref"].endswith("train/good/000.png")
    assert recs["juice_bottle/test/good/000"]["ref"].endswith("validation/good/000.png")  # vstripes
    union = pair(monkeypatch, top, tmp_path / "u.jsonl", "--layout", "mvtec_loco", "--multi", "union")
    assert union["juice_bottle/test/logical_anomalies/000"]["box"] == list(UNION)
    dropped = pair(monkeypatch, top, tmp_path / "d.jsonl", "--layout", "mvtec_loco", "--multi", "drop")
    assert set(dropped) == set(recs) - {"juice_bottle/test/logical_anomalies/000"}


def test_mvtec_ad2_never_targets_the_unlabelled_private_sets(tmp_path, monkeypatch, capsys) -> None:
    top = make_ad2(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "mvtec_ad2", "--k", 2)
    assert "2 unlabelled image(s)" in capsys.readouterr().err
    assert set(recs) == {
        "sheet_metal/test_public/good/000_regular",
        "sheet_metal/test_public/bad/000_regular",
    }
    bad = recs["sheet_metal/test_public/bad/000_regular"]
    assert (
        bad["box"] == list(LARGE) and bad["label"] == 1 and bad["ref"].endswith("train/good/000_regular.png")
    )
    assert recs["sheet_metal/test_public/good/000_regular"]["ref"].endswith("validation/good/000_regular.png")
    assert not any("test_private" in r for rec in recs.values() for r in rec["refs"])


def test_ksdd2_labels_from_gt_and_defective_training_images_are_no_references(tmp_path, monkeypatch) -> None:
    top = make_ksdd2(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "ksdd2", "--k", 8)
    assert set(recs) == {"ksdd2/test/20000", "ksdd2/test/20001"}
    assert recs["ksdd2/test/20000"]["box"] == list(LARGE) and recs["ksdd2/test/20000"]["label"] == 1
    assert recs["ksdd2/test/20001"]["box"] == [0, 0, 0, 0] and recs["ksdd2/test/20001"]["label"] == 0
    for rec in recs.values():
        assert sorted(Path(r).name for r in rec["refs"]) == ["10000.png", "10001.png"]
    train = pair(monkeypatch, top, tmp_path / "t.jsonl", "--layout", "ksdd2", "--split", "train")
    assert set(train) == {"ksdd2/train/10000", "ksdd2/train/10001"}
    assert train["ksdd2/train/10000"]["refs"] == ["KolektorSDD2/train/10001.png"]


def test_realiad_references_come_from_the_same_camera_view(tmp_path, monkeypatch, capsys) -> None:
    top = make_realiad(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "realiad", "--k", 8)
    assert "1 defect image(s) without a mask skipped in audiojack" in capsys.readouterr().err
    ng = recs["audiojack/NG/AK/S0010/audiojack_0010_NG_C1_20231021130200"]
    assert ng["view"] == "C1" and ng["subset"] == "AK" and ng["label"] == 1
    assert ng["box"] == list(LARGE) and ng["n_components"] == 2
    # the checker-like C1 target gets C1 references only, though a C2 image is the closest texture
    assert sorted(Path(r).name.split("_")[3] for r in ng["refs"]) == ["C1", "C1"]
    ok = recs["audiojack/OK/S0003/audiojack_0003_OK_C1_20231021130103"]
    assert ok["label"] == 0 and ok["ref"].endswith("audiojack_0001_OK_C1_20231021130059.jpg")
    assert len(recs) == 2


def test_deeppcb_template_is_the_reference_and_boxes_are_used_as_annotated(
    tmp_path, monkeypatch, capsys
) -> None:
    top = make_deeppcb(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "deeppcb")
    err = capsys.readouterr().err
    assert "file(s) named in test.txt missing" in err and "00041999_test.jpg" in err
    rec = recs["deeppcb/group00041/00041/00041000_test"]
    assert rec["ref"] == "DeepPCB/PCBData/group00041/00041/00041000_temp.jpg" and rec["refs"] == [rec["ref"]]
    assert rec["box"] == list(LARGE) and rec["n_components"] == 3 and "ref_similarity" not in rec
    union = pair(monkeypatch, top, tmp_path / "u.jsonl", "--layout", "deeppcb", "--multi", "union")
    assert union[rec["id"]]["box"] == [2, 2, SIZE, SIZE]  # the box past the image is clipped to it


# ------------------------------------------------------------------------------------------ auto, bad input

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "visa": make_visa,
    "mvtec_loco": make_loco,
    "mvtec_ad2": make_ad2,
    "ksdd2": make_ksdd2,
    "realiad": make_realiad,
    "deeppcb": make_deeppcb,
}


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_auto_detects_each_layout_and_says_so(tmp_path, monkeypatch, capsys, layout) -> None:
    top = BUILDERS[layout](tmp_path)
    auto = pair(monkeypatch, top, tmp_path / "a.jsonl", "--layout", "auto")
    assert f"layout: {layout} (detected)" in capsys.readouterr().err
    named = pair(monkeypatch, top, tmp_path / "n.jsonl", "--layout", layout)
    assert auto == named


def test_a_tree_matching_no_layout_exits_2_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "stuff" / "a").mkdir(parents=True)
    write(tmp_path / "stuff" / "a" / "x.png", pattern("dark"))
    code = run_cli(
        monkeypatch, "pair", "--data", tmp_path / "stuff", "--layout", "auto", "--out", tmp_path / "o"
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "matches no known layout" in err and "split_csv/1cls.csv" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    assert run_cli(monkeypatch, "pair", "--data", tmp_path, "--multi", "all", "--out", tmp_path / "o") == 2
    assert "unknown multi 'all'" in capsys.readouterr().err


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_each_layout_refuses_an_empty_tree(tmp_path, monkeypatch, capsys, layout) -> None:
    (tmp_path / "empty").mkdir()
    code = run_cli(
        monkeypatch, "pair", "--data", tmp_path / "empty", "--layout", layout, "--out", tmp_path / "o"
    )
    assert code == 2 and "expected" in capsys.readouterr().err


def test_choose_box_policies() -> None:
    from differad_cli.pair.layouts.base import choose_box

    boxes, areas = [SMALL, LARGE], [6, 192]
    assert choose_box(boxes, areas, "largest") == LARGE
    assert choose_box(boxes, areas, "union") == UNION
    assert choose_box(boxes, areas, "drop") is None
    assert choose_box([SMALL], [6], "drop") == SMALL
    assert choose_box([], [], "drop") == (0, 0, 0, 0)
