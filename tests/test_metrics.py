from __future__ import annotations

from pathlib import Path

import pytest

from differad_cli.core.records import Pair, Prediction
from differad_cli.eval.metrics import metric_keys, score

A_BOX, B_BOX, ZERO = (0, 0, 10, 10), (50, 50, 60, 60), (0, 0, 0, 0)


def _pair(pid: str, box, category: str, subset: str | None) -> Pair:
    label = 0 if box == ZERO else 1
    return Pair(pid, Path("r.png"), Path("t.png"), box, label, 100, 100, category=category, subset=subset)


PAIRS = [
    _pair("a1", A_BOX, "A", "s1"),  # pred IoU 0.5
    _pair("a2", A_BOX, "A", "s1"),  # pred IoU 0.2 (flagged, below 0.3)
    _pair("a3", B_BOX, "B", "s2"),  # pred zero box: a miss
    _pair("a4", B_BOX, "B", None),  # invalid prediction
    _pair("n1", ZERO, "A", "s1"),  # correct zero box
    _pair("n2", ZERO, "B", "s2"),  # false alarm
    _pair("n3", ZERO, "B", None),  # no prediction at all
]
PREDS = {
    "a1": Prediction("a1", (0, 0, 10, 5), True),
    "a2": Prediction("a2", (0, 0, 10, 2), True),
    "a3": Prediction("a3", ZERO, True),
    "a4": Prediction("a4", (50, 50, 60, 60), False, text="garbage"),  # an invalid box never counts
    "n1": Prediction("n1", ZERO, True),
    "n2": Prediction("n2", (1, 1, 5, 5), True),
}


def test_overall_by_hand() -> None:
    m = score(PAIRS, PREDS)["overall"]
    assert list(m) == list(metric_keys(0.3))
    assert (m["n"], m["n_ano"], m["n_nor"], m["invalid"], m["missing"]) == (7, 4, 3, 2, 1)
    # per-sample scores: 0.5, 0.2, 0, 0, 1, 0, 0
    assert m["miou"] == pytest.approx(1.7 / 7)
    assert m["miou_ano"] == pytest.approx(0.7 / 4)
    assert m["miou_nor"] == pytest.approx(1 / 3)
    assert m["acc_0.3"] == pytest.approx(2 / 7)
    # detection: 3 non-zero predictions (a1, a2, n2), TP = a1 -> P 1/3, R 1/4, F1 = 2/7
    assert m["f1_0.3"] == pytest.approx(2 / 7)
    # image level: flagged a1, a2, n2 -> P 2/3, R 2/4, F1 = 4/7
    assert m["image_precision"] == pytest.approx(2 / 3)
    assert m["image_recall"] == pytest.approx(0.5)
    assert m["image_f1"] == pytest.approx(4 / 7)


def test_groups_by_hand() -> None:
    res = score(PAIRS, PREDS)
    a, b = res["per_category"]["A"], res["per_category"]["B"]
    assert (a["n"], a["n_ano"], a["n_nor"], a["invalid"]) == (3, 2, 1, 0)
    assert a["miou"] == pytest.approx(1.7 / 3) and a["acc_0.3"] == pytest.approx(2 / 3)
    assert a["f1_0.3"] == pytest.approx(0.5) and a["image_f1"] == pytest.approx(1.0)
    assert (b["n"], b["invalid"], b["missing"]) == (4, 2, 1)
    assert b["miou"] == 0.0 and b["f1_0.3"] == 0.0 and b["image_precision"] == 0.0
    assert set(res["per_subset"]) == {"s1", "s2"}  # pairs without a subset join none
    assert res["per_subset"]["s1"] == a
    assert res["per_subset"]["s2"]["n"] == 2 and res["per_subset"]["s2"]["miou_nor"] == 0.0


def test_threshold_names_the_keys() -> None:
    m = score(PAIRS, PREDS, iou_threshold=0.2)["overall"]
    assert "acc_0.3" not in m
    assert m["acc_0.2"] == pytest.approx(3 / 7)  # 0.5, 0.2 and 1 reach 0.2
    assert m["f1_0.2"] == pytest.approx(4 / 7)  # TP a1, a2: P 2/3, R 1/2


def test_undefined_group_means_are_none() -> None:
    only_normal = [_pair("n1", ZERO, "A", None)]
    m = score(only_normal, {"n1": Prediction("n1", ZERO, True)})["overall"]
    assert m["miou_ano"] is None and m["miou_nor"] == 1.0 and m["miou"] == 1.0
    assert m["f1_0.3"] == 0.0 and m["image_recall"] == 0.0


def test_perfect_predictions() -> None:
    preds = {p.id: Prediction(p.id, p.box, True) for p in PAIRS}
    m = score(PAIRS, preds)["overall"]
    for key in ("acc_0.3", "f1_0.3", "miou", "miou_ano", "miou_nor", "image_f1"):
        assert m[key] == pytest.approx(1.0), key


def test_prediction_boxes_follow_spec_rules() -> None:
    pairs = [_pair("r", A_BOX, "A", None), _pair("d", ZERO, "A", None), _pair("o", A_BOX, "A", None)]
    x1, y1, x2, y2 = A_BOX
    preds = {
        "r": Prediction("r", (x2, y2, x1, y1), True),  # reversed corners are swapped: IoU 1
        "d": Prediction("d", (5, 5, 5, 5), True),  # degenerate: invalid, not a flag on a normal image
        "o": Prediction("o", (x1 - 500, y1, x2, y2), True),  # clipped to the 100x100 image first
    }
    s = score(pairs, preds)["overall"]
    assert s["invalid"] == 1 and s["image_precision"] == 1.0
    assert s["miou_ano"] == pytest.approx(1.0)  # unclipped, "o" would score 100/5100


def test_subset_mean_over_categories_and_defect_types_by_hand() -> None:
    """Subsets that group whole categories get the mean over categories (the paper's "(Avg.)" rows)."""
    pairs = [
        _pair("x1", A_BOX, "X", "s1"),  # hit
        _pair("x2", A_BOX, "X", "s1"),  # hit
        _pair("x3", A_BOX, "X", "s1"),  # hit
        _pair("y1", B_BOX, "Y", "s1"),  # miss
        _pair("z1", ZERO, "Z", "s2"),  # normal, right
    ]
    for p, kind in zip(pairs, ("scratch", "scratch", "hole", "hole", None), strict=True):
        p.defect_type = kind
    preds = {p.id: Prediction(p.id, p.box, True) for p in pairs if p.id != "y1"}
    m = score(pairs, preds)
    means = m["per_subset_category_mean"]
    assert means["s1"]["acc_0.3"] == pytest.approx((1.0 + 0.0) / 2)  # X 3/3, Y 0/1
    assert m["per_subset"]["s1"]["acc_0.3"] == pytest.approx(3 / 4)  # pooled
    assert means["s1"]["categories"] == 2 and means["s1"]["n"] == 4
    assert means["s1"]["miou_nor"] is None and means["s2"]["miou_nor"] == 1.0  # no normal sample in s1
    assert means["all"]["acc_0.3"] == pytest.approx((1.0 + 0.0 + 1.0) / 3) and means["all"]["categories"] == 3
    types = m["per_defect_type"]
    assert set(types) == {"scratch", "hole"}  # the normal sample joins no defect type
    assert types["scratch"]["acc_0.3"] == 1.0 and types["hole"]["acc_0.3"] == 0.5 and types["hole"]["n"] == 2


def test_no_subset_means_when_a_category_spans_subsets_and_no_defect_table_without_types() -> None:
    m = score(PAIRS, PREDS)  # category A holds subset s1 only, B holds s2 and no subset
    assert "per_subset_category_mean" not in m and "per_defect_type" not in m
