"""Training plumbing: resumed weights, precision of trained weights, LoRA kept out of a frozen vision tower,
bad LoRA targets, log trimming on resume, and the all-perfect rule with a DCLR bonus."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from differad_cli.core.errors import BadInput
from differad_cli.train.configs import ColdConfig
from differad_cli.train.model import load_trainable, lora_config
from differad_cli.train.resampling import plan_resampling

COLD = {
    "lr_scheduler_type": "constant",  # steps 1-2 must not depend on max_steps for the comparison
    "per_device_train_batch_size": 4,
    "precision": "fp32",
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "learning_rate": 1e-2,
    "seed": 0,
}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resume_continues_from_the_checkpoint_weights(
    synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """2 steps + resume to 3 == 3 steps straight: the resumed run starts from the checkpoint's weights."""
    from differad_cli.train.sft import train_cold

    base = {"pairs": str(synth_pairs), "model": str(tiny_model_dir), "save_steps": 1, **COLD}
    train_cold(output_dir=tmp_path / "straight", options={**base, "max_steps": 3})
    train_cold(output_dir=tmp_path / "cut", options={**base, "max_steps": 2})
    train_cold(output_dir=tmp_path / "cut", options={**base, "max_steps": 3, "resume": True})
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "cut")
    untrained = _weights(tiny_model_dir)
    key = next(k for k in straight if "embed_tokens" in k)
    assert not torch.equal(straight[key], untrained[key])
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-5, atol=1e-6)
    lines = (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    steps = [e["step"] for e in map(json.loads, lines) if "loss" in e]
    assert steps == [1, 2, 3]  # each step logged once across the interruption


def test_trained_weights_stay_float32_under_bf16(tiny_model_dir: Path) -> None:
    args = SimpleNamespace(bf16=True, fp16=False)
    full, _ = load_trainable(tiny_model_dir, ColdConfig(), args)
    assert {p.dtype for p in full.parameters()} == {torch.float32}  # bf16 = mixed precision, not pure bf16
    lora, _ = load_trainable(tiny_model_dir, ColdConfig(lora=True), args)
    assert {p.dtype for p in lora.parameters()} == {torch.bfloat16}  # frozen base in half precision


def test_lora_never_enters_a_frozen_vision_tower(tiny_model_dir: Path) -> None:
    from peft import get_peft_model

    targets = ["q_proj", "v_proj", "qkv", "fc1"]  # qkv/fc1 exist only in the vision tower
    args = SimpleNamespace(bf16=False, fp16=False)
    for freeze, expect_visual in ((True, False), (False, True)):
        cfg = ColdConfig(lora=True, lora_target_modules=targets, freeze_vision=freeze)
        model, _ = load_trainable(tiny_model_dir, cfg, args)
        peft_model = get_peft_model(model, lora_config(cfg))
        trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert any("language_model" in n for n in trainable)
        assert any("visual" in n for n in trainable) is expect_visual


def test_unknown_lora_target_is_bad_input(tiny_model_dir: Path) -> None:
    cfg = ColdConfig(lora=True, lora_target_modules=["q_proj", "nonexistent"])
    with pytest.raises(BadInput, match="no module named nonexistent"):
        load_trainable(tiny_model_dir, cfg, SimpleNamespace(bf16=False, fp16=False))


def test_output_dir_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    from differad_cli.train.common import resume_checkpoint

    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        resume_checkpoint(tmp_path / "f", resume=False)


def test_all_perfect_uses_each_rewards_maximum() -> None:
    from differad_cli.train.rewards import get_reward

    dclr = get_reward("dclr", delta=0.2)
    assert dclr.max_value == pytest.approx(1.2) and get_reward("format").max_value == 1.0
    maxima = [1.0, 1.2]
    weights = [1.0, 1.0]
    below = np.array([[1.0, 1.1]] * 4)  # IoU 0.9 + delta: degenerate, not perfect -> resampled
    top = np.array([[1.0, 1.2]] * 4)  # IoU 1 + delta: perfect -> kept
    assert plan_resampling(below, weights, 4, maxima=maxima).resample == [0]
    assert plan_resampling(top, weights, 4, maxima=maxima).perfect == [0]
    assert plan_resampling(top, weights, 4, maxima=maxima).resample == []


def test_merge_lora_is_skipped_under_zero3_with_a_warning(tmp_path: Path, capsys) -> None:
    from differad_cli.train.configs import RLConfig
    from differad_cli.train.model import save_final

    calls: list[str] = []

    def fake_trainer(stage: int) -> SimpleNamespace:
        plugin = SimpleNamespace(zero_stage=stage)
        model = SimpleNamespace(
            merge_and_unload=lambda: (
                calls.append("merge")
                or SimpleNamespace(save_pretrained=lambda *a, **k: calls.append("save merged"))
            )
        )
        return SimpleNamespace(
            save_model=lambda out: calls.append("save"),
            is_world_process_zero=lambda: True,
            accelerator=SimpleNamespace(
                state=SimpleNamespace(deepspeed_plugin=plugin), unwrap_model=lambda m: m
            ),
            model=model,
        )

    processor = SimpleNamespace(save_pretrained=lambda out: None)
    cfg = RLConfig(lora=True, merge_lora=True)
    save_final(fake_trainer(3), processor, cfg, tmp_path)
    assert calls == ["save"] and "skipped under DeepSpeed ZeRO-3" in capsys.readouterr().err
    calls.clear()
    save_final(fake_trainer(2), processor, cfg, tmp_path)
    assert calls == ["save", "merge", "save merged"]
