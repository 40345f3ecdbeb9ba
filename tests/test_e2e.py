"""The README's walkthrough, run as written through the real CLI (subprocesses), with every file it writes
checked against SPEC's contracts. If the README's commands stop working, this test fails.

synth -> tiny-model -> train-cold -> train-rl -> predict (diff) -> eval --pred -> eval --backend hf ->
predict REF TGT --json --overlay. Each stage reads only what the previous one wrote on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from differad_cli.core.boxes import mask_box
from differad_cli.core.images import load_mask, load_rgb
from differad_cli.core.records import PRED_KEYS, check_files, read_pairs, read_predictions
from readme_helpers import walkthrough

pytestmark = pytest.mark.slow

METRIC_KEYS = {
    "n", "n_ano", "n_nor", "acc_0.3", "f1_0.3", "miou", "miou_ano", "miou_nor",
    "image_precision", "image_recall", "image_f1", "invalid",
}  # fmt: skip
STAGES = [
    "synth", "synth", "tiny-model", "train-cold", "train-rl", "predict", "eval", "eval", "predict", "compare",
]  # fmt: skip


def check_manifest(path: Path, n: int) -> list:
    pairs = read_pairs(path)  # validates every record against the contract
    assert len(pairs) == n
    assert check_files(pairs, open_images=True) == []
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(not Path(r["tgt"]).is_absolute() for r in raw)  # relative to the manifest
    for pair in pairs:
        tgt = load_rgb(pair.tgt)
        assert tgt.shape[:2] == (pair.height, pair.width)
        if pair.label == 1:
            assert mask_box(load_mask(pair.mask)) == pair.box  # box = tight box of the mask
        else:
            assert pair.box == (0, 0, 0, 0)
    return pairs


def check_run(run: Path) -> None:
    assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    summary = json.loads((run / "train_summary.json").read_text())
    steps = summary["global_step"]
    assert steps > 0 and (run / f"checkpoint-{steps}").is_dir()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert max(entry["step"] for entry in log) == steps


def test_readme_walkthrough_through_the_cli(readme_walkthrough: tuple[Path, list]) -> None:
    assert [c[0] for c in walkthrough()] == STAGES, "the README walkthrough lost or reordered a stage"
    tmp_path, outputs = readme_walkthrough  # run by the session fixture (conftest.py), as written

    train = check_manifest(tmp_path / "data/train/pairs.jsonl", 64)
    test = check_manifest(tmp_path / "data/test/pairs.jsonl", 16)
    assert not np.array_equal(load_rgb(train[0].tgt), load_rgb(test[0].tgt))  # another seed
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "models/tiny").model_type == "qwen2_vl"
    check_run(tmp_path / "runs/cold")
    check_run(tmp_path / "runs/rl")
    rl_log = (tmp_path / "runs/rl/train_log.jsonl").read_text()
    assert "resample/degenerate_before" in rl_log and "difficulty/weight_mean" in rl_log

    assert outputs[5].stdout == ""  # batch predict writes files only
    preds = read_predictions(tmp_path / "runs/pred-diff.jsonl")
    assert [p.id for p in preds] == [p.id for p in test]
    raw = json.loads((tmp_path / "runs/pred-diff.jsonl").read_text().splitlines()[0])
    assert set(PRED_KEYS) - {"score"} <= set(raw)

    metrics = json.loads((tmp_path / "runs/eval-diff/metrics.json").read_text())
    assert set(metrics["overall"]) >= METRIC_KEYS and metrics["overall"]["n"] == 16
    assert all(0.0 <= v <= 1.0 for k, v in metrics["overall"].items() if k.startswith(("acc", "f1", "image")))
    assert (tmp_path / "runs/eval-diff/report.md").is_file()
    assert list((tmp_path / "runs/eval-diff").rglob("*.png"))  # --overlays 4

    rl_metrics = json.loads(outputs[7].stdout)  # --json: stdout is the JSON document alone
    assert rl_metrics == json.loads((tmp_path / "runs/eval-rl/metrics.json").read_text())
    assert rl_metrics["overall"]["n"] == 16
    assert len(read_predictions(tmp_path / "runs/eval-rl/predictions.jsonl")) == 16

    result = json.loads(outputs[8].stdout)
    assert {"ref", "tgt", "box", "label", "valid", "text", "backend", "elapsed_ms"} <= set(result)
    assert result["backend"] == "diff" and len(result["box"]) == 4
    overlay = load_rgb(tmp_path / "runs/overlay.png")
    assert overlay.shape[1] >= 2 * test[1].width  # reference beside target

    table = outputs[9].stdout.splitlines()  # both evals scored the same 16 pairs: compared side by side
    assert table[0].split()[:2] == ["run", "Acc@0.3"]
    assert [line.split()[0] for line in table[1:3]] == ["eval-diff", "eval-rl"]
    assert all((tmp_path / "runs" / run / "report.html").is_file() for run in ("eval-diff", "eval-rl"))
