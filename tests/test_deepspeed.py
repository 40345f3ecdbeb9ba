"""DeepSpeed: the ZeRO configs validate, and a real single-process ZeRO-2 run on a CPU works end to end
through `--accelerate-config` (the accelerate relaunch). The first run compiles one DeepSpeed op (~1 min),
cached in TORCH_EXTENSIONS_DIR afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_configs_validate(stage: int) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    acc = yaml.safe_load((RECIPES / "accelerate" / f"zero{stage}.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["deepspeed_config"]["zero_stage"] == stage
    ds = {
        "train_batch_size": 4,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 2,
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": True},
    }
    cfg = DeepSpeedConfig(ds)  # one process here
    assert cfg.zero_optimization_stage == stage
    with pytest.raises(AssertionError):  # inconsistent batch sizes are rejected
        DeepSpeedConfig({**ds, "train_batch_size": 5})


def test_zero2_cpu_run_through_accelerate(synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    env = {k: v for k, v in os.environ.items() if k != "DIFFERAD_LAUNCHED"}
    cmd = [
        sys.executable,
        "-m",
        "differad_cli",
        "-q",
        "train-cold",
        "--pairs",
        str(synth_pairs),
        "--model",
        str(tiny_model_dir),
        "--output-dir",
        str(out),
        "--max-steps",
        "2",
        "--save-steps",
        "2",
        "--batch-size",
        "2",
        "--precision",
        "fp32",
        "--no-gradient-checkpointing",
        "--accelerate-config",
        str(RECIPES / "accelerate" / "zero2_cpu.yaml"),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "relaunching" not in res.stderr  # -q hides it, but the run went through accelerate:
    assert list((out / "checkpoint-2").glob("global_step*")), "no DeepSpeed checkpoint state"
    assert json.loads((out / "train_summary.json").read_text())["global_step"] == 2
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(out)
