"""Recipes and config merging: every shipped recipe validates, precedence is defaults < recipe < CLI, unknown
keys are bad input, and the accelerate relaunch argv is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from differad_cli.core.errors import BadInput
from differad_cli.train.configs import build_configs, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MODEL_RECIPES = sorted(
    p for p in RECIPES.glob("*/*.yaml") if p.parent.name not in ("accelerate", "benchmarks")
)


def test_recipe_set_is_complete() -> None:
    folders = {p.parent.name for p in MODEL_RECIPES}
    assert {
        "qwen2_vl_7b_univg", "qwen2_vl_2b", "qwen2_5_vl_3b_lora", "qwen3_vl_2b", "tiny_cpu",
        "qwen2_5_vl_7b_lora", "qwen2_5_vl_7b_full", "qwen3_vl_8b_lora", "qwen3_vl_8b_full",
    } <= folders  # fmt: skip
    for folder in folders:  # the demo's cold start has a first stage (blank pairs) of its own
        extra = {"blank.yaml"} if folder == "demo_cpu" else set()
        assert {p.name for p in (RECIPES / folder).glob("*.yaml")} == {"cold.yaml", "grpo.yaml", *extra}
    assert {"zero2.yaml", "zero3.yaml"} <= {p.name for p in (RECIPES / "accelerate").glob("*.yaml")}


@pytest.mark.parametrize("recipe", MODEL_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_builds_its_configs(recipe: Path, tmp_path: Path) -> None:
    kind = "rl" if recipe.name == "grpo.yaml" else "cold"
    # bf16 recipes are validated here with the precision forced to fp32 (TRL refuses bf16 without a GPU)
    cli = {"precision": "fp32"} if load_recipe(recipe).get("precision") == "bf16" else {}
    cfg, args = build_configs(kind, recipe=recipe, cli=cli, output_dir=str(tmp_path))
    assert cfg.model
    if kind == "rl":
        assert args.num_generations == 8 or recipe.parent.name == "tiny_cpu"
        assert args.temperature == 0.9
        assert args.generation_batch_size % args.num_generations == 0


@pytest.mark.parametrize("recipe", MODEL_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_family_matches_its_model_and_launch(recipe: Path) -> None:
    """A recipe's family is the one its model name spells; a full fine-tuning recipe shards with ZeRO-3."""
    from differad_cli.core.coords import family_from_name

    rec = load_recipe(recipe)
    if "family" in rec:
        assert family_from_name(rec["model"]) in (rec["family"], None), rec["model"]
    if recipe.parent.name.endswith("_full"):
        assert rec["accelerate_config"].endswith("zero3.yaml") and rec["num_processes"] >= 4
        assert not rec.get("lora")
    if recipe.parent.name.endswith("_lora"):
        assert rec["lora"] is True


def test_paper_recipe_matches_the_paper(tmp_path: Path) -> None:
    cfg, args = build_configs(
        "rl",
        recipe=RECIPES / "qwen2_vl_7b_univg" / "grpo.yaml",
        cli={"precision": "fp32"},
        output_dir=str(tmp_path),
    )
    assert args.learning_rate == 1e-6 and args.num_generations == 8 and args.max_completion_length == 256
    assert (cfg.alpha, cfg.lam, cfg.tau) == (0.6, 0.3, 0.3) and cfg.freeze_vision
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * cfg.num_processes == 16
    assert cfg.accelerate_config == "recipes/accelerate/zero3.yaml"


def test_precedence_and_unknown_keys(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "learning_rate: 3.0e-5\nmax_resample: 1\nnum_generations: 4\nper_device_train_batch_size: 4\n"
    )
    cfg, args = build_configs(
        "rl", recipe=recipe, cli={"max_resample": 0, "temperature": None}, output_dir=str(tmp_path)
    )
    assert args.learning_rate == 3e-5 and cfg.max_resample == 0  # CLI beats recipe; None means "not given"
    assert args.temperature == 0.9 and args.beta == 0.0  # differad's GRPO defaults (paper)
    recipe.write_text("learning_rate: 1.0e-5\nlearnig_rate: 2\n")
    with pytest.raises(BadInput, match="learnig_rate"):
        build_configs("cold", recipe=recipe, cli={}, output_dir=str(tmp_path))
    with pytest.raises(BadInput, match="recipe not found"):
        build_configs("cold", recipe=tmp_path / "missing.yaml", cli={}, output_dir=str(tmp_path))
    recipe.write_text("- a\n- b\n")
    with pytest.raises(BadInput, match="mapping"):
        build_configs("cold", recipe=recipe, cli={}, output_dir=str(tmp_path))
    with pytest.raises(BadInput, match="precision"):
        build_configs("cold", recipe=None, cli={"precision": "fp8"}, output_dir=str(tmp_path))


def test_vllm_options_validate_as_config(tmp_path: Path) -> None:
    recipe = tmp_path / "v.yaml"
    recipe.write_text(
        "use_vllm: true\nvllm_mode: colocate\nnum_generations: 4\nper_device_train_batch_size: 4\n"
    )
    _, args = build_configs("rl", recipe=recipe, cli={}, output_dir=str(tmp_path))
    assert args.use_vllm and args.vllm_mode == "colocate"
    recipe.write_text("use_vllm: true\nvllm_mode: remote\n")
    with pytest.raises(BadInput, match="vllm_mode"):
        build_configs("rl", recipe=recipe, cli={}, output_dir=str(tmp_path))


def test_staged_task_switches_template_and_rewards(tmp_path: Path) -> None:
    cfg, _ = build_configs(
        "rl",
        recipe=None,
        cli={"task": "staged", "num_generations": 4, "per_device_train_batch_size": 4},
        output_dir=str(tmp_path),
    )
    assert cfg.template == "staged" and cfg.rewards == ["staged_format", "staged"]


def test_launch_argv_and_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from differad_cli.train.launch import ENV_GUARD, launch_argv, should_relaunch

    monkeypatch.delenv(ENV_GUARD, raising=False)
    acc = RECIPES / "accelerate" / "zero3.yaml"
    argv = launch_argv(
        ["train-rl", "--pairs", "p.jsonl"], num_processes=4, accelerate_config=acc, python="py"
    )
    assert argv == [
        "py",
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(acc),
        "--num_processes",
        "4",
        "-m",
        "differad_cli",
        "train-rl",
        "--pairs",
        "p.jsonl",
    ]
    assert should_relaunch(2, None) and should_relaunch(None, acc) and not should_relaunch(1, None)
    monkeypatch.setenv(ENV_GUARD, "1")
    assert not should_relaunch(4, acc)  # the relaunched processes never relaunch again
    with pytest.raises(BadInput, match="accelerate config not found"):
        launch_argv([], num_processes=None, accelerate_config=tmp_path / "nope.yaml")
    with pytest.raises(BadInput, match="num-processes"):
        launch_argv([], num_processes=0, accelerate_config=None)
