"""Model/processor loading: checkpoints, LoRA adapters, the image-only processor, bad-input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from differad_cli.core.errors import BadInput


def test_image_only_processor_without_torchvision(tiny_model_dir: Path) -> None:
    from differad_cli.models import load as models

    proc = models.load_processor(tiny_model_dir)
    assert type(proc).__name__ == "Qwen2VLProcessor"  # the stock name, also on disk
    if not models.torchvision_available():
        assert getattr(type(proc), "image_only", False)
        assert not hasattr(proc, "video_processor")
    assert proc.tokenizer.convert_tokens_to_ids("<|image_pad|>") == proc.image_token_id
    assert models.resize_params(proc) == {"min_pixels": 56 * 56, "max_pixels": 112 * 112, "factor": 28}


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_image_only_class_per_family(family: str) -> None:
    from differad_cli.models.load import image_only_processor_class

    cls = image_only_processor_class(family)
    assert cls.get_attributes() == ["image_processor", "tokenizer"]


def test_bad_paths_and_families(tmp_path: Path, tiny_model_dir: Path) -> None:
    from differad_cli.models.load import load_model_and_processor, model_family

    with pytest.raises(BadInput, match="not found"):
        load_model_and_processor(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="not a model folder"):
        load_model_and_processor(tmp_path / "empty")
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    cfg = json.loads((odd / "config.json").read_text())
    cfg["model_type"] = "llava"
    (odd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match="llava"):
        model_family(odd)


def test_lora_adapter_folder_loads_on_base(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from differad_cli.models.load import adapter_base, load_model_and_processor

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert adapter_base(adapter) == Path(tiny_model_dir)
    model, proc, family = load_model_and_processor(adapter, device="cpu", dtype="fp32")
    assert family == "qwen2_vl"
    assert any("lora_B" in n for n, _ in model.named_parameters())
    assert proc.tokenizer is not None
    assert adapter_base(tiny_model_dir) is None


def test_dtype_resolution() -> None:
    import torch

    from differad_cli.models.load import resolve_dtype

    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(BadInput, match="unknown dtype"):
        resolve_dtype("int3", "cpu")
