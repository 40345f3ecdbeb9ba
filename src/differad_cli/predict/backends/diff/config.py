"""The diff backend's options and its answer for one pair."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from differad_cli.core.boxes import IntBox


@dataclass
class DiffConfig:
    threshold: float = field(
        default=16.0,
        metadata={
            "help": "Seed difference, 0-255 intensity units: lower finds fainter defects (window-mean seeds "
            "sit at area_ratio times it)."
        },
    )
    low_ratio: float = field(default=0.5, metadata={"help": "Regions grow over pixels above threshold*this."})
    area_window: int = field(
        default=9,
        metadata={
            "help": "Also seed where the mean difference over this window (working pixels) exceeds "
            "threshold*area-ratio: faint defects that are large (0: off)."
        },
    )
    area_ratio: float = field(
        default=0.25, metadata={"help": "Window-mean seed level, as a fraction of the threshold."}
    )
    min_area: float = field(
        default=0.0005, metadata={"help": "Smallest anomaly, as a fraction of the image area (else normal)."}
    )
    work_size: int = field(default=256, metadata={"help": "Longest side of the working resolution (pixels)."})
    blur: float = field(default=1.0, metadata={"help": "Gaussian sigma (working pixels) against noise."})
    align: bool = field(default=True, metadata={"help": "Align the reference (shift + rotation) first."})
    max_rotation: float = field(default=15.0, metadata={"help": "Reject alignments rotating more (degrees)."})
    max_shift: float = field(
        default=0.25, metadata={"help": "Reject shifts larger than this image fraction."}
    )
    homography: bool = field(
        default=True,
        metadata={"help": "Fit a homography (ORB + RANSAC, then ECC) instead of shift + rotation alone."},
    )
    illumination: str = field(
        default="plane",
        metadata={
            "help": "Lighting: global (gain/offset) | plane (planar gain field) | field (quadratic gain "
            "field) | local (mean/contrast)."
        },
    )
    n_refs: int = field(
        default=1,
        metadata={"help": "References per target (the record's ref, then its refs): a variation model."},
    )
    auto_threshold: bool = field(
        default=False,
        metadata={"help": "Pick each pair's seed threshold from its own difference statistics."},
    )
    noise_k: float = field(
        default=3.0,
        metadata={"help": "Raise the threshold to this many times the pair's estimated noise (0: off)."},
    )


@dataclass
class DiffResult:
    box: IntBox  # target pixels, x2/y2 exclusive; ZERO_BOX when normal
    anomalous: bool
    score: float  # peak tolerant difference inside the region (0-1), 0 when normal
    area: float  # region area as a fraction of the image
    shift: tuple[float, float]  # how far the target's content moved from the reference's (image centre, px)
    rotation: float  # its rotation, degrees, counter-clockwise positive (cv2.getRotationMatrix2D's sign)
    diff_map: np.ndarray | None = None  # working-resolution difference map (0-255), when asked for
    note: dict = field(default_factory=dict)  # alignment method, references used, threshold applied

    def explanation(self) -> str:
        align = f"target moved ({self.shift[0]:+.1f}, {self.shift[1]:+.1f}) px"
        align += f" and rotated {self.rotation:+.2f} deg from the reference"
        if self.note:
            align += f" (aligned by {self.note['method']}"
            if self.note.get("refs", 1) > 1:
                align += f", {self.note['refs']} references"
            align += f"; threshold {self.note['threshold']:.1f})"
        if not self.anomalous:
            return f"no region differs from the reference beyond the threshold; {align}"
        return (
            f"a region covering {100 * self.area:.2f}% of the image differs from the reference "
            f"(peak difference {self.score:.2f}); {align}"
        )
