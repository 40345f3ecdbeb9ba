"""Model handling for training: loading a trainable model (full, LoRA, resumed), freezing the vision tower,
LoRA targets, generation guards, and saving the final model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput

VISION_MODULES = r".*\bvisual\b.*"  # Qwen-VL's vision tower lives under `visual`


def lora_config(cfg: Any) -> Any:
    """LoRA adapters on the language model; with a frozen vision tower no adapter goes into it either
    (Qwen2.5-VL's vision blocks also have gate/up/down projections that the default targets would match)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        exclude_modules=VISION_MODULES if cfg.freeze_vision else None,
        task_type="CAUSAL_LM",
    )


def check_lora_targets(model: Any, cfg: Any) -> None:
    """Unknown --lora-target-modules are a usage error (exit 2), not a PEFT traceback after loading."""
    if not cfg.lora:
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(cfg.lora_target_modules) - names)
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"}
        )
        raise BadInput(
            f"--lora-target-modules: no module named {', '.join(missing)} in this model "
            f"(linear layers: {', '.join(linear)})"
        )


def full_checkpoint(checkpoint: str | None) -> Path | None:
    """A resumed checkpoint that holds the whole model (not LoRA adapters)."""
    if checkpoint is None:
        return None
    ckpt = Path(checkpoint)
    is_full = (ckpt / "config.json").is_file() and not (ckpt / "adapter_config.json").is_file()
    return ckpt if is_full else None


def load_trainable(
    model_path: Path, cfg: Any, trl_args: Any, checkpoint: str | None = None
) -> tuple[Any, Any]:
    """(model, processor) ready for a trainer: adapters continued or merged, vision tower frozen if asked.

    Weights that are trained stay float32 and bf16/fp16 act as mixed precision (pure bf16 rounds away most
    updates at the paper's lr of 1e-6); with LoRA the frozen base is loaded in the half type to save memory.
    When resuming a full fine-tuning run the weights come from the checkpoint itself: transformers 5 saves
    checkpoints under its legacy parameter names and its resume path does not map them back, so the
    trainer's own reload would silently keep the base weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    from differad_cli.models.load import adapter_base, load_processor

    processor = load_processor(model_path, trust_remote_code=cfg.trust_remote_code)
    half = torch.bfloat16 if trl_args.bf16 else torch.float16 if trl_args.fp16 else torch.float32
    dtype = half if cfg.lora else torch.float32
    base = adapter_base(model_path)
    resumed = full_checkpoint(checkpoint)
    source = resumed if resumed is not None else (base or model_path)
    model = AutoModelForImageTextToText.from_pretrained(
        str(source), dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=True
    )
    if resumed is not None:
        console.debug(f"resuming the weights of {resumed}")
        base = None
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_path), is_trainable=cfg.lora)
        if not cfg.lora:
            model = model.merge_and_unload()
    if cfg.freeze_vision:
        frozen = freeze_vision(model)
        console.debug(f"froze {frozen} vision parameters")
    check_lora_targets(model, cfg)
    return model, processor


VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def suppress_vision_tokens(args: Any, model: Any) -> None:
    """Never sample image/video placeholders or vision brackets in a completion: TRL suppresses only the image
    token, and a sampled <|vision_start|> or <|video_pad|> breaks Qwen-VL's 3D rope index in the loss pass."""
    if getattr(args, "use_vllm", False):  # vLLM's sampling parameters have no suppress_tokens
        console.debug("use_vllm: vision tokens are not suppressed in vLLM generation")
        return
    config = getattr(model, "config", None)
    ids = {getattr(config, k) for k in VISION_TOKEN_KEYS if isinstance(getattr(config, k, None), int)}
    kwargs = dict(args.generation_kwargs or {})
    kwargs["suppress_tokens"] = sorted(set(kwargs.get("suppress_tokens") or []) | ids)
    args.generation_kwargs = kwargs


def left_padding(processor: Any) -> None:
    """GRPO tokenizes prompts of different lengths (paraphrases) with the processor and left-pads the ids: the
    processor must pad on the left too, or its mm_token_type_ids no longer line up with the prompt ids."""
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"


def freeze_vision(model: Any) -> int:
    """Freeze the vision encoder (``visual``) including its merger; returns the count of frozen tensors."""
    n = 0
    for name, p in model.named_parameters():
        if ".visual." in f".{name}":
            p.requires_grad_(False)
            n += 1
    return n


def _zero3(trainer: Any) -> bool:
    plugin = getattr(getattr(trainer.accelerator, "state", None), "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def cache_vision(trainer: Any, cfg: Any) -> None:
    """Memoize a frozen tower's per-image features (train.vision_cache) -- not under ZeRO-3, whose parameter
    prefetching follows the order modules ran in and would see the tower skipped."""
    from differad_cli.train.vision_cache import install_vision_cache

    if not cfg.freeze_vision or _zero3(trainer):
        return
    if install_vision_cache(trainer.model, cfg.vision_cache_gb) is not None:
        console.debug(f"vision features cached (up to {cfg.vision_cache_gb:g} GB of host memory)")


def save_final(trainer: Any, processor: Any, cfg: Any, output_dir: str | os.PathLike[str]) -> None:
    """Model (or adapters) + processor in the output root; --merge-lora adds a merged model in merged/."""
    out = Path(output_dir)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    processor.save_pretrained(str(out))
    if cfg.lora and cfg.merge_lora:
        if _zero3(trainer):
            console.warn(
                "--merge-lora skipped under DeepSpeed ZeRO-3 (rank 0 holds only a shard of the weights); the "
                f"adapters in {out} load directly with `differad predict --model {out}`"
            )
            return
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"), safe_serialization=True)
        processor.save_pretrained(str(out / "merged"))
        console.info(f"merged LoRA model written to {out / 'merged'}")
