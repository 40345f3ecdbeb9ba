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

    out: Path = field(metadata={"help": "Output pairs.jsonl (written atomically; paths relative to it)."})
    data: Path | None = field(
        default=None,
        metadata={"help": "Dataset root (a category folder or a folder of them); or --benchmark."},
    )
    benchmark: Path | None = field(
        default=None,
        metadata={
            "help": "A benchmark recipe (YAML: sources = path + layout, the categories to take and their "
            "subset), e.g. recipes/benchmarks/ad_dualdiff.yaml: one manifest from several datasets."
        },
    )
    data_root: Path | None = field(
        default=None,
        metadata={"help": "Folder the recipe's relative source paths start from (default: the current one)."},
    )
    skip_missing: bool = field(
        default=False,
        metadata={
            "help": "With --benchmark: leave out (with a warning) source folders and categories that are "
            "missing instead of refusing.",
            "flags": ("--skip-missing",),
        },
    )
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
    strict: bool = field(
        default=False,
        metadata={
            "help": "Refuse (exit 2, naming the first) what is otherwise skipped with a count: files named "
            "by a split file but missing, defect images without masks, masks without images, non-image files "
            "in image folders, unreadable images, categories without references.",
            "flags": ("--strict",),
        },
    )
    cache: bool = field(
        default=True,
        metadata={
            "help": "Read and write the embedding cache next to the output.",
            "flags": ("--cache/--no-cache",),
        },
    )
