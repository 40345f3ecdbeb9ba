"""`differad demo` at its smallest: every output lands where the summary says, and a re-run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from differad_cli.demo import DemoConfig, describe, run_demo, side_by_side

pytestmark = pytest.mark.slow


def test_demo_writes_everything_it_announces_and_resumes(tmp_path: Path) -> None:
    sizes = {"n_blank": 8, "n_train": 8, "n_test": 4, "size": 64}
    cfg = DemoConfig(out=tmp_path / "demo", **sizes, blank_steps=2, cold_steps=2, rl_steps=1, seed=0)
    result = run_demo(cfg)
    p = result.paths
    for key in ("blank_pairs", "train_pairs", "test_pairs", "overlay", "predict_json", "summary"):
        assert p[key].is_file(), key
    for key in ("blank", "cold", "rl", "learner"):
        assert (p[key] / "config.json").is_file(), key
    learner = json.loads((p["learner"] / "config.json").read_text())
    assert learner["text_config"]["hidden_size"] == 128 and learner["model_type"] == "qwen3_vl"
    assert learner["text_config"]["initializer_range"] == 0.08  # the demo preset
    assert {json.loads(line)["category"] for line in p["blank_pairs"].open()} == {"blank"}
    for run, start in (("blank", p["learner"]), ("cold", p["blank"]), ("rl", p["cold"])):  # the curriculum
        summary = json.loads((p[run] / "train_summary.json").read_text())
        assert summary["prompt"]["template"] == "compact" and summary["model"] == str(start), run
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
    acc = [result.metrics[k]["overall"]["acc_0.3"] for k in ("constant", "learner-cold", "learner-rl")]
    assert (
        "Acc@0.3 {:.0%} for the best constant answer, {:.0%} after the cold start, {:.0%} after RL".format(
            *acc
        )
        in text
    )

    # a demo folder from before the blank stage: its cold start is there, so no blank pairs or run are made
    import shutil

    shutil.rmtree(p["blank"])
    shutil.rmtree(p["blank_pairs"].parent)
    again = run_demo(cfg)
    assert not p["blank"].exists() and not p["blank_pairs"].parent.exists()
    assert again.metrics == result.metrics and "train-blank" not in again.timings

    # a demo folder from before the untrained column: only that evaluation runs, the rest is kept
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
    import shutil

    from differad_cli.core.errors import BadInput
    from differad_cli.models.tiny import build_tiny_model

    with pytest.raises(BadInput, match="at least"):
        run_demo(DemoConfig(out=tmp_path / "d", n_train=2, n_test=1))
    with pytest.raises(BadInput, match="unknown --family 'llava'"):
        run_demo(DemoConfig(out=tmp_path / "d", family="llava"))
    learner = tmp_path / "r" / "models" / "learner"  # a resumed demo's learner of another family
    learner.mkdir(parents=True)
    (learner / "config.json").write_text('{"model_type": "qwen2_vl"}')
    with pytest.raises(BadInput, match="holds a qwen2_vl learner, not --family qwen3_vl"):
        run_demo(DemoConfig(out=tmp_path / "r", n_blank=8, n_train=8, n_test=4, size=64, family="qwen3_vl"))
    assert not (tmp_path / "r" / "data").exists()  # refused before any pair is made
    # one of the family but another size (the 8x8 learner: 256x256 images), with its training still to do
    shutil.rmtree(learner)
    build_tiny_model(learner, family="qwen3_vl", preset_name="learner")
    with pytest.raises(BadInput, match=r"another size than --preset demo \(learner\)"):
        run_demo(DemoConfig(out=tmp_path / "r", n_blank=8, n_train=8, n_test=4, size=64))
    from differad_cli.demo.run import _check_learner

    _check_learner(learner, "qwen3_vl", "demo", trained=True)  # its cold start is done: only evaluated
    # a cold start begun without the blank stage (an older demo's) is not resumed from a new blank stage
    shutil.rmtree(learner)
    (tmp_path / "r" / "runs" / "cold" / "checkpoint-100").mkdir(parents=True)
    build_tiny_model(learner, family="qwen3_vl", preset_name="learner")
    with pytest.raises(BadInput, match="begun without the blank stage"):
        run_demo(DemoConfig(out=tmp_path / "r", n_blank=8, n_train=8, n_test=4, size=64, preset="learner"))
    assert not (tmp_path / "r" / "runs" / "blank").exists()
    for bad, words in (
        ({"preset": "real"}, "unknown --preset 'real'"),
        ({"template": "long"}, "unknown template 'long'"),
        ({"cold_steps": 0}, "--cold-steps"),
        ({"blank_steps": 5, "n_blank": 2}, "--n-blank 8"),
    ):
        with pytest.raises(BadInput, match=words):
            run_demo(DemoConfig(out=tmp_path / "b", **bad))


def test_demo_trains_with_its_recipes_settings() -> None:
    """The demo's copy of recipes/demo_cpu/ (not installed with the package) agrees with it, steps and
    checkpointing included, and the recipes' budgets are the demo's defaults."""
    from differad_cli.demo import COLD_OPTIONS, RL_OPTIONS
    from differad_cli.train.configs import load_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes" / "demo_cpu"
    cfg = DemoConfig()
    for options, name, steps in (
        (COLD_OPTIONS, "blank.yaml", cfg.blank_steps),
        (COLD_OPTIONS, "cold.yaml", cfg.cold_steps),
        (RL_OPTIONS, "grpo.yaml", cfg.rl_steps),
    ):
        recipe = load_recipe(recipes / name)
        for key, value in options.items():
            assert recipe.get(key) == value, (name, key, recipe.get(key), value)
        assert recipe["max_steps"] == steps and recipe["template"] == cfg.template, name
