"""`differad pair` over the public datasets' own layouts: a tiny tree per dataset, built here with the real
names, depths, file formats and mask conventions, checked record by record; the multi-defect policy; auto."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import pattern, run_cli
from layout_trees import (
    LARGE,
    SIZE,
    SMALL,
    UNION,
    make_ad2,
    make_deeppcb,
    make_ksdd2,
    make_loco,
    make_realiad,
    make_visa,
    mask,
    write,
)


def pair(monkeypatch, data: Path, out: Path, *args: object) -> dict[str, dict]:
    assert run_cli(monkeypatch, "pair", "--data", data, "--out", out, "--no-cache", *args) == 0
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


# ------------------------------------------------------------------------------------------------ records


def test_visa_labels_from_split_csv_and_small_mask_values(tmp_path, monkeypatch, capsys) -> None:
    top = make_visa(tmp_path)
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "visa", "--k", 2)
    assert "1 file(s) named in split_csv/1cls.csv missing" in capsys.readouterr().err
    assert set(recs) == {"candle/Data/Images/Normal/0002", "candle/Data/Images/Anomaly/000"}
    ano = recs["candle/Data/Images/Anomaly/000"]
    assert ano["box"] == list(LARGE) and ano["n_components"] == 2 and ano["label"] == 1
    assert ano["subset"] == "anomaly" and ano["category"] == "candle" and ano["defect_type"] == "anomaly"
    assert ano["ref"].endswith("Normal/0000.JPG")  # hstripes
    good = recs["candle/Data/Images/Normal/0002"]
    assert good["label"] == 0 and good["subset"] == "good" and "defect_type" not in good
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
    assert logical["subset"] == logical["defect_type"] == "logical_anomalies"
    assert logical["ref"].endswith("train/good/000.png")
    assert recs["juice_bottle/test/structural_anomalies/000"]["defect_type"] == "structural_anomalies"
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
    assert not any("defect_type" in r for r in recs.values())  # KSDD2 names no defect classes
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
    assert ng["view"] == "C1" and ng["subset"] == ng["defect_type"] == "AK" and ng["label"] == 1
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


# ------------------------------------------------------------------------------------------------ --strict


@pytest.mark.parametrize(
    ("layout", "first"),
    [
        ("visa", "candle/Data/Images/Anomaly/404.JPG"),  # named by the split CSV, not on disk
        ("deeppcb", "group00041/00041/00041999_test.jpg"),  # named by test.txt, not on disk
        ("mvtec_loco", "defects_config.json"),  # a non-image file in an image folder
    ],
)
def test_strict_refuses_what_is_otherwise_skipped_naming_the_first(
    tmp_path, monkeypatch, capsys, layout, first
) -> None:
    top = BUILDERS[layout](tmp_path)
    pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", layout)  # skipped with a count: exit 0
    assert first in capsys.readouterr().err
    out = tmp_path / "s.jsonl"
    code = run_cli(monkeypatch, "pair", "--data", top, "--layout", layout, "--out", out, "--strict")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "error: --strict: " in err[-1] and first in err[-1] and not out.exists()
    assert "skipped" not in err[-1]


@pytest.mark.parametrize("layout", ["ksdd2", "mvtec_ad2", "realiad"])
def test_strict_accepts_complete_trees_and_what_a_dataset_leaves_out_by_design(
    tmp_path, monkeypatch, layout
) -> None:
    """MVTec AD 2's private test sets carry no labels; a Real-IAD view may not see the defect (no mask)."""
    top = BUILDERS[layout](tmp_path)
    assert pair(monkeypatch, top, tmp_path / "s.jsonl", "--layout", layout, "--strict")


def test_an_unreadable_image_is_counted_or_refused_under_strict(tmp_path, monkeypatch, capsys) -> None:
    top = make_ksdd2(tmp_path)
    for split, name in (("test", "20002"), ("train", "10003")):  # a target and a pool image
        (top / split / f"{name}.png").write_bytes(b"not a png")
        write(top / split / f"{name}_GT.png", mask())
    recs = pair(monkeypatch, top, tmp_path / "p.jsonl", "--layout", "ksdd2", "--k", 8)
    assert len(recs) == 2 and "skipped 1 (1 unreadable)" in capsys.readouterr().err
    assert all(
        sorted(Path(r).name for r in rec["refs"]) == ["10000.png", "10001.png"] for rec in recs.values()
    )
    code = run_cli(
        monkeypatch, "pair", "--data", top, "--layout", "ksdd2", "--out", tmp_path / "s", "--strict"
    )
    err = capsys.readouterr().err
    assert code == 2 and "--strict: unreadable image" in err and "train/10003.png" in err  # the first met
