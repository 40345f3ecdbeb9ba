"""Settings and summary of `differad synth`, kept free of heavy imports so the CLI can read the help texts
(and `differad --help` stays fast) without loading NumPy and OpenCV."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core.errors import BadInput

MIN_SIZE, MAX_SIZE = 32, 4096


def _help(text: str, *flags: str) -> dict[str, Any]:
    """Field metadata: the help text, and the flags when ``--field-name`` is not all of them."""
    return {"help": text, "flags": flags or None}


@dataclass
class SynthConfig:
    """Settings of one synthesis run; every field is also a CLI option (``--p-normal`` for p_normal)."""

    out: Path = field(
        metadata=_help("Output folder: pairs.jsonl plus ref/, tgt/ and mask/ PNGs.", "--out", "-o")
    )
    n: int | None = field(
        default=None,
        metadata=_help("Number of pairs (default: one per normal image, or 1000 with built-in surfaces)."),
    )
    size: int = field(
        default=256,
        metadata=_help("Image size: side of built-in surfaces; the longer side of --normals images."),
    )
    seed: int = field(default=0, metadata=_help("Seed; each pair's randomness derives from (seed, index)."))
    workers: int = field(
        default=0,
        metadata=_help("Worker processes (0 = automatic). Output does not depend on it.", "--workers", "-j"),
    )
    normals: Path | None = field(
        default=None, metadata=_help("Folder of defect-free images (recursive, any common format).")
    )
    surfaces: str = field(
        default="textured",
        metadata=_help(
            "Built-in surfaces: 'textured' (metal, fabric, PCB, tiles, a molded part) or 'blank' (black "
            "with white defects: visible without the reference, a learner's first curriculum stage)."
        ),
    )
    textures: Path | None = field(
        default=None,
        metadata=_help("Folder of texture images to paste (e.g. DTD); default: procedural ones."),
    )
    p_normal: float = field(
        default=0.25, metadata=_help("Share of normal pairs (target = reference, zero box).")
    )
    fg: str = field(
        default="auto",
        metadata=_help("Foreground mask: 'auto' (Otsu, polarity from the border) or 'none' (full frame)."),
    )
    resume: bool = field(
        default=False, metadata=_help("Continue an interrupted run in --out instead of refusing to touch it.")
    )
    force: bool = field(
        default=False,
        metadata=_help(
            "Write into an --out folder holding ref/, tgt/, mask/ or synth.json but no pairs.jsonl."
        ),
    )
    png_level: int = field(
        default=1, metadata=_help("PNG zlib level 0-9 (1: fast with most of the size gain; see bench_synth).")
    )
    beta_max: float = field(
        default=0.8,
        metadata=_help("Blend opacity: beta ~ U(0, beta_max); beta = share of the reference kept."),
    )
    brightness: float = field(
        default=0.1, metadata=_help("Brightness jitter of the target: gain ~ U(1 - b, 1 + b).")
    )
    rotation: float = field(
        default=3.0, metadata=_help("Small-angle rotation of target and mask: angle ~ U(-r, r) degrees.")
    )
    jitter_normals: bool = field(
        default=True,
        metadata=_help(
            "Apply the brightness/rotation jitter to normal targets too.",
            "--jitter-normals/--no-jitter-normals",
        ),
    )
    threshold: float = field(
        default=0.5, metadata=_help("Perlin noise threshold (DRAEM: 0.5; lower = larger defects).")
    )
    min_area: int = field(default=16, metadata=_help("Smallest defect kept, in pixels of the final mask."))
    max_retries: int = field(
        default=20, metadata=_help("Redraws of an empty/too-small Perlin region before falling back.")
    )
    resize: str = field(
        default="keep", metadata=_help("With --normals: 'keep' aspect (longer side = size) or 'square'.")
    )
    category: str | None = field(
        default=None, metadata=_help("Category of every pair (default: surface family or source subfolder).")
    )
    subset: str = field(default="synthetic", metadata=_help("Subset name written into every record."))

    def validate(self) -> None:
        """Usage errors, raised before anything is read or written."""
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise BadInput(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {self.size}")
        if self.n is not None and self.n < 1:
            raise BadInput(f"--n must be at least 1, got {self.n}")
        checks = [
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.workers >= 0, f"--workers must be >= 0 (0 = automatic), got {self.workers}"),
            (0.0 <= self.p_normal <= 1.0, f"--p-normal must be in [0, 1], got {self.p_normal}"),
            (
                self.surfaces in ("textured", "blank"),
                f"--surfaces must be 'textured' or 'blank', got {self.surfaces!r}",
            ),
            (
                self.surfaces == "textured" or (self.normals is None and self.textures is None),
                "--surfaces blank draws its own surfaces and defects: it cannot be combined with --normals "
                "or --textures",
            ),
            (self.fg in ("auto", "none"), f"--fg must be 'auto' or 'none', got {self.fg!r}"),
            (0 <= self.png_level <= 9, f"--png-level must be 0-9, got {self.png_level}"),
            (0.0 <= self.beta_max <= 1.0, f"--beta-max must be in [0, 1], got {self.beta_max}"),
            (0.0 <= self.brightness < 1.0, f"--brightness must be in [0, 1), got {self.brightness}"),
            (0.0 <= self.rotation <= 45.0, f"--rotation must be in [0, 45] degrees, got {self.rotation}"),
            (-1.0 < self.threshold < 1.0, f"--threshold must be in (-1, 1), got {self.threshold}"),
            (self.min_area >= 1, f"--min-area must be >= 1, got {self.min_area}"),
            (self.max_retries >= 1, f"--max-retries must be >= 1, got {self.max_retries}"),
            (self.resize in ("keep", "square"), f"--resize must be 'keep' or 'square', got {self.resize!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BadInput(msg)


@dataclass
class SynthSummary:
    """What a run produced (the manifest as a whole) and how fast this run went."""

    manifest: Path
    written: int
    generated: int
    resumed: int
    anomalous: int
    anomalous_share: float
    mean_box_area: float
    median_box_area: float
    skipped: list[str]
    fallbacks: int
    elapsed: float
    pairs_per_s: float

    def lines(self) -> list[str]:
        return [
            f"wrote {self.manifest} ({self.written} pairs: {self.generated} new, {self.resumed} resumed)",
            f"anomalous share {self.anomalous_share:.1%} ({self.anomalous} pairs); box area mean "
            f"{self.mean_box_area:.0f} px, median {self.median_box_area:.0f} px",
            f"skipped inputs {len(self.skipped)}; anomaly fallbacks to normal {self.fallbacks}",
            f"elapsed {self.elapsed:.2f} s, {self.pairs_per_s:.1f} pairs/s",
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["manifest"] = str(self.manifest)
        return d


def easy_settings(size: int) -> dict[str, float | int]:
    """The easy generator the learner is trained and scored on (demo, bench_learning, recipes/learner_cpu):
    strong, mid-sized defects (threshold 0.3, the smallest kept ~3% of the image, about two image tokens of
    the learner), no rotation or brightness jitter. SynthConfig keyword arguments."""
    return {
        "threshold": 0.3,
        "min_area": max(16, round(0.03 * size * size)),
        "beta_max": 0.3,
        "rotation": 0.0,
        "brightness": 0.0,
    }
