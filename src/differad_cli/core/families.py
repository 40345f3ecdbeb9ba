"""The Qwen-VL families differad speaks to (a dependency-free module: the CLI reads it for --help)."""

FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
