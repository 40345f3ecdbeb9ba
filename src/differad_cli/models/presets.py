"""Model sizes per Qwen-VL family: the offline tiny size and the smallest published real size (random
weights).

``FAMILY_PRESETS[family][name]`` is the one table tests and benchmarks read; the real sizes are the published
architectures (each model's config.json on the hub), checked against the published parameter counts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from differad_cli.core.errors import BadInput
from differad_cli.core.families import FAMILIES

# 7b: Qwen2.5-VL only; 8b: Qwen3-VL only
PRESETS: tuple[str, ...] = ("tiny", "learner", "demo", "real", "7b", "8b")


# transformers class names per family: (config, model).
MODEL_CLASSES: dict[str, tuple[str, str]] = {
    "qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration"),
    "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
    "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
}


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # Qwen2/2.5-VL normalize with OpenAI CLIP's statistics


_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preset:
    """One family's model at one size: sub-configs in the family's own config keys, processor limits."""

    text: dict[str, Any]  # text_config (vocab_size and token ids are added at build time)
    vision: dict[str, Any]  # vision_config
    patch_size: int  # vision patch; the resize factor is patch_size * 2 (spatial merge 2)
    min_pixels: int
    max_pixels: int
    tie_word_embeddings: bool
    vocab_size: int | None = None  # None: the tokenizer's size (tiny); real checkpoints keep 151936 rows
    published_params: int | None = None  # the published checkpoint's parameter count (real presets)
    position_code: float = 0.0  # > 0: the vision tower's position table set to a 2D Fourier code of this RMS

    @property
    def image_mean(self) -> tuple[float, ...]:
        return (0.5, 0.5, 0.5) if self.patch_size == 16 else _CLIP_MEAN

    @property
    def image_std(self) -> tuple[float, ...]:
        return (0.5, 0.5, 0.5) if self.patch_size == 16 else _CLIP_STD


def _tiny_text(**extra: Any) -> dict[str, Any]:
    """Text sizes shared by the tiny presets (~0.1M parameters); mrope sections sum to head_dim / 2 = 4."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        **extra,
    }


def _learner_text(**extra: Any) -> dict[str, Any]:
    """Text sizes of the learner presets (~1.5M parameters): head_dim 64 and rope_theta 100, so the rotary
    height/width frequencies (0.06-0.3 rad per position) tell an 8x8 grid's positions apart; at 1e4 they were
    0.01-0.0002 rad and a probe's model could not localize (docs/learning.md)."""
    return {
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 100.0, "mrope_section": [8, 12, 12]},
        **extra,
    }


# The learner: a 224x224 input is 64 image tokens per image (an 8x8 grid after the 2x2 merge) in every
# family (at 16 tokens the first probes' recipes localized nothing; the demo preset below does, with a
# curriculum). min = max pixels: every image gets that size.
_LEARNER_PIXELS = {14: 224 * 224, 16: 256 * 256}


# The one table of model sizes (benchmarks import it). Tiny: a 64x64 image becomes 4 image tokens in every
# family (factor 28: 56x56, factor 32: 64x64). Real: the published config.json of each family's smallest
# checkpoint on the Hugging Face hub, with random weights:
#   Qwen2-VL-2B-Instruct: hidden 1536, intermediate 8960, 28 layers, 12 heads / 2 KV, rope_theta 1e6,
#     mrope_section [16,24,24], tied embeddings, vocab 151936; vision_config names only hidden_size 1536 (the
#     merger output), the rest are Qwen2VLVisionConfig's defaults: depth 32, embed_dim 1280, 16 heads,
#     mlp_ratio 4, patch 14, quick_gelu. preprocessor_config: min_pixels 3136, max_pixels 12845056.
#     Published size 2.21B parameters.
#   Qwen2.5-VL-3B-Instruct: hidden 2048, intermediate 11008, 36 layers, 16 heads / 2 KV, rope_theta 1e6,
#     mrope_section [16,24,24], max_position_embeddings 128000, tied, vocab 151936; vision depth 32, hidden
#     1280, intermediate 3420, 16 heads, out_hidden_size 2048, patch 14, window_size 112,
#     fullatt_block_indexes [7,15,23,31], tokens_per_second 2, silu. Pixels 3136-12845056. Published 3.75B.
#   Qwen3-VL-2B-Instruct: hidden 2048, intermediate 6144, 28 layers, 16 heads / 8 KV, head_dim 128,
#     rope_theta 5e6, interleaved mrope_section [24,20,20], max_position_embeddings 262144, tied, vocab
#     151936; vision depth 24, hidden 1024, intermediate 4096, 16 heads, out_hidden_size 2048, patch 16,
#     num_position_embeddings 2304, deepstack_visual_indexes [5,11,17], gelu_pytorch_tanh; image processor
#     size shortest_edge 65536, longest_edge 16777216, mean/std 0.5. Published ~2.1B.
FAMILY_PRESETS: dict[str, dict[str, Preset]] = {
    "qwen2_vl": {
        "tiny": Preset(
            text=_tiny_text(),
            vision={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
            patch_size=14, min_pixels=56 * 56, max_pixels=112 * 112, tie_word_embeddings=False,
        ),
        "learner": Preset(
            text=_learner_text(),
            vision={"depth": 2, "embed_dim": 64, "hidden_size": 128, "num_heads": 2, "mlp_ratio": 2,
                    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
            patch_size=14, min_pixels=_LEARNER_PIXELS[14], max_pixels=_LEARNER_PIXELS[14],
            tie_word_embeddings=False,
        ),
        "real": Preset(
            text={"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                  "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                  "rms_norm_eps": 1e-6, "hidden_act": "silu",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                      "mrope_section": [16, 24, 24]}},
            vision={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                    "hidden_act": "quick_gelu", "patch_size": 14, "spatial_merge_size": 2,
                    "temporal_patch_size": 2},
            patch_size=14, min_pixels=3136, max_pixels=12845056, tie_word_embeddings=True,
            vocab_size=151936, published_params=2_210_000_000,
        ),
    },
    "qwen2_5_vl": {
        "tiny": Preset(
            text=_tiny_text(),
            vision={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                    "out_hidden_size": 32, "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2,
                    "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [1],
                    "tokens_per_second": 2},
            patch_size=14, min_pixels=56 * 56, max_pixels=112 * 112, tie_word_embeddings=False,
        ),
        "learner": Preset(
            text=_learner_text(),
            vision={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                    "out_hidden_size": 128, "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2,
                    "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [1],
                    "tokens_per_second": 2},
            patch_size=14, min_pixels=_LEARNER_PIXELS[14], max_pixels=_LEARNER_PIXELS[14],
            tie_word_embeddings=False,
        ),
        "real": Preset(
            text={"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                  "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
                  "rms_norm_eps": 1e-6, "hidden_act": "silu",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                      "mrope_section": [16, 24, 24]}},
            vision={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                    "out_hidden_size": 2048, "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2,
                    "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                    "tokens_per_second": 2},
            patch_size=14, min_pixels=3136, max_pixels=12845056, tie_word_embeddings=True,
            vocab_size=151936, published_params=3_750_000_000,
        ),
        # Qwen2.5-VL-7B-Instruct (config.json): the recipes qwen2_5_vl_7b_{lora,full} are sized for it
        "7b": Preset(
            text={"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                  "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
                  "rms_norm_eps": 1e-6, "hidden_act": "silu",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                      "mrope_section": [16, 24, 24]}},
            vision={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                    "out_hidden_size": 3584, "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2,
                    "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                    "tokens_per_second": 2},
            patch_size=14, min_pixels=3136, max_pixels=12845056, tie_word_embeddings=False,
            vocab_size=152064, published_params=8_290_000_000,
        ),
    },
    "qwen3_vl": {
        "tiny": Preset(
            text=_tiny_text(
                head_dim=8,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "mrope_interleaved": True},
            ),
            vision={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                    "out_hidden_size": 32, "hidden_act": "gelu_pytorch_tanh", "patch_size": 16,
                    "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
                    "deepstack_visual_indexes": [0]},
            patch_size=16, min_pixels=64 * 64, max_pixels=128 * 128, tie_word_embeddings=False,
        ),
        "learner": Preset(
            text=_learner_text(
                rope_parameters={"rope_type": "default", "rope_theta": 100.0, "mrope_section": [12, 10, 10],
                                 "mrope_interleaved": True},
            ),
            vision={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                    "out_hidden_size": 128, "hidden_act": "gelu_pytorch_tanh", "patch_size": 16,
                    "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 256,
                    "deepstack_visual_indexes": [0]},
            patch_size=16, min_pixels=_LEARNER_PIXELS[16], max_pixels=_LEARNER_PIXELS[16],
            tie_word_embeddings=False,
        ),
        "real": Preset(
            text={"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                  "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                  "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "hidden_act": "silu",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                      "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
            vision={"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                    "out_hidden_size": 2048, "hidden_act": "gelu_pytorch_tanh", "patch_size": 16,
                    "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
                    "deepstack_visual_indexes": [5, 11, 17]},
            patch_size=16, min_pixels=65536, max_pixels=16777216, tie_word_embeddings=True,
            vocab_size=151936, published_params=2_130_000_000,
        ),
        # Qwen3-VL-8B-Instruct (config.json): the recipes qwen3_vl_8b_{lora,full} are sized for it
        "8b": Preset(
            text={"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                  "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "hidden_act": "silu",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                      "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
            vision={"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                    "out_hidden_size": 4096, "hidden_act": "gelu_pytorch_tanh", "patch_size": 16,
                    "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
                    "deepstack_visual_indexes": [8, 16, 24]},
            patch_size=16, min_pixels=65536, max_pixels=16777216, tie_word_embeddings=False,
            vocab_size=151936, published_params=8_770_000_000,
        ),
    },
}  # fmt: skip


# The demo's learner: the learner at 16 image tokens per image (a 4x4 grid after the merge: 112x112 at patch
# 14, 128x128 at 16) with its text weights drawn at std 0.08 (~1/sqrt(hidden)) instead of 0.02. A sequence
# a third as long makes a step ~2.5x cheaper, which with the blank-first curriculum (docs/learning.md) is
# what lets `make demo` show localization within 5 minutes; the 4x4 grid snaps boxes coarsely.
_DEMO_PIXELS = {14: 112 * 112, 16: 128 * 128}
for _sizes in FAMILY_PRESETS.values():
    _learner = _sizes["learner"]
    _sizes["demo"] = dataclasses.replace(
        _learner,
        text={**_learner.text, "initializer_range": 0.08},
        min_pixels=_DEMO_PIXELS[_learner.patch_size],
        max_pixels=_DEMO_PIXELS[_learner.patch_size],
    )


def preset(family: str, name: str = "tiny") -> Preset:
    """FAMILY_PRESETS[family][name]; an unknown family or preset is a usage error (exit 2)."""
    if family not in FAMILY_PRESETS:
        raise BadInput(f"unknown model family '{family}' (choose from: {', '.join(FAMILIES)})")
    if name not in FAMILY_PRESETS[family]:
        known = ", ".join(FAMILY_PRESETS[family])
        raise BadInput(f"unknown preset '{name}' for {family} (choose from: {known})")
    return FAMILY_PRESETS[family][name]
