"""Options of the prediction stage, shared by `differad predict` and `differad eval --backend`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from differad_cli.core.errors import BadInput

BACKENDS = ("diff", "hf", "openai")


@dataclass
class PredictOptions:
    backend: str | None = field(
        default=None,
        metadata={
            "help": "diff | hf | openai; default: openai with an endpoint, hf with a model, else diff."
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "hf: checkpoint/adapter folder; openai: model name."}
    )
    template: str = field(default="differad", metadata={"help": "Prompt template (hf, openai)."})
    batch_size: int = field(default=4, metadata={"help": "Pairs per generate() call (hf)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer in tokens (hf, openai)."})
    device: str | None = field(default=None, metadata={"help": "hf: cuda/cpu; default: GPU when present."})
    dtype: str | None = field(default=None, metadata={"help": "hf: auto | bf16 | fp16 | fp32."})
    trust_remote_code: bool = field(default=False, metadata={"help": "hf: run the checkpoint's own code."})
    endpoint: str | None = field(default=None, metadata={"help": "openai: base URL of the server."})
    api_key: str | None = field(default=None, metadata={"help": "openai: key; default env OPENAI_API_KEY."})
    family: str = field(
        default="qwen3_vl", metadata={"help": "openai: coordinate family of the served model."}
    )
    timeout: float = field(default=60.0, metadata={"help": "openai: seconds per request."})
    retries: int = field(default=3, metadata={"help": "openai: retries of a transient failure."})
    concurrency: int = field(default=4, metadata={"help": "openai: requests in flight."})
    min_pixels: int = field(
        default=56 * 56, metadata={"help": "openai + qwen2_5_vl: the server processor's min_pixels."}
    )
    max_pixels: int = field(
        default=28 * 28 * 16384, metadata={"help": "openai + qwen2_5_vl: the server processor's max_pixels."}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "diff: seed difference, 0-255 units (None: DiffConfig's 20)."}
    )
    min_area: float | None = field(
        default=None, metadata={"help": "diff: smallest anomaly, image fraction (None: DiffConfig's)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for generation (hf) and requests (openai)."})


def resolve_backend(opts: PredictOptions) -> str:
    name = opts.backend or ("openai" if opts.endpoint else "hf" if opts.model else "diff")
    if name not in BACKENDS:
        raise BadInput(f"unknown backend '{name}' (expected one of: {', '.join(BACKENDS)})")
    if name == "hf" and not opts.model:
        raise BadInput("--backend hf needs --model PATH (a local checkpoint or LoRA adapter folder)")
    if name == "hf" and not Path(opts.model).is_dir():  # before the slow torch/transformers import
        raise BadInput(f"model folder not found: {opts.model}")
    if name == "openai" and not opts.endpoint:
        raise BadInput("--backend openai needs --endpoint URL (and --model NAME)")
    return name
