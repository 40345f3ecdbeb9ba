"""Options of the evaluation stage (`differad eval`); the backend options come from ``PredictOptions``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from differad_cli.core.errors import BadInput


@dataclass
class EvalConfig:
    """What to score and how; exactly one source of boxes: ``pred``, ``maps``, or a backend."""

    pairs: Path = field(metadata={"help": "Pair manifest (JSONL) with the ground truth."})
    out: Path = field(metadata={"help": "Output folder for metrics.json, report.md, pictures."})
    pred: Path | None = field(
        default=None, metadata={"help": "Prediction records (JSONL) from `differad predict`."}
    )
    maps: Path | None = field(
        default=None, metadata={"help": "Folder of anomaly maps named <id>.npy / <id>.png."}
    )
    iou_threshold: float = field(default=0.3, metadata={"help": "IoU threshold of Acc@t and F1@t."})
    overlays: int = field(
        default=0, metadata={"help": "Write overlays of the N worst cases and an IoU histogram."}
    )
    cal_fraction: float = field(
        default=0.3, metadata={"help": "With --maps: share of pairs used to calibrate."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the calibration split (--maps) and of generation (backends)."}
    )

    def validate(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise BadInput(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}")
        if self.overlays < 0:
            raise BadInput(f"--overlays must be >= 0, got {self.overlays}")
        if self.seed < 0:
            raise BadInput(f"--seed must be >= 0, got {self.seed}")
