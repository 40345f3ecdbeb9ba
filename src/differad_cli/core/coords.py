"""Coordinate systems at the model boundary, per Qwen-VL family (records always hold target pixels).

Qwen2-VL and Qwen3-VL ground boxes as integers normalized to 0-1000 of the image; Qwen2.5-VL grounds in
absolute pixels of the image *after* the processor's resize (``smart_resize``), so converting needs that
resized size (the processor's min/max pixels decide it; ``models.resize_params`` reads them).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from differad_cli.core.boxes import IntBox, from_1000, from_resized, is_zero, to_1000, to_resized
from differad_cli.core.errors import BadInput
from differad_cli.core.families import FAMILIES

if TYPE_CHECKING:  # records reads images (cv2): not needed to convert boxes
    from differad_cli.core.records import Pair

NORMALIZED_FAMILIES = frozenset({"qwen2_vl", "qwen3_vl"})

# transformers' model_type -> family (MoE and text-only variants share their family's grounding convention).
_MODEL_TYPES: dict[str, str] = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
}


def _model_type(config: Any) -> tuple[str | None, str]:
    """(model_type, where it came from) from a config object, a dict, or a folder/file path."""
    if isinstance(config, Mapping):
        return config.get("model_type"), "config dict"
    if isinstance(config, (str, os.PathLike)):
        p = Path(config)
        cfg = p / "config.json" if p.is_dir() else p
        if p.is_dir() and not cfg.is_file() and (p / "adapter_config.json").is_file():
            # A PEFT adapter folder: the family is its base model's.
            base = _read_json(p / "adapter_config.json").get("base_model_name_or_path")
            if isinstance(base, str) and Path(base).is_dir():
                return _model_type(base)
            raise BadInput(f"{p} is a LoRA adapter whose base model '{base}' is not a local folder")
        if not cfg.is_file():
            raise BadInput(f"no config.json in {p}")
        return _read_json(cfg).get("model_type"), str(cfg)
    return getattr(config, "model_type", None), type(config).__name__


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path}: {e}") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{path} does not hold a JSON object")
    return obj


def detect_family(config: Any) -> str:
    """The coordinate family of a model: transformers config, config dict, or model folder (config.json)."""
    model_type, where = _model_type(config)
    family = _MODEL_TYPES.get(str(model_type)) if model_type is not None else None
    if family is None:
        what = "no model_type" if model_type is None else f"unsupported model_type '{model_type}'"
        raise BadInput(f"{what} ({where}); supported families: {', '.join(FAMILIES)}")
    return family


# Spellings of the families in model names (Qwen2.5-VL-3B-Instruct, qwen3_vl_2b ...), checked in this order
# once separators are dropped ("qwen2.5-vl" -> "qwen25vl"): Qwen2.5 before Qwen2.
_NAME_KEYS = (("qwen25vl", "qwen2_5_vl"), ("qwen3vl", "qwen3_vl"), ("qwen2vl", "qwen2_vl"))


def family_from_name(name: str | os.PathLike[str]) -> str | None:
    """The family a model name (a path's last part) spells out, e.g. Qwen2.5-VL-3B-Instruct; else None."""
    squashed = re.sub(r"[\s._\-]", "", Path(str(name)).name.lower())
    return next((family for key, family in _NAME_KEYS if key in squashed), None)


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise BadInput(f"unknown model family '{family}' (choose from: {', '.join(FAMILIES)})")
    return family


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """Qwen-VL's resize rule: both sides multiples of ``factor``, area within [min, max], aspect kept."""
    if height <= 0 or width <= 0:
        raise BadInput(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise BadInput(f"aspect ratio of a {width}x{height} image exceeds Qwen-VL's limit of 200")
    h_bar = round(height / factor) * factor  # may be 0 for a side < factor/2: the min_pixels branch fixes it
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _resized(width: int, height: int, resized_hw: tuple[int, int] | None) -> tuple[int, int]:
    """(rh, rw); without the processor's figure, Qwen's default resize is assumed."""
    if resized_hw is None:
        return smart_resize(height, width)
    rh, rw = int(resized_hw[0]), int(resized_hw[1])
    if rh <= 0 or rw <= 0:
        raise BadInput(f"resized size must be positive, got {resized_hw}")
    return rh, rw


def _convert(box: Sequence[float], family: str, width: int, height: int, resized_hw: tuple[int, int] | None,
             normalized: Callable[..., IntBox], resized: Callable[..., IntBox]) -> IntBox:  # fmt: skip
    check_family(family)
    if is_zero(box):
        return (0, 0, 0, 0)
    if family in NORMALIZED_FAMILIES:
        return normalized(box, width, height)
    rh, rw = _resized(width, height, resized_hw)
    return resized(box, width, height, rw, rh)


def to_model(
    box_px: Sequence[float], family: str, width: int, height: int, resized_hw: tuple[int, int] | None = None
) -> IntBox:
    """Target-image pixels -> the family's answer coordinates (the zero box stays zero)."""
    return _convert(box_px, family, width, height, resized_hw, to_1000, to_resized)


def from_model(
    box: Sequence[float],
    family: str,
    width: int,
    height: int,
    resized_hw: tuple[int, int] | None = None,
) -> IntBox:
    """The family's answer coordinates -> target-image pixels (rounded and clipped to the image)."""
    return _convert(box, family, width, height, resized_hw, from_1000, from_resized)


def format_box(box: Sequence[float]) -> str:
    """The answer form the prompts ask for: ``(x1,y1),(x2,y2)`` with integers."""
    x1, y1, x2, y2 = (round(v) for v in box)
    return f"({x1},{y1}),({x2},{y2})"


def pair_frame(pair: Pair, family: str, resize: dict[str, int]) -> tuple[int, int] | None:
    """(height, width) of the processor-resized target for families that answer in its pixels, else None."""
    return smart_resize(pair.height, pair.width, **resize) if family == "qwen2_5_vl" else None


def model_box(pair: Pair, family: str, resize: dict[str, int]) -> tuple[int, int, int, int]:
    """The pair's box in the family's answer coordinates (what the model is taught to write)."""
    return to_model(pair.box, family, pair.width, pair.height, pair_frame(pair, family, resize))


def model_extent(pair: Pair, family: str, resize: dict[str, int]) -> list[int]:
    """(width, height) of the frame the family answers in: rewards clip answers to it, as eval does."""
    resized = pair_frame(pair, family, resize)
    return [1000, 1000] if resized is None else [resized[1], resized[0]]
