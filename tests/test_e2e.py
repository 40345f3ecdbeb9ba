"""The whole chain through the real CLI (subprocesses), at the smallest size, checked against SPEC.

synth -> tiny-model -> train-cold -> train-rl -> predict (diff) -> eval --pred -> eval --backend hf ->
predict REF TGT --json --overlay. Each stage reads only what the previous one wrote on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from differad_cli.boxes import mask_box
from differad_cli.images import load_mask, load_rgb
from differad_cli.records import PRED_KEYS, check_files, read_pairs, read_predictions

pytestmark = pytest.mark.slow

METRIC_KEYS = {
    "n", "n_ano", "n_nor", "acc_0.3", "f1_0.3", "miou", "miou_ano", "miou_nor",
    "image_precision", "image_recall", "image_f1", "invalid",
}  # fmt: skip


def differad(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "differad_cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"differad {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    return proc


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


def check_run(run: Path, steps: int) -> None:
    assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    assert (run / f"checkpoint-{steps}").is_dir()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert max(entry["step"] for entry in log) == steps


def test_pipeline_through_the_cli(tmp_path: Path) -> None:
    differad("synth", "--out", "data/train", "--n", "12", "--size", "64", "--seed", "0", cwd=tmp_path)
    differad("synth", "--out", "data/test", "--n", "6", "--size", "64", "--seed", "1", cwd=tmp_path)
    train = check_manifest(tmp_path / "data/train/pairs.jsonl", 12)
    test = check_manifest(tmp_path / "data/test/pairs.jsonl", 6)
    assert not np.array_equal(load_rgb(train[0].tgt), load_rgb(test[0].tgt))

    differad("tiny-model", "models/tiny", cwd=tmp_path)
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "models/tiny").model_type == "qwen2_vl"

    common = ["--max-steps", "2", "--batch-size", "4", "--save-steps", "1", "--seed", "0"]
    differad(
        "train-cold", "--pairs", "data/train/pairs.jsonl", "--model", "models/tiny",
        "--output-dir", "runs/cold", *common, cwd=tmp_path,
    )  # fmt: skip
    check_run(tmp_path / "runs/cold", 2)
    differad(
        "train-rl", "--pairs", "data/train/pairs.jsonl", "--model", "runs/cold", "--output-dir", "runs/rl",
        "--num-generations", "4", "--max-completion-length", "16", *common, cwd=tmp_path,
    )  # fmt: skip
    check_run(tmp_path / "runs/rl", 2)

    out = differad("predict", "--pairs", "data/test/pairs.jsonl", "--out", "pred/diff.jsonl", cwd=tmp_path)
    assert out.stdout == ""  # batch mode writes files only
    preds = read_predictions(tmp_path / "pred/diff.jsonl")
    assert [p.id for p in preds] == [p.id for p in test]
    raw = json.loads((tmp_path / "pred/diff.jsonl").read_text().splitlines()[0])
    assert set(PRED_KEYS) - {"score"} <= set(raw)

    out = differad(
        "eval", "--pairs", "data/test/pairs.jsonl", "--pred", "pred/diff.jsonl", "--out", "eval/diff",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads(out.stdout)  # stdout is the JSON document alone
    assert metrics == json.loads((tmp_path / "eval/diff/metrics.json").read_text())
    assert set(metrics["overall"]) >= METRIC_KEYS and metrics["overall"]["n"] == 6
    assert all(0.0 <= v <= 1.0 for k, v in metrics["overall"].items() if k.startswith(("acc", "f1", "image")))
    assert (tmp_path / "eval/diff/report.md").is_file()

    out = differad(
        "eval", "--pairs", "data/test/pairs.jsonl", "--backend", "hf", "--model", "runs/rl",
        "--max-new-tokens", "16", "--out", "eval/rl", "--json", cwd=tmp_path,
    )  # fmt: skip
    rl_metrics = json.loads(out.stdout)
    assert rl_metrics["overall"]["n"] == 6
    assert len(read_predictions(tmp_path / "eval/rl/predictions.jsonl")) == 6

    anomalous = next(p for p in test if p.label == 1)
    out = differad(
        "predict", anomalous.ref, anomalous.tgt, "--json", "--overlay", "pred/overlay.png", cwd=tmp_path
    )
    result = json.loads(out.stdout)
    assert {"ref", "tgt", "box", "label", "valid", "text", "backend", "elapsed_ms"} <= set(result)
    assert result["backend"] == "diff" and len(result["box"]) == 4
    overlay = load_rgb(tmp_path / "pred/overlay.png")
    assert overlay.shape[1] >= 2 * anomalous.width  # reference beside target
