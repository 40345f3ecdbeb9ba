"""Small, randomly initialized Qwen-VL checkpoints built entirely offline, so every stage runs on a CPU.

Each family gets its own architecture class (``Qwen2VLForConditionalGeneration``,
``Qwen2_5_VLForConditionalGeneration``, ``Qwen3VLForConditionalGeneration``), its processor geometry (patch
14 or 16), added tokens and chat template, and a small byte-level BPE tokenizer (trained here on a fixed
corpus of the protocol's vocabulary: digits, brackets, ``<think>``/``<answer>`` ...), so the ordinary
transformers loading code reads it back. ``--preset real`` keeps the tokenizer but gives the model the
published architecture of the family's smallest checkpoint (random weights): for benchmarks of memory and
speed at the true size.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput
from differad_cli.core.io import check_out_dir
from differad_cli.models.presets import (
    MODEL_CLASSES,
    Preset,
    preset,
)

SAVE_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}

# Qwen2-VL's added tokens in the original order (ids follow the BPE vocabulary); all three families have them.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added (non-special) tokens that follow them in the later families' tokenizers: Qwen2.5-VL adds tool-call and
# fill-in-the-middle tokens (ids 151657-151664), Qwen3-VL also tool responses and <think>/</think> (-151668),
# so a Qwen3-VL answer's <think> is one token, as in the real tokenizer.
_QWEN25_ADDED = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
ADDED_TOKENS: dict[str, tuple[str, ...]] = {
    "qwen2_vl": (),
    "qwen2_5_vl": _QWEN25_ADDED,
    "qwen3_vl": (*_QWEN25_ADDED, "<tool_response>", "</tool_response>", "<think>", "</think>"),
}
# The chat template each family's checkpoints ship, as carried by TRL's wheel: Qwen2-VL's is byte-identical to
# Qwen2.5-VL's (TRL's README says so); Qwen3-VL's differs (no default system prompt, tool-call blocks).
CHAT_TEMPLATES = {
    "qwen2_vl": "qwen2_5_vl.jinja",
    "qwen2_5_vl": "qwen2_5_vl.jinja",
    "qwen3_vl": "qwen3_vl.jinja",
}


def _corpus() -> list[str]:
    """Text the BPE merges are learnt from: the protocol's words, tags and boxes (fixed: deterministic)."""
    lines = [
        "<think>The target differs from the reference in the upper left region.</think>"
        "<answer>(120,340),(410,655)</answer>",
        "<think>The two images match; no abnormal region.</think><answer>(0,0),(0,0)</answer>",
        "Image 1 is the reference (normal) image and image 2 is the target image. Compare the two images, "
        "reason inside <think></think> and put only the box inside <answer></answer> as (x1,y1),(x2,y2).",
        "brighter darker colour color shift texture change scratch crack stain missing region area share of "
        "the image centre center lower right left middle top bottom small large anomaly anomalous normal "
        "defect abnormal reference target region analysis decision answer think yes no product surface",
        '{"bbox_2d": [12, 34, 56, 78]} [[10,20,30,40]] [1, 2, 3, 4] x1 y1 x2 y2',
    ]
    corners = zip(range(0, 1000, 7), range(3, 1000, 11), range(5, 1000, 13), range(9, 1000, 17), strict=False)
    nums = [f"({a},{b}),({c},{d})" for a, b, c, d in corners]
    lines.append(" ".join(nums))
    lines.append(" ".join(str(i) for i in range(1001)))
    return lines * 4


def build_tokenizer(vocab_size: int = 1024, family: str = "qwen2_vl"):
    """A deterministic byte-level BPE tokenizer as ``Qwen2Tokenizer`` with the family's added tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    qtok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, errors="replace", model_max_length=32768, padding_side="left"
    )  # left padding: generation batches end where generation starts
    qtok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    if ADDED_TOKENS[family]:
        qtok.add_tokens(list(ADDED_TOKENS[family]), special_tokens=False)
    qtok.eos_token = "<|im_end|>"  # what Qwen2-VL-Instruct generation stops on
    qtok.pad_token = "<|endoftext|>"
    qtok.chat_template = chat_template(family)
    return qtok


def chat_template(family: str = "qwen2_vl") -> str:
    """The family's own chat template, as carried by TRL's wheel (byte-identical to the checkpoints')."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / CHAT_TEMPLATES[family]).read_text(encoding="utf-8")


def model_config(family: str, spec: Preset, tok: Any) -> Any:
    """The family's transformers config for ``spec``, with the tokenizer's special-token ids."""
    import transformers

    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config_cls = getattr(transformers, MODEL_CLASSES[family][0])
    text = {
        **spec.text,
        "vocab_size": spec.vocab_size or len(tok),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    return config_cls(
        text_config=text,
        vision_config=dict(spec.vision),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec.tie_word_embeddings,
    )


def count_parameters(family: str, name: str = "real") -> int:
    """Parameters of a preset's model, counted on the meta device (no memory, no initialization)."""
    import torch
    import transformers

    spec = preset(family, name)
    tok = build_tokenizer(family=family)
    with torch.device("meta"):
        model = getattr(transformers, MODEL_CLASSES[family][1])(model_config(family, spec, tok))
    return sum(p.numel() for p in model.parameters())  # tied embeddings are one parameter, counted once


@dataclass
class TinyModelOptions:
    """Options of `differad tiny-model` (the output folder is its argument)."""

    family: str = field(
        default="qwen2_vl", metadata={"help": "qwen2_vl | qwen2_5_vl | qwen3_vl (architecture + processor)."}
    )
    preset: str = field(
        default="tiny",
        metadata={
            "help": "tiny (~0.1M parameters, CPU seconds) | learner (~1.5M, 64 image tokens per image: "
            "learns on a CPU in minutes) | demo (the learner at 16 image tokens per image: `make demo`'s) | "
            "real (the family's smallest published architecture: Qwen2-VL-2B, Qwen2.5-VL-3B, Qwen3-VL-2B; "
            "random weights) | 7b (Qwen2.5-VL-7B) | 8b (Qwen3-VL-8B)."
        },
    )
    dtype: str | None = field(
        default=None,
        metadata={"help": "fp32 | bf16: saved weights (default: fp32 tiny, learner and demo; bf16 real)."},
    )
    device: str = field(default="cpu", metadata={"help": "cpu | cuda: where the random initialization runs."})
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})


def fourier_position_code(side: int, dim: int) -> Any:
    """A ``side`` x ``side`` grid of ``dim``-wide codes: half the channels a DCT-like cos/sin basis of the
    row, half of the column, each with RMS 1, so every grid cell has its own, linearly readable code."""
    import torch

    half = dim // 2
    k = torch.arange(1, half // 2 + 1, dtype=torch.float64)
    pos = torch.arange(side, dtype=torch.float64)
    angle = torch.pi * (2 * pos[:, None] + 1) * k[None, :] / (2 * side)
    axis = torch.cat([angle.cos(), angle.sin()], dim=1) * 2**0.5  # (side, half), RMS 1
    axis = torch.nn.functional.pad(axis, (0, half - axis.shape[1]))
    rows = axis[:, None, :].expand(side, side, half)
    cols = axis[None, :, :].expand(side, side, half)
    code = torch.cat([rows, cols], dim=2).reshape(side * side, 2 * half)
    return torch.nn.functional.pad(code, (0, dim - code.shape[1])).float()


def set_position_code(model: Any, rms: float) -> None:
    """Give the vision tower's absolute position embeddings (Qwen3-VL's ``pos_embed``, bilinearly resampled to
    each image's patch grid) a Fourier code at ``rms``. Randomly initialized they have RMS 0.02 beside patch
    features of ~0.8: positions are all but invisible, and a frozen tower never learns them. With the code the
    image tokens say where they are; in a GPU sweep (docs/learning.md) that did not make the learner
    localize sooner, so no preset sets it (``bench/sweep_learning.py`` compares). Families without a table
    are left as built."""
    import torch

    for module in model.modules():
        table = getattr(module, "pos_embed", None)
        if isinstance(table, torch.nn.Embedding) and hasattr(module, "num_grid_per_side"):
            side = module.num_grid_per_side
            code = fourier_position_code(side, table.weight.shape[1]) * rms
            with torch.no_grad():
                table.weight.copy_(code.to(table.weight.dtype))


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    family: str = "qwen2_vl",
    preset_name: str = "tiny",
    dtype: str | None = None,
    device: str = "cpu",
    position_code: float | None = None,
) -> Path:
    """Write a random checkpoint of ``family`` at ``preset_name`` size (model, tokenizer, processor) to
    ``out_dir`` and return its path. ``dtype`` (fp32 | bf16) is what is saved: fp32 for tiny, bf16 for real
    unless given; ``device`` is where the random initialization runs (real size initializes much faster on a
    GPU); ``position_code`` overrides the preset's (``set_position_code``). The folder is built under a
    temporary name and renamed into place, so an interrupted build leaves nothing.
    """
    from differad_cli.models.load import image_only_processor_class, quiet_accelerator_probe

    spec = preset(family, preset_name)
    dtype = dtype or ("fp32" if preset_name in ("tiny", "learner", "demo") else "bf16")
    if dtype not in SAVE_DTYPES:
        raise BadInput(f"unknown --dtype '{dtype}' (choose from: {', '.join(SAVE_DTYPES)})")
    if device not in ("cpu", "cuda"):
        raise BadInput(f"unknown --device '{device}' (choose from: cpu, cuda)")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"output folder exists and is not empty: {out}")
    check_out_dir(out, (), lambda _: True, flag="OUT")  # a read-only parent: refused before the slow imports
    quiet_accelerator_probe()
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available here")
    tok = build_tokenizer(family=family)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    model_cls = getattr(transformers, MODEL_CLASSES[family][1])
    torch.manual_seed(seed)
    if device == "cuda":
        torch.cuda.manual_seed_all(seed)
    with torch.device(device):
        model = model_cls._from_config(
            model_config(family, spec, tok), dtype=getattr(torch, SAVE_DTYPES[dtype])
        ).eval()
    code_rms = spec.position_code if position_code is None else position_code
    if code_rms > 0:
        set_position_code(model, code_rms)
    gen = model.generation_config
    gen.bos_token_id = ids["<|endoftext|>"]
    gen.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    gen.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
        size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
        patch_size=spec.patch_size,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
    )
    processor = image_only_processor_class(family)(
        image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template
    )

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as e:
        raise BadInput(f"cannot create {out}: {e.strerror or e}") from None
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def preset_of(model_dir: str | os.PathLike[str], family: str) -> str | None:
    """Which of ``family``'s offline presets (tiny, learner, demo) a `tiny-model` folder was built at, told
    apart by its text width and initialization and the image size its processor resizes to; None for
    anything else (an unreadable folder included). A resumed demo checks its learner with it."""
    d = Path(model_dir)
    try:
        text = json.loads((d / "config.json").read_text(encoding="utf-8"))["text_config"]
        size = json.loads((d / "processor_config.json").read_text(encoding="utf-8"))["image_processor"][
            "size"
        ]
        found = (text["hidden_size"], text.get("initializer_range", 0.02), size["longest_edge"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    for name in ("tiny", "learner", "demo"):
        spec = preset(family, name)
        if found == (spec.text["hidden_size"], spec.text.get("initializer_range", 0.02), spec.max_pixels):
            return name
    return None
