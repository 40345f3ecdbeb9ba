"""`differad demo` at its smallest: every output lands where the summary says, and a re-run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from differad_cli.demo import DemoConfig, describe, run_demo, side_by_side

pytestmark = pytest.mark.slow


def test_demo_writes_everything_it_announces_and_resumes(tmp_path: Path) -> None:
    cfg = DemoConfig(out=tmp_path / "demo", n_train=8, n_test=4, size=64, cold_steps=2, rl_steps=1, seed=0)
    result = run_demo(cfg)
    p = result.paths
    for key in ("train_pairs", "test_pairs", "overlay", "predict_json", "summary"):
        assert p[key].is_file(), key
    for key in ("cold", "rl", "learner"):
        assert (p[key] / "config.json").is_file(), key
    learner = json.loads((p["learner"] / "config.json").read_text())
    assert learner["text_config"]["hidden_size"] == 128 and learner["model_type"] == "qwen3_vl"  # the bench's
    for run in ("eval_diff", "eval_untrained", "eval_cold", "eval_rl"):
        metrics = json.loads((p[run] / "metrics.json").read_text())
        assert metrics["overall"]["n"] == 4
    assert list(result.metrics) == ["constant", "diff", "untrained", "learner-cold", "learner-rl"]
    assert result.metrics["constant"]["answer"] in ("always normal", "whole image", "median training box")
    text = describe(result)
    assert all(str(p[k]) in text for k in ("overlay", "eval_rl", "eval_cold", "eval_untrained"))
    table = side_by_side(result.metrics)
    assert table.splitlines()[0].split()[1:] == list(result.metrics)

    summary = json.loads(p["summary"].read_text())
    assert summary["metrics"] == result.metrics

    log = (p["rl"] / "train_log.jsonl").read_text()
    again = run_demo(cfg)  # finished stages are skipped, nothing is retrained or rewritten
    assert (p["rl"] / "train_log.jsonl").read_text() == log
    assert again.metrics == result.metrics
    assert again.timings["train-cold"] < 1.0 and again.timings["train-rl"] < 1.0
    kept = json.loads(p["summary"].read_text())["timings_s"]  # demo.json keeps the real run's timings
    assert kept["train-cold"] == pytest.approx(result.timings["train-cold"])
    before, after = (result.metrics[k]["overall"]["invalid"] for k in ("untrained", "learner-rl"))
    assert f"invalid answers {before} untrained -> {after} after RL" in text  # the run's counts, not a claim

    # a demo folder from before the untrained column: only that evaluation runs, the rest is kept
    import shutil

    shutil.rmtree(p["eval_untrained"])
    doc = json.loads(p["summary"].read_text())
    doc["metrics"].pop("untrained")
    doc["timings_s"].pop("eval untrained")
    p["summary"].write_text(json.dumps(doc) + "\n")
    cold_preds = (p["eval_cold"] / "predictions.jsonl").read_text()
    old = run_demo(cfg)
    assert (p["eval_untrained"] / "predictions.jsonl").is_file() and old.metrics == result.metrics
    assert (p["eval_cold"] / "predictions.jsonl").read_text() == cold_preds
    assert "eval untrained" not in old.timings.skipped and "eval learner-cold" in old.timings.skipped
    kept = json.loads(p["summary"].read_text())["timings_s"]
    assert kept["train-cold"] == pytest.approx(result.timings["train-cold"]) and "eval untrained" in kept


def test_demo_refuses_too_small_sets_and_unknown_families(tmp_path: Path) -> None:
    from differad_cli.core.errors import BadInput

    with pytest.raises(BadInput, match="at least"):
        run_demo(DemoConfig(out=tmp_path / "d", n_train=2, n_test=1))
    with pytest.raises(BadInput, match="unknown --family 'llava'"):
        run_demo(DemoConfig(out=tmp_path / "d", family="llava"))
    learner = tmp_path / "r" / "models" / "learner"  # a resumed demo's learner of another family
    learner.mkdir(parents=True)
    (learner / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(BadInput, match="holds a qwen2_vl learner, not --family qwen3_vl"):
        run_demo(DemoConfig(out=tmp_path / "r", n_train=8, n_test=4, size=64, family="qwen3_vl"))


def test_demo_trains_with_the_learner_recipes_settings() -> None:
    """The demo's copy of recipes/learner_cpu/ (not installed with the package) agrees with it, except for
    the budget (steps, learning rate and schedule) and checkpointing."""
    from differad_cli.demo import COLD_OPTIONS, RL_OPTIONS
    from differad_cli.train.configs import load_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes" / "learner_cpu"
    for options, name in ((COLD_OPTIONS, "cold.yaml"), (RL_OPTIONS, "grpo.yaml")):
        recipe = load_recipe(recipes / name)
        for key, value in options.items():
            if key not in ("save_steps", "logging_steps", "learning_rate", "lr_scheduler_type"):
                assert recipe.get(key) == value, (name, key, recipe.get(key), value)
