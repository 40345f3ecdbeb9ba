"""`differad compare`: one row per run, best per column marked, per-category blocks, every output format,
names escaped, and runs on different pairs refused."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cli_helpers import run_cli


def _run(folder: Path, acc: float, miou: float, invalid: int, fingerprint: str | None = "abc") -> Path:
    block = {"n": 4, "n_ano": 2, "n_nor": 2, "acc_0.3": acc, "f1_0.3": acc, "miou": miou, "miou_ano": miou,
             "miou_nor": 1.0, "image_precision": 1.0, "image_recall": 1.0, "image_f1": 1.0,
             "invalid": invalid, "missing": 0}  # fmt: skip
    metrics = {"iou_threshold": 0.3, "overall": block, "per_category": {"bottle": block, "cable": block}}
    if fingerprint:
        metrics["pairs_fingerprint"] = fingerprint
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_table_marks_the_best_per_column(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _run(tmp_path / "base", acc=0.5, miou=0.4, invalid=3)
    b = _run(tmp_path / "rl", acc=0.75, miou=0.3, invalid=1)
    assert run_cli(monkeypatch, "compare", a, b) == 0
    lines = capsys.readouterr().out.splitlines()
    base, rl = (next(line for line in lines if line.startswith(n)) for n in ("base", "rl"))
    assert "75.00*" in rl and "50.00 " in base  # Acc@0.3: rl best
    assert "40.00*" in base and "30.00 " in rl  # mIoU: base best


def test_markdown_csv_json_and_names(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _run(tmp_path / "a", acc=0.5, miou=0.4, invalid=3)
    b = _run(tmp_path / "b", acc=0.75, miou=0.3, invalid=1)
    assert run_cli(monkeypatch, "compare", a, b, "--md", "--name", "x|y,\x1b[31mred") == 0
    md = capsys.readouterr().out
    assert "| x\\|y |" in md and "\x1b" not in md and "**75.00**" in md
    assert run_cli(monkeypatch, "compare", a, b, "--csv") == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:3] == ["run", "Acc@0.3", "F1@0.3"] and rows[2][0] == "b" and float(rows[2][1]) == 0.75
    assert run_cli(monkeypatch, "compare", a / "metrics.json", b, "--json", "--by", "category") == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["runs"][0]["run"] == "a" and obj["runs"][1]["cable mIoU"] == 0.3


def test_different_pairs_are_refused_unless_allowed(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _run(tmp_path / "a", acc=0.5, miou=0.4, invalid=0, fingerprint="one")
    b = _run(tmp_path / "b", acc=0.5, miou=0.4, invalid=0, fingerprint="two")
    assert run_cli(monkeypatch, "compare", a, b) == 2
    assert "different pairs" in capsys.readouterr().err
    assert run_cli(monkeypatch, "compare", a, b, "--allow-different-pairs") == 0
    assert "WARNING: different pair sets" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing_folder"], "no metrics.json"),
        (["a", "--metrics", "nope"], "unknown metric"),
        (["a", "--by", "shape"], "--by must be"),
        (["a", "--md", "--csv"], "one of --md"),
        (["a", "--name", "x,y"], "--name gives 2"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, monkeypatch, capsys, args, message) -> None:
    _run(tmp_path / "a", acc=0.5, miou=0.4, invalid=0)
    monkeypatch.chdir(tmp_path)
    assert run_cli(monkeypatch, "compare", *args) == 2
    assert message in capsys.readouterr().err


def test_real_eval_runs_carry_the_pair_fingerprint(
    synth_pairs: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name, threshold in (("loose", "10"), ("strict", "60")):
        args = ["eval", "--pairs", synth_pairs, "--backend", "diff", "--threshold", threshold]
        assert run_cli(monkeypatch, "-q", *args, "--out", tmp_path / name) == 0
    capsys.readouterr()
    fingerprints = {
        json.loads((tmp_path / n / "metrics.json").read_text())["pairs_fingerprint"]
        for n in ("loose", "strict")
    }
    assert len(fingerprints) == 1
    assert run_cli(monkeypatch, "compare", tmp_path / "loose", tmp_path / "strict") == 0
    assert "strict" in capsys.readouterr().out


def test_runs_named_alike_are_told_apart_or_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _run(tmp_path / "a" / "eval", acc=0.5, miou=0.4, invalid=0, fingerprint="one")
    b = _run(tmp_path / "b" / "eval", acc=0.5, miou=0.4, invalid=0, fingerprint="two")
    assert run_cli(monkeypatch, "compare", a, b) == 2  # both "eval": refused, never a silent merge
    assert "named alike" in capsys.readouterr().err
    assert run_cli(monkeypatch, "compare", a, b, "--name", "x,y") == 2  # and the pair sets still differ
    assert "different pairs" in capsys.readouterr().err
