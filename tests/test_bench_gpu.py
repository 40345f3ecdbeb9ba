"""The prepared GPU check runs at tiny size on a CPU and writes every figure: the one command a lent GPU
machine gets must not die on a typo or a missing key after minutes of model building."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gpu  # noqa: E402


def test_smart_resize_matches_qwen() -> None:
    """800x800 becomes 812x812 for Qwen2/2.5-VL (29x29 merged tokens) and stays 800 for Qwen3-VL."""
    assert bench_gpu.smart_resize(800, 800, 28, 3136, 12845056) == (812, 812)
    assert bench_gpu.smart_resize(800, 800, 32, 65536, 16777216) == (800, 800)
    assert bench_gpu.smart_resize(800, 800, 28, 3136, 112 * 112) == (112, 112)


def test_step_gaps_drop_the_first_step() -> None:
    watch = [(0.0, 0), (30.0, 1), (32.0, 2), (36.0, 4)]
    assert bench_gpu.step_gaps(watch) == [2.0, 2.0, 2.0]


@pytest.mark.slow
def test_tiny_gpu_check_writes_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--size", "tiny", "--out", str(out),
         "--cold-steps", "2", "--rl-steps", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "bench_gpu.json").read_text())
    assert result["ok"] and not result["failures"] and result["size"] == "tiny"
    assert (tmp_path / "out" / "bench_gpu.log").stat().st_size > 0
    assert result["versions"]["torch"] and result["versions"]["trl"] and result["device"]["import_s"] > 0
    assert set(result["anchors"]) == {"grpo_s_per_step", "grpo_tokens_per_s", "predict_ms_per_pair"}
    fam = result["families"]["qwen2_vl"]
    assert fam["build"]["params_m"] > 0 and fam["build"]["disk_mb"] > 0
    for key in ("train", "predict"):
        assert fam["image_tokens"][key]["per_pair"] == 2 * fam["image_tokens"][key]["per_image"] > 0
    for key in ("predict_b1", "predict_batched"):
        assert fam[key]["ms_per_pair"] > 0 and fam[key]["pairs_timed"] >= 16
    assert fam["cold"]["steps_logged"] == 2 and fam["cold"]["s_per_step"] > 0
    rl = fam["rl"]
    assert rl["steps_logged"] == 2 and rl["s_per_step"] > 0 and rl["trl_step_time_s"] > 0
    assert rl["completions_per_step"] == 8 and rl["completion_mean_length"] > 0
    assert rl["tokens_per_s"] > 0 and rl["tokens_per_s_with_resampling_est"] >= rl["tokens_per_s"]
    assert rl["resample_rounds_mean"] is not None and rl["difficulty_weight_mean"] > 0
    assert fam["rl_started_from"] == "cold-start adapters"
    for c in fam["comparison"].values():
        assert c["measured"] > 0 and c["ratio"] > 0
    stages = {s["name"]: s for s in result["stages"]}
    assert all(s["status"] == "ok" and s["peak_rss_mib"] > 0 for s in stages.values())
    assert all(s["peak_gpu_mib"] is None for s in stages.values())  # no GPU here: no figure, not a zero
    assert "vs anchor" in proc.stdout and "s/step" in proc.stdout
