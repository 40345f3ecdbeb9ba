"""`differad pair --benchmark`: the shipped AD-DualDiff recipe over fixture trees of its readable sources (one
manifest, the paper's names and subsets, references from the right source), eval's per-subset mean over
categories and per-defect-type tables on it, missing sources and categories, recipe errors, a folder mapping
as the recipe documents it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import pattern, run_cli
from layout_trees import LARGE, make_deeppcb, make_ksdd2, make_realiad, mask, write

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "benchmarks" / "ad_dualdiff.yaml"
REALIAD = ("woodstick", "pcb", "zipper", "end_cap", "fire_hood", "bottle_cap")
# Table I of the paper: the categories differad reads by name, with their subset
TABLE_I = {
    "DeepPCB": "common_logic", "Woodstic": "common_logic", "PCB": "common_logic", "Zipper": "common_logic",
    "End_Cap": "complex_structure", "Fire_Hood": "complex_structure", "Bottle_Cap": "complex_structure",
    "Metal": "complex_structure",
}  # fmt: skip


def sources(root: Path, realiad: tuple[str, ...] = (*REALIAD, "audiojack")) -> Path:
    make_deeppcb(root)
    make_realiad(root, realiad)  # audiojack is in Real-IAD but not in the benchmark
    make_ksdd2(root)
    return root


def build(monkeypatch, out: Path, *args: object, recipe: Path = RECIPE) -> int:
    return run_cli(monkeypatch, "pair", "--benchmark", recipe, "--out", out, "--no-cache", *args)


def records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_shipped_recipe_builds_one_manifest_with_the_papers_categories_and_subsets(
    tmp_path, monkeypatch
) -> None:
    root = sources(tmp_path / "datasets")
    out = tmp_path / "bench" / "pairs.jsonl"
    assert build(monkeypatch, out, "--data-root", root, "--k", 8) == 0
    recs = records(out)
    assert {r["category"]: r["subset"] for r in recs.values()} == TABLE_I
    assert all(i.split("/")[0] == r["category"] for i, r in recs.items())  # ids carry the benchmark name
    ng = recs["Woodstic/NG/AK/S0010/woodstick_0010_NG_C1_20231021130200"]
    assert ng["box"] == list(LARGE) and ng["label"] == 1 and ng["defect_type"] == "AK" and ng["view"] == "C1"
    # references: the same Real-IAD category and camera view, never another source or category
    assert ng["refs"] and all("/realiad_256/woodstick/" in r and "_C1_" in r for r in ng["refs"])
    metal = [r for r in recs.values() if r["category"] == "Metal"]
    assert {r["label"] for r in metal} == {0, 1}
    assert all(Path(ref).parent.name == "train" and "KolektorSDD2" in ref for r in metal for ref in r["refs"])
    assert "defect_type" not in next(r for r in metal if r["label"] == 1)  # KSDD2 has no defect classes
    pcb = recs["DeepPCB/group00041/00041/00041000_test"]
    assert pcb["ref"].endswith("00041000_temp.jpg") and pcb["subset"] == "common_logic"


def test_eval_on_a_benchmark_gives_the_papers_avg_rows_and_defect_types(tmp_path, monkeypatch) -> None:
    out = tmp_path / "pairs.jsonl"
    assert build(monkeypatch, out, "--data-root", sources(tmp_path / "d")) == 0
    recs = records(out)
    # every prediction right except DeepPCB's one anomalous target, which is missed
    preds = [
        {
            "id": i,
            "box": [0, 0, 0, 0] if r["category"] == "DeepPCB" else r["box"],
            "valid": True,
            "text": None,
        }
        for i, r in recs.items()
    ]
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    ev = tmp_path / "eval"
    assert run_cli(monkeypatch, "eval", "--pairs", out, "--pred", tmp_path / "pred.jsonl", "--out", ev) == 0
    m = json.loads((ev / "metrics.json").read_text())
    means = m["per_subset_category_mean"]
    assert set(means) == {"common_logic", "complex_structure", "all"}
    # the mean over the 4 common_logic categories (DeepPCB 0, three at 1) is not the pooled share (6 of 7)
    assert (
        means["common_logic"]["acc_0.3"] == pytest.approx(0.75) and means["common_logic"]["categories"] == 4
    )
    assert m["per_subset"]["common_logic"]["acc_0.3"] == pytest.approx(6 / 7)
    assert means["complex_structure"]["acc_0.3"] == 1.0
    assert means["all"]["acc_0.3"] == pytest.approx(7 / 8) and means["all"]["n"] == len(recs)
    types = m["per_defect_type"]
    assert set(types) == {"AK"} and types["AK"]["n"] == 6 and types["AK"]["n_nor"] == 0
    report = (ev / "report.md").read_text()
    assert "mean over its categories" in report and "Per defect type" in report
    rows = [json.loads(x) for x in (ev / "scores.jsonl").read_text().splitlines()]
    assert sum(r["defect_type"] == "AK" for r in rows) == 6


def test_missing_sources_exit_2_naming_them_or_are_skipped_on_request(tmp_path, monkeypatch, capsys) -> None:
    root = tmp_path / "d"
    make_ksdd2(root)
    out = tmp_path / "p.jsonl"
    assert build(monkeypatch, out, "--data-root", root) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 benchmark source folder(s) not found" in err
    assert "DeepPCB (deeppcb)" in err and "Real-IAD (realiad)" in err and not out.exists()
    assert build(monkeypatch, out, "--data-root", root, "--skip-missing") == 0
    err = capsys.readouterr().err
    assert "DeepPCB (deeppcb) not found" in err and "Real-IAD (realiad) not found" in err
    assert {r["category"] for r in records(out).values()} == {"Metal"}


def test_a_missing_category_exits_2_naming_it(tmp_path, monkeypatch, capsys) -> None:
    root = sources(tmp_path / "d", realiad=("woodstick", "pcb"))
    assert build(monkeypatch, tmp_path / "p.jsonl", "--data-root", root) == 2
    err = capsys.readouterr().err
    assert "Real-IAD (realiad): category(ies) bottle_cap, end_cap, fire_hood, zipper not found" in err
    assert build(monkeypatch, tmp_path / "p.jsonl", "--data-root", root, "--skip-missing") == 0
    assert {r["category"] for r in records(tmp_path / "p.jsonl").values()} == {
        "DeepPCB", "Woodstic", "PCB", "Metal",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: []", "'sources' must be a non-empty list"),
        ("sources:\n  - {path: a, layout: nope, categories: {x: {subset: s}}}", "unknown layout 'nope'"),
        ("sources:\n  - {path: a, layout: folder, categories: {x: {subset: s, colour: red}}}", "colour"),
        ("sources:\n  - {path: a, layout: folder, categories: {x: null}}", "no subset"),
        ("subsets: [s]\nsources:\n  - {path: a, layout: folder, categories: {x: {subset: t}}}", "'t' is not"),
        (
            "sources:\n  - {path: a, layout: folder, subset: s, categories: {x: {as: Y}}}\n"
            "  - {path: b, layout: folder, subset: s, categories: {z: {as: Y}}}",
            "'Y' is taken twice",
        ),
        ("sources: [", "not YAML"),
    ],
)
def test_recipe_errors_exit_2_in_one_line(tmp_path, monkeypatch, capsys, text, message) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text + "\n")
    assert build(monkeypatch, tmp_path / "p.jsonl", recipe=recipe) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_data_and_benchmark_are_exclusive(tmp_path, monkeypatch, capsys) -> None:
    args = ("--data", tmp_path, "--out", tmp_path / "p.jsonl")
    assert run_cli(monkeypatch, "pair", "--benchmark", RECIPE, *args) == 2
    assert run_cli(monkeypatch, "pair", "--out", tmp_path / "p.jsonl") == 2
    assert run_cli(monkeypatch, "pair", "--skip-missing", *args) == 2
    assert capsys.readouterr().err.count("--benchmark") == 3


def test_a_folder_mapping_as_the_recipe_documents_it(tmp_path, monkeypatch) -> None:
    """DAGM-style: normal/ pool, test/defect/ and test/good/ targets, mask/defect/<stem>.png masks."""
    cat = tmp_path / "converted" / "Fabric_DAGM"
    write(cat / "normal" / "0001.png", pattern("hstripes", 1))
    write(cat / "normal" / "0002.png", pattern("checker", 2))
    write(cat / "test" / "defect" / "0100.png", pattern("hstripes", 3))
    write(cat / "mask" / "defect" / "0100.png", mask((*LARGE, 255)))
    write(cat / "test" / "good" / "0101.png", pattern("checker", 4))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "subsets: [easy_structure]\nsources:\n"
        "  - {path: converted, layout: folder, categories: {Fabric_DAGM: {subset: easy_structure}}}\n"
    )
    assert build(monkeypatch, tmp_path / "p.jsonl", "--data-root", tmp_path, recipe=recipe) == 0
    recs = records(tmp_path / "p.jsonl")
    ano, good = recs["Fabric_DAGM/test/defect/0100"], recs["Fabric_DAGM/test/good/0101"]
    assert ano["subset"] == good["subset"] == "easy_structure" and ano["defect_type"] == "defect"
    assert ano["box"] == list(LARGE) and ano["ref"].endswith("normal/0001.png")
    assert good["label"] == 0 and "defect_type" not in good and good["ref"].endswith("normal/0002.png")
