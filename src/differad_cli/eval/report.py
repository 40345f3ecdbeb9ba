"""`differad eval`: score predictions (or anomaly maps) against pair records and write the report.

Two sources of boxes share one scoring path, :func:`evaluate`: prediction records (from ``predict`` or any
model run through the same parser) and, for non-LLM baselines, anomaly maps turned into boxes by the paper's
protocol (:func:`evaluate_maps`: calibrate a threshold on a seeded 30% split, box the largest connected
component, score the other 70%).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from differad_cli.core import console
from differad_cli.core.errors import ImageError
from differad_cli.core.io import atomic_write
from differad_cli.core.records import Pair
from differad_cli.core.text import md, plain
from differad_cli.eval.metrics import SampleScores, metric_keys

# ---------------------------------------------------------------------------------------------- checks


# ---------------------------------------------------------------------------------------------- report


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * v:.2f}"


def _columns(iou_threshold: float) -> list[tuple[str, str]]:
    keys = metric_keys(iou_threshold)
    t = f"{iou_threshold:g}"
    heads = {
        f"acc_{t}": f"Acc@{t}", f"f1_{t}": f"F1@{t}", "miou": "mIoU", "miou_ano": "mIoU_ano",
        "miou_nor": "mIoU_nor", "image_precision": "img_P", "image_recall": "img_R", "image_f1": "img_F1",
    }  # fmt: skip
    return [(k, heads.get(k, k)) for k in keys]


def _rows(metrics: dict) -> list[tuple[str, list[tuple[str, dict]]]]:
    out = [("Overall", [("all", metrics["overall"])])]
    if metrics.get("per_category"):
        out.append(("Per category", sorted(metrics["per_category"].items())))
    if metrics.get("per_subset"):
        out.append(("Per subset", sorted(metrics["per_subset"].items())))
    if metrics.get("per_subset_category_mean"):
        means = metrics["per_subset_category_mean"]
        rows = [(k, v) for k, v in sorted(means.items()) if k != "all"] + [("all", means["all"])]
        out.append(("Per subset, mean over its categories (the paper's Table V '(Avg.)' rows)", rows))
    if metrics.get("per_defect_type"):
        out.append(("Per defect type (anomalous samples)", sorted(metrics["per_defect_type"].items())))
    return out


def _cell(key: str, block: dict) -> str:
    v = block.get(key)
    return str(v) if key in ("n", "n_ano", "n_nor", "invalid", "missing") else _pct(v)


def format_tables(metrics: dict) -> str:
    """Plain-text tables for the terminal (ratios as percentages)."""
    cols = _columns(metrics.get("iou_threshold", 0.3))
    lines: list[str] = []
    for title, rows in _rows(metrics):
        name_w = max(8, *(len(name) for name, _ in rows))
        widths = [max(len(head), 7) for _, head in cols]
        lines.append(f"{title} (ratios in %)")
        lines.append(
            " ".join([f"{'name':<{name_w}}", *(f"{h:>{w}}" for (_, h), w in zip(cols, widths, strict=True))])
        )
        for name, block in rows:
            cells = (f"{_cell(k, block):>{w}}" for (k, _), w in zip(cols, widths, strict=True))
            lines.append(" ".join([f"{plain(name):<{name_w}}", *cells]))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_markdown(metrics: dict, *, title: str = "differad evaluation", notes: Sequence[str] = ()) -> str:
    cols = _columns(metrics.get("iou_threshold", 0.3))
    lines = [f"# {title}", ""]
    lines.extend(f"- {n}" for n in notes)
    lines.append("")
    for heading, rows in _rows(metrics):
        lines += [f"## {heading}", "", "| name | " + " | ".join(h for _, h in cols) + " |"]
        lines.append("|---|" + "---:|" * len(cols))
        for name, block in rows:
            lines.append(f"| {md(name)} | " + " | ".join(_cell(k, block) for k, _ in cols) + " |")
        lines.append("")
    lines.append("Ratios in %. Definitions: the paper, section IV-A; invalid includes missing predictions.")
    return "\n".join(lines) + "\n"


def _safe_name(s: str) -> str:
    return re.sub(r"[^\w.-]", "_", s)[:80]


def write_text(path: Path, text: str) -> None:
    atomic_write(path, [text.rstrip("\n")])


def outcome(anomalous: bool, missing: bool, valid: bool, iou: float, pred: object) -> str:
    """How one sample went, in words (the scoring rules of docs/formats.md)."""
    if missing:
        return "no prediction"
    if not valid:
        return "invalid answer"
    flagged = pred is not None and any(pred)
    if not anomalous:
        return "normal, false alarm" if flagged else "normal, correct"
    return f"anomalous, IoU {iou:.2f}" if flagged else "anomalous, missed"


def worst_first(s: SampleScores) -> np.ndarray:
    """Sample indices from the lowest score up (ties in input order): the cases a reviewer looks at first."""
    return np.lexsort((np.arange(len(s.score)), s.score))


def write_pictures(pairs: list[Pair], s: SampleScores, out_dir: Path, n_worst: int) -> list[str]:
    """Overlays of the ``n_worst`` lowest-scoring samples and the IoU histogram; returns the files written."""
    from differad_cli.core.images import load_rgb, save_png
    from differad_cli.core.overlays import draw_overlay, iou_histogram

    written: list[str] = []
    hist = iou_histogram(s.iou[s.label], title="IoU of anomalous samples")
    save_png(out_dir / "iou_hist.png", hist)
    written.append("iou_hist.png")
    order = worst_first(s)[:n_worst]
    folder = out_dir / "overlays"
    for stale in folder.glob("[0-9][0-9][0-9]_*.png") if folder.is_dir() else ():
        stale.unlink()  # an earlier eval's pictures here (ours by name): report.md lists only the new
    if len(order):
        folder.mkdir(parents=True, exist_ok=True)
    for rank, i in enumerate(order.tolist(), start=1):
        pair = pairs[i]
        pred = None if not s.valid[i] else tuple(int(v) for v in s.pred_box[i])
        state = outcome(bool(s.label[i]), bool(s.missing[i]), bool(s.valid[i]), float(s.iou[i]), pred)
        try:
            ref, tgt = load_rgb(pair.ref), load_rgb(pair.tgt)
        except ImageError as e:
            console.warn(f"overlay for {pair.id} skipped: {e}")
            continue
        caption = f"{pair.id} [{pair.category}]: {state}"
        name = f"overlays/{rank:03d}_{_safe_name(pair.id)}.png"
        save_png(out_dir / name, draw_overlay(ref, tgt, pair.box, pred, caption=caption))
        written.append(name)
    return written


# ---------------------------------------------------------------------------------------------- anomaly maps
