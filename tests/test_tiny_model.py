"""The tiny offline Qwen2-VL: loads with stock transformers code, tokenizes answers sensibly, generates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from differad_cli.core.errors import BadInput


def _digest(folder: Path, name: str) -> str:
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


def test_loads_with_stock_transformers(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert isinstance(model, Qwen2VLForConditionalGeneration)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert 256 < len(tok) <= 2048
    assert model.config.text_config.vocab_size == len(tok)
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        token = {
            "image_token_id": "<|image_pad|>",
            "video_token_id": "<|video_pad|>",
            "vision_start_token_id": "<|vision_start|>",
            "vision_end_token_id": "<|vision_end|>",
        }[name]
        assert getattr(model.config, name) == tok.convert_tokens_to_ids(token)
    assert "<|im_start|>" in tok.chat_template and "vision_start" in tok.chat_template


def test_tokenizer_covers_protocol_text(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "<think>The upper left region is darker.</think><answer>(120,340),(410,655)</answer>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(ids)
    assert len(ids) < len(text.encode()) * 0.8  # merges exist: fewer tokens than bytes
    assert any("answer" in p for p in pieces)
    assert (
        tok.decode(tok("<|box_start|>(1,2),(3,4)<|box_end|>")["input_ids"])
        == "<|box_start|>(1,2),(3,4)<|box_end|>"
    )
    assert tok.convert_tokens_to_ids("<|box_start|>") != tok.unk_token_id


def test_generates_with_two_images(tiny_model_dir: Path) -> None:
    from differad_cli.models.load import load_model_and_processor

    model, proc, family = load_model_and_processor(tiny_model_dir, device="cpu")
    assert family == "qwen2_vl"
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    msgs = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare"}],
        }
    ]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = proc(text=[text], images=images, return_tensors="pt")
    n_img = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_img == 8  # 64x64 -> 4 merged tokens per image
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_build_is_deterministic_and_atomic(tmp_path: Path, tiny_model_dir: Path) -> None:
    from differad_cli.models.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert _digest(other, name) == _digest(tiny_model_dir, name)
    different = build_tiny_model(tmp_path / "seed1", seed=1)
    assert _digest(different, "model.safetensors") != _digest(tiny_model_dir, "model.safetensors")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left
    with pytest.raises(BadInput, match="not empty"):
        build_tiny_model(other, seed=0)
    cfg = json.loads((other / "processor_config.json").read_text())
    assert cfg["processor_class"] == "Qwen2VLProcessor"


def test_cli_tiny_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from differad_cli.cli.app import app

    res = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "m"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    res = CliRunner().invoke(app, ["tiny-model", "--help"])
    assert "differad tiny-model" in res.output


def test_position_code_gives_each_cell_its_own_code(tmp_path: Path) -> None:
    """The Fourier code (bench/sweep_learning.py's q3p models): RMS as asked, every grid cell far from every
    other, written into Qwen3-VL's position table; Qwen2-VL (no table) is left as built."""
    import torch
    from transformers import AutoModelForImageTextToText

    from differad_cli.models.tiny import build_tiny_model, fourier_position_code

    code = fourier_position_code(16, 64)
    assert code.shape == (256, 64)
    assert torch.isclose(code.pow(2).mean().sqrt(), torch.tensor(1.0), atol=1e-5)
    dist = torch.cdist(code, code) + torch.eye(256) * 1e9
    assert dist.min() > 1.0  # rows and columns both told apart

    folder = build_tiny_model(tmp_path / "q3", family="qwen3_vl", position_code=2.0)
    table = AutoModelForImageTextToText.from_pretrained(folder).model.visual.pos_embed.weight
    side = int(table.shape[0] ** 0.5)
    assert torch.allclose(table, fourier_position_code(side, table.shape[1]) * 2.0, atol=1e-6)
    plain = build_tiny_model(tmp_path / "q3plain", family="qwen3_vl")
    assert AutoModelForImageTextToText.from_pretrained(plain).model.visual.pos_embed.weight.std() < 0.1
