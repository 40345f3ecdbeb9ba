"""Backend options shared by `predict` and `eval --backend`, so both spell and default them alike."""

from __future__ import annotations

from typing import Annotated, Any

import typer

Backend = Annotated[
    str | None,
    typer.Option(
        "--backend", help="diff | hf | openai (default: openai with --endpoint, hf with --model, else diff)."
    ),
]
Model = Annotated[
    str | None, typer.Option("--model", help="hf: checkpoint/adapter folder; openai: served model name.")
]
Template = Annotated[str, typer.Option("--template", help="Prompt: differad | baseline | staged.")]
Threshold = Annotated[
    float | None, typer.Option("--threshold", help="diff: seed difference, 0-255 units [default: 20].")
]
MinArea = Annotated[
    float | None, typer.Option("--min-area", help="diff: smallest anomaly, image fraction [default: 0.0005].")
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="hf: pairs per generate call.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", help="hf/openai: answer length.")]
Device = Annotated[str | None, typer.Option("--device", help="hf: cuda | cpu (default: GPU if any).")]
DType = Annotated[str | None, typer.Option("--dtype", help="hf: auto | bf16 | fp16 | fp32.")]
TrustRemoteCode = Annotated[
    bool, typer.Option("--trust-remote-code", help="hf: allow the checkpoint's own Python code.")
]
Endpoint = Annotated[str | None, typer.Option("--endpoint", help="openai: server base URL.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="openai: key (or OPENAI_API_KEY).")]
Family = Annotated[
    str, typer.Option("--family", help="openai: qwen3_vl | qwen2_vl | qwen2_5_vl (coordinates).")
]
Timeout = Annotated[float, typer.Option("--timeout", help="openai: seconds per request.")]
Retries = Annotated[int, typer.Option("--retries", help="openai: retries of transient failures.")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="openai: requests in flight.")]
# Qwen2.5-VL's published processor limits (the same values as openai_backend.QWEN25_*; kept here as
# literals so the CLI does not import numpy just to show --help).
DEFAULT_MIN_PIXELS = 3136
DEFAULT_MAX_PIXELS = 12845056

MinPixels = Annotated[
    int,
    typer.Option(
        "--min-pixels",
        help="openai + qwen2_5_vl: the server processor's pixel limits (lower; Qwen2.5-VL default 3136).",
    ),
]
MaxPixels = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        help="openai + qwen2_5_vl: the server processor's pixel limits (upper; Qwen2.5-VL default 12845056).",
    ),
]


def predict_options(**values: Any) -> Any:
    """A ``PredictOptions`` from the shared option values (imported late: predict pulls in cv2/numpy)."""
    from differad_cli.predict.run import PredictOptions

    return PredictOptions(**values)
