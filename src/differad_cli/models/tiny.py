"""A tiny, randomly initialized Qwen2-VL built entirely offline, so every stage runs and is tested on a CPU.

The checkpoint is a stock ``Qwen2VLForConditionalGeneration`` with a small byte-level BPE tokenizer (trained
here on a fixed corpus of the protocol's vocabulary: digits, brackets, ``<think>``/``<answer>`` …) that
carries Qwen2-VL's special tokens and chat template, so the ordinary transformers loading code reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from differad_cli.core.errors import BadInput

# Qwen2-VL's added tokens, in the original order (ids follow the BPE vocabulary).
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


@dataclass
class TinyModelConfig:
    """Sizes of the tiny model; the defaults give ~0.12M parameters and 4 image tokens per 64x64 image."""

    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size before the special tokens."})
    hidden_size: int = field(default=32, metadata={"help": "Text hidden size (= vision merger output)."})
    intermediate_size: int = field(default=64, metadata={"help": "Text MLP size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Text decoder layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Text attention heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Text KV heads."})
    vision_depth: int = field(default=1, metadata={"help": "Vision transformer blocks."})
    vision_embed_dim: int = field(default=32, metadata={"help": "Vision embedding size."})
    vision_heads: int = field(default=2, metadata={"help": "Vision attention heads."})
    min_pixels: int = field(default=56 * 56, metadata={"help": "Processor lower pixel limit."})
    max_pixels: int = field(default=112 * 112, metadata={"help": "Processor upper pixel limit."})


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


def build_tokenizer(vocab_size: int = 1024):
    """A deterministic byte-level BPE tokenizer as ``Qwen2Tokenizer`` with Qwen2-VL's special tokens."""
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
    qtok.eos_token = "<|im_end|>"  # what Qwen2-VL-Instruct generation stops on
    qtok.pad_token = "<|endoftext|>"
    qtok.chat_template = chat_template()
    return qtok


def chat_template() -> str:
    """Qwen2-VL's chat template, as carried by TRL's wheel (byte-identical to the original)."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")


def build_tiny_model(
    out_dir: str | os.PathLike[str], *, seed: int = 0, config: TinyModelConfig | None = None
) -> Path:
    """Write a tiny Qwen2-VL checkpoint (model, tokenizer, processor) to ``out_dir`` and return its path.

    The folder is built under a temporary name and renamed into place, so an interrupted build leaves nothing.
    """
    from differad_cli.models.load import image_only_processor_class, quiet_accelerator_probe

    quiet_accelerator_probe()
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    cfg = config or TinyModelConfig()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"output folder exists and is not empty: {out}")
    tok = build_tokenizer(cfg.vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 4), half // 4, half // 4]  # sums to half the head dimension
    model_cfg = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": cfg.vision_depth,
            "embed_dim": cfg.vision_embed_dim,
            "hidden_size": cfg.hidden_size,
            "num_heads": cfg.vision_heads,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(model_cfg).eval()
    gen = model.generation_config
    gen.bos_token_id = ids["<|endoftext|>"]
    gen.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    gen.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
        size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels},
    )
    processor = image_only_processor_class("qwen2_vl")(
        image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
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
