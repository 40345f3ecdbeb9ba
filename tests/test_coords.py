from __future__ import annotations

import json
import math
import types

import pytest

from differad_cli.core.coords import FAMILIES, detect_family, format_box, from_model, smart_resize, to_model
from differad_cli.core.errors import BadInput


def test_detect_family_from_dict_object_and_folder(tmp_path) -> None:
    assert detect_family({"model_type": "qwen2_vl"}) == "qwen2_vl"
    assert detect_family(types.SimpleNamespace(model_type="qwen2_5_vl")) == "qwen2_5_vl"
    assert detect_family({"model_type": "qwen3_vl_moe"}) == "qwen3_vl"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert detect_family(tmp_path) == "qwen3_vl"
    assert detect_family(str(tmp_path / "config.json")) == "qwen3_vl"


def test_detect_family_follows_a_local_lora_adapter(tmp_path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    assert detect_family(adapter) == "qwen2_vl"


def test_detect_family_errors(tmp_path) -> None:
    with pytest.raises(BadInput, match="unsupported model_type 'llava'"):
        detect_family({"model_type": "llava"})
    with pytest.raises(BadInput, match=r"no config\.json"):
        detect_family(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BadInput, match="cannot read"):
        detect_family(tmp_path)


def test_smart_resize_hand_values() -> None:
    # 64x64: round(64/28)=2 -> 56x56 = 3136 = min_pixels: kept.
    assert smart_resize(64, 64) == (56, 56)
    # 256x256 -> 252x252 (9*28), inside the bounds.
    assert smart_resize(256, 256) == (252, 252)
    # Too small: 20x20 -> upscaled to reach min_pixels: beta = sqrt(3136/400) = 2.8 -> ceil(56/28)*28 = 56.
    assert smart_resize(20, 20) == (56, 56)
    # Too large: 2000x3000 with max 1003520 px: beta = sqrt(6e6/1003520); floor(h/beta/28)*28.
    beta = math.sqrt(2000 * 3000 / (28 * 28 * 1280))
    assert smart_resize(2000, 3000) == (math.floor(2000 / beta / 28) * 28, math.floor(3000 / beta / 28) * 28)
    h, w = smart_resize(2000, 3000)
    assert h * w <= 28 * 28 * 1280 and h % 28 == 0 and w % 28 == 0
    # Qwen3-VL's factor is 32.
    assert smart_resize(100, 200, factor=32, min_pixels=32 * 32, max_pixels=10**6) == (96, 192)
    with pytest.raises(BadInput, match="aspect ratio"):
        smart_resize(10, 2500)


def test_smart_resize_matches_transformers() -> None:
    # The reference implementation (torch-free module); the import is shared with the rest of the suite.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as ref

    sizes = [(64, 64), (100, 37), (480, 640), (1080, 1920), (29, 4000), (3000, 3000), (2, 256), (10, 133)]
    for h, w in sizes:
        assert smart_resize(h, w) == ref(h, w)
        assert smart_resize(h, w, factor=32, max_pixels=256 * 256) == ref(
            h, w, factor=32, max_pixels=256 * 256
        )


def test_normalized_families_round_trip() -> None:
    for fam in ("qwen2_vl", "qwen3_vl"):
        m = to_model((10, 20, 30, 40), fam, 200, 100)
        assert m == (50, 200, 150, 400)
        assert from_model(m, fam, 200, 100) == (10, 20, 30, 40)


def test_qwen25_uses_resized_pixels() -> None:
    # 640x480 target processed to 644x476 (w, h): boxes scale by rw/w and rh/h.
    m = to_model((64, 48, 320, 240), "qwen2_5_vl", 640, 480, resized_hw=(476, 644))
    # ground truth is rounded outward (floor the top-left, ceil the bottom-right): a box never shrinks
    expected = (
        math.floor(64 * 644 / 640),
        math.floor(48 * 476 / 480),
        math.ceil(320 * 644 / 640),
        math.ceil(240 * 476 / 480),
    )
    assert m == expected
    back = from_model(m, "qwen2_5_vl", 640, 480, resized_hw=(476, 644))
    assert all(abs(a - b) <= 1 for a, b in zip(back, (64, 48, 320, 240), strict=True))
    # Without the processor's size the default smart_resize applies: 64x64 -> 56x56.
    assert to_model((8, 8, 32, 32), "qwen2_5_vl", 64, 64) == (7, 7, 28, 28)


def test_zero_box_and_clipping_and_unknown_family() -> None:
    for fam in FAMILIES:
        assert to_model((0, 0, 0, 0), fam, 64, 64) == (0, 0, 0, 0)
        assert from_model((0, 0, 0, 0), fam, 64, 64) == (0, 0, 0, 0)
    assert from_model((-50, -50, 1200, 500), "qwen2_vl", 64, 64) == (0, 0, 64, 32)
    with pytest.raises(BadInput, match="unknown model family"):
        to_model((1, 1, 2, 2), "llava", 64, 64)


def test_format_box() -> None:
    assert format_box((1, 2, 30, 40)) == "(1,2),(30,40)"
    assert format_box((1.4, 2.6, 30.0, 40.2)) == "(1,3),(30,40)"
