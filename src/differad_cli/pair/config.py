"""Options of the pairing stage (`differad pair`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LAYOUTS = (
    "auto",
    "mvtec",
    "visa",
    "mvtec_loco",
    "mvtec_ad2",
    "realiad",
    "ksdd2",
    "deeppcb",
    "folder",
    "triplets",
)
MULTI = ("largest", "union", "drop")


SPLITS = ("test", "train")


@dataclass
class PairConfig:
    """Settings of one pairing run; every field is also a `differad pair` option."""

    data: Path = field(metadata={"help": "Dataset root (a category folder or a folder of them)."})
    out: Path = field(metadata={"help": "Output pairs.jsonl (written atomically; paths relative to it)."})
    layout: str = field(
        default="mvtec", metadata={"help": f"{' | '.join(LAYOUTS)} (see above; auto says which it found)."}
    )
    split: str = field(default="test", metadata={"help": "test: test images; train: normal pairs."})
    k: int = field(default=8, metadata={"help": "References kept per target (the paper: 8)."})
    embedder: str = field(
        default="pixel", metadata={"help": "pixel (weight-free, default) | clip (needs --clip-model)."}
    )
    clip_model: Path | None = field(
        default=None, metadata={"help": "Local CLIP folder (CLIPModel); nothing is downloaded."}
    )
    multi: str = field(
        default="largest",
        metadata={
            "help": "Targets with several defect regions: largest (box of the largest region), union "
            "(one box around all) or drop (leave the target out). n_components keeps the region count."
        },
    )
    cache: bool = field(
        default=True,
        metadata={
            "help": "Read and write the embedding cache next to the output.",
            "flags": ("--cache/--no-cache",),
        },
    )
