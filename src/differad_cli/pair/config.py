"""Options of the pairing stage (`differad pair`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LAYOUTS = ("mvtec", "folder", "triplets")


SPLITS = ("test", "train")


@dataclass
class PairConfig:
    data: Path = field(metadata={"help": "Dataset root (one category folder or a folder of categories)."})
    out: Path = field(metadata={"help": "Output pairs.jsonl; paths inside are written relative to it."})
    layout: str = field(default="mvtec", metadata={"help": "mvtec | folder | triplets."})
    split: str = field(
        default="test", metadata={"help": "test: targets are test images; train: normal images."}
    )
    k: int = field(default=8, metadata={"help": "References kept per target (the paper uses top-8)."})
    embedder: str = field(
        default="pixel", metadata={"help": "pixel (weight-free) | clip (needs clip_model)."}
    )
    clip_model: Path | None = field(default=None, metadata={"help": "Local CLIP folder for embedder=clip."})
    cache: bool = field(default=True, metadata={"help": "Cache embeddings next to the output."})
