"""Loading Qwen-VL checkpoints (full or LoRA adapters) and their processors, with or without torchvision.

transformers 5 cannot build the stock Qwen-VL processors without torchvision (their video processor needs it),
so when torchvision is missing an image-only subclass of the family's processor is used and registered with
``AutoProcessor``; with torchvision the stock processor is used unchanged.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput

_PROCESSOR_CLASSES = {
    "qwen2_vl": ("transformers.models.qwen2_vl.processing_qwen2_vl", "Qwen2VLProcessor", "Qwen2VLConfig"),
    "qwen2_5_vl": (
        "transformers.models.qwen2_5_vl.processing_qwen2_5_vl",
        "Qwen2_5_VLProcessor",
        "Qwen2_5_VLConfig",
    ),
    "qwen3_vl": ("transformers.models.qwen3_vl.processing_qwen3_vl", "Qwen3VLProcessor", "Qwen3VLConfig"),
}

DTYPES = {
    "auto": None,
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "fp32": "float32",
    "float32": "float32",
}


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


@functools.cache
def image_only_processor_class(family: str) -> type:
    """The family's stock processor without its video processor (images + tokenizer only)."""
    import importlib

    if family not in _PROCESSOR_CLASSES:
        raise BadInput(
            f"no processor known for model family '{family}' (known: {', '.join(_PROCESSOR_CLASSES)})"
        )
    module, name, _ = _PROCESSOR_CLASSES[family]
    base = getattr(importlib.import_module(module), name)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    # Same class name as the stock processor, so checkpoints saved with it name the stock class on disk
    # and load with AutoProcessor wherever torchvision exists.
    cls = type(
        name, (base,), {"__init__": __init__, "__doc__": f"{name} for images only (no video processor)."}
    )
    cls.__qualname__ = f"{name}ImageOnly"
    cls.image_only = True
    return cls


def _register_image_only(family: str) -> type:
    import importlib

    from transformers import AutoProcessor

    cls = image_only_processor_class(family)
    config_cls = getattr(importlib.import_module("transformers"), _PROCESSOR_CLASSES[family][2])
    AutoProcessor.register(config_cls, cls, exist_ok=True)
    return cls


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise BadInput(f"model folder not found: {p}")
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise BadInput(f"not a model folder (no config.json or adapter_config.json): {p}")
    return p


def adapter_base(path: str | os.PathLike[str]) -> Path | None:
    """The base model folder of a PEFT adapter folder, or None for a full checkpoint."""
    p = Path(path)
    cfg = p / "adapter_config.json"
    full = (p / "model.safetensors").is_file() or (p / "model.safetensors.index.json").is_file()
    if not cfg.is_file() or full:
        return None
    base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise BadInput(f"adapter folder {p} does not name its base model (base_model_name_or_path)")
    base_path = Path(base)
    if not base_path.is_absolute() and not base_path.is_dir():
        base_path = p / base
    if not base_path.is_dir():
        raise BadInput(f"base model of adapter {p} not found: {base}")
    return base_path


def run_folder(path: str | os.PathLike[str]) -> Path:
    """The training run a model folder belongs to: a ``checkpoint-N`` or ``merged`` folder's parent, else the
    folder itself (a run's final model is saved in its root)."""
    import re

    p = Path(path)
    return p.parent if re.fullmatch(r"checkpoint-\d+|merged", p.name) else p


def trained_prompt(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The prompt a differad run trained ``path`` on (``{"template", "paraphrase"}`` from its run folder's
    train_summary.json), or None for a model differad did not train. A model cold-started on one wording
    answers another with garbage, so predict and train-rl use or check it."""
    run = run_folder(path)
    try:
        summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    seen = summary.get("prompt") if isinstance(summary, dict) else None
    return seen if isinstance(seen, dict) else None


def model_family(path: str | os.PathLike[str]) -> str:
    """Coordinate family of a checkpoint or adapter folder (unknown model_type -> BadInput)."""
    from differad_cli.core.coords import detect_family

    p = _check_path(path)
    base = adapter_base(p)
    return detect_family(base if base is not None else p)


def load_processor(path: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    """The checkpoint's processor: stock when torchvision imports, else the image-only Qwen-VL processor."""
    from transformers import AutoProcessor

    p = _check_path(path)
    base = adapter_base(p)
    src = p if (p / "tokenizer_config.json").is_file() or base is None else base
    if torchvision_available():
        try:
            return AutoProcessor.from_pretrained(src, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as e:  # e.g. a checkpoint saved without a video processor config
            from differad_cli.core import console

            console.debug(f"stock processor unavailable ({e}); using the image-only processor")
    family = model_family(p)
    cls = _register_image_only(family)
    return cls.from_pretrained(src, trust_remote_code=trust_remote_code)


def resolve_dtype(dtype: Any, device: str) -> Any:
    """'auto'/None: bf16 on a GPU that supports it, else fp32; 'bf16' etc. or torch dtypes pass through."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise BadInput(f"unknown dtype '{dtype}' (use one of: {', '.join(DTYPES)})")
    return getattr(torch, DTYPES[dtype] or "float32")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def quiet_accelerator_probe() -> None:
    """DeepSpeed (imported by transformers/TRL) prints a warning on stdout when it probes for a GPU and finds
    none; naming the CPU up front keeps stdout clean. A machine with CUDA is left to DeepSpeed's own probe."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def load_model_and_processor(
    path: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any, str]:
    """(model in eval mode, processor, family) from a full checkpoint or a LoRA adapter folder on its base."""
    quiet_accelerator_probe()
    from transformers import AutoModelForImageTextToText

    p = _check_path(path)
    family = model_family(p)
    processor = load_processor(p, trust_remote_code=trust_remote_code)
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    base = adapter_base(p)
    model = AutoModelForImageTextToText.from_pretrained(
        base if base is not None else p,
        dtype=torch_dtype,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        device_map=device if device.startswith("cuda") else None,  # straight onto the GPU, no CPU copy
    )
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, p)
    model.to(device).eval()
    return model, processor, family


def resize_params(processor: Any) -> dict[str, int]:
    """min_pixels / max_pixels / factor of the processor's image resizing (for coords.smart_resize)."""
    ip = getattr(processor, "image_processor", processor)
    size = getattr(ip, "size", None) or {}
    get = size.get if hasattr(size, "get") else lambda k, d=None: getattr(size, k, d)
    min_pixels = getattr(ip, "min_pixels", None) or get("shortest_edge") or 56 * 56
    max_pixels = getattr(ip, "max_pixels", None) or get("longest_edge") or 28 * 28 * 1280
    factor = int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))
    return {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels), "factor": factor}
