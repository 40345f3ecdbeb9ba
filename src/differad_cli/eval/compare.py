"""`differad compare`: the paper-style comparison of eval runs (its Tables III-IX are all comparisons).

One row per run, the metrics as columns, the best value per column marked; with ``by`` one block of columns
per category or subset (Table V: mIoU, Acc@0.3, F1@0.3 per cell). Runs are only compared on the same pairs:
each ``metrics.json`` carries a fingerprint of the pairs it scored, and runs that differ are refused unless
asked.
Names come from the run folders (or ``names``) and are escaped for the format they are printed in.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.text import md, plain

LOWER_IS_BETTER = {"invalid", "missing"}
COUNTS = {"n", "n_ano", "n_nor", "invalid", "missing"}
HEADS = {"miou": "mIoU", "miou_ano": "mIoU_ano", "miou_nor": "mIoU_nor", "image_precision": "img_P",
         "image_recall": "img_R", "image_f1": "img_F1"}  # fmt: skip


@dataclass
class CompareConfig:
    """Options of `differad compare` (the runs are its arguments)."""

    by: str | None = field(
        default=None, metadata={"help": "category | subset: one block of columns per group (Table V)."}
    )
    metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": "Comma-separated metric keys (default: acc, f1, miou, miou_ano, miou_nor, image_f1; "
            "with --by: miou, acc, f1)."
        },
    )
    names: list[str] | None = field(
        default=None,
        metadata={"help": "Comma-separated run names (default: the folder names).", "flags": ("--name",)},
    )
    md: bool = field(default=False, metadata={"help": "Print Markdown (best per column in bold)."})
    csv: bool = field(default=False, metadata={"help": "Print CSV."})
    json: bool = field(default=False, metadata={"help": "Print JSON (one object per run)."})
    allow_different_pairs: bool = field(
        default=False, metadata={"help": "Compare runs scored on different pairs (flagged in the output)."}
    )


@dataclass
class Run:
    name: str
    path: Path
    metrics: dict[str, Any]


def load_runs(paths: list[Path], names: list[str] | None) -> list[Run]:
    """Each path: an eval folder or a metrics.json file."""
    if not paths:
        raise BadInput("give at least one eval folder (or metrics.json) to compare")
    if names is not None and len(names) != len(paths):
        raise BadInput(f"--name gives {len(names)} name(s) for {len(paths)} run(s)")
    runs = []
    for i, p in enumerate(paths):
        path = Path(p)
        file = path / "metrics.json" if path.is_dir() else path
        if not file.is_file():
            raise BadInput(f"{path}: no metrics.json (give an eval folder written by `differad eval`)")
        try:
            metrics = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"{file}: not a metrics.json ({e})") from None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("overall"), dict):
            raise BadInput(f"{file}: not a metrics.json written by `differad eval` (no 'overall' block)")
        name = names[i] if names else (file.parent.name if file.name == "metrics.json" else file.stem)
        runs.append(Run(name, file, metrics))
    names_seen = [r.name for r in runs]
    if len(set(names_seen)) != len(names_seen):
        raise BadInput(
            f"two runs are named alike ({', '.join(map(plain, names_seen))}); name them with --name a,b"
        )
    return runs


def check_same_pairs(runs: list[Run], allow: bool) -> list[str]:
    """Refuse (or, when allowed, flag) runs scored on different pairs or at different IoU thresholds."""
    notes = []
    thresholds = {r.metrics.get("iou_threshold", 0.3) for r in runs}
    if len(thresholds) > 1:
        raise BadInput(f"runs were scored at different IoU thresholds: {sorted(thresholds)}")
    prints = {r.name: r.metrics.get("pairs_fingerprint") for r in runs}
    if any(v is None for v in prints.values()):
        old = [n for n, v in prints.items() if v is None]
        console.warn(
            f"no pair fingerprint in {', '.join(old)} (an older eval): the pair sets are not checked"
        )
    known = {v for v in prints.values() if v is not None}
    if len(known) > 1:
        detail = ", ".join(f"{plain(r.name)} ({r.metrics['overall'].get('n')} pairs)" for r in runs)
        if not allow:
            raise BadInput(
                f"runs were scored on different pairs: {detail}; a comparison is only meaningful on the same "
                "pairs (pass --allow-different-pairs to print it anyway, flagged)"
            )
        notes.append(f"WARNING: different pair sets: {detail}")
    return notes


@dataclass
class Table:
    """Rows of cells with a header; ``best[c]`` = the row indices holding column c's best value."""

    header: list[str]
    rows: list[list[Any]]
    best: dict[int, set[int]]
    notes: list[str]


def _threshold(runs: list[Run]) -> str:
    return f"{runs[0].metrics.get('iou_threshold', 0.3):g}"


def build_table(runs: list[Run], cfg: CompareConfig) -> Table:
    t = _threshold(runs)
    heads = {**HEADS, f"acc_{t}": f"Acc@{t}", f"f1_{t}": f"F1@{t}"}
    if cfg.by is None:
        keys = cfg.metrics or [f"acc_{t}", f"f1_{t}", "miou", "miou_ano", "miou_nor", "image_f1"]
        groups: list[tuple[str | None, str]] = [(None, k) for k in keys]
    else:
        if cfg.by not in ("category", "subset"):
            raise BadInput(f"--by must be category or subset, got {cfg.by!r}")
        block = f"per_{cfg.by}"
        names = sorted({g for r in runs for g in (r.metrics.get(block) or {})})
        if not names:
            raise BadInput(f"no {cfg.by} blocks in these runs' metrics.json")
        keys = cfg.metrics or ["miou", f"acc_{t}", f"f1_{t}"]
        groups = [(g, k) for g in names for k in keys]
    known = set(runs[0].metrics["overall"])
    unknown = sorted({k for _, k in groups} - known)
    if unknown:
        raise BadInput(f"unknown metric(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    header = ["run"] + [heads.get(k, k) if g is None else f"{g} {heads.get(k, k)}" for g, k in groups]
    rows: list[list[Any]] = []
    for r in runs:
        row: list[Any] = [r.name]
        for g, k in groups:
            source = r.metrics["overall"] if g is None else (r.metrics.get(f"per_{cfg.by}") or {}).get(g, {})
            row.append(source.get(k))
        rows.append(row)
    best: dict[int, set[int]] = {}
    for c, (_, k) in enumerate(groups, start=1):
        values = [(row[c], i) for i, row in enumerate(rows) if isinstance(row[c], int | float)]
        if len(values) > 1 and k not in ("n", "n_ano", "n_nor"):
            target = (min if k in LOWER_IS_BETTER else max)(v for v, _ in values)
            best[c] = {i for v, i in values if v == target}
    return Table(header, rows, best, [])


def _fmt(value: Any, key_is_count: bool) -> str:
    if value is None:
        return "-"
    if key_is_count or isinstance(value, int):
        return str(value)
    return f"{100.0 * value:.2f}"


def render(table: Table, cfg: CompareConfig) -> str:
    cells = [[_fmt(v, False) if c else str(v) for c, v in enumerate(row)] for row in table.rows]
    if cfg.json:
        objs = [dict(zip(table.header, row, strict=True)) for row in table.rows]
        return json.dumps({"runs": objs, "notes": table.notes}, indent=2) + "\n"
    if cfg.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([plain(h) for h in table.header])
        w.writerows([[plain(str(row[0])), *row[1:]] for row in table.rows])
        return buf.getvalue()
    if cfg.md:
        lines = [
            "| " + " | ".join(md(h) for h in table.header) + " |",
            "|---|" + "---:|" * (len(table.header) - 1),
        ]
        for i, row in enumerate(cells):
            shown = [md(row[0])] + [
                f"**{v}**" if i in table.best.get(c, ()) else v for c, v in enumerate(row) if c
            ]
            lines.append("| " + " | ".join(shown) + " |")
        lines += ["", "Ratios in %; best per column in bold."] + [md(n) for n in table.notes]
        return "\n".join(lines) + "\n"
    shown = [
        [plain(row[0])] + [v + ("*" if i in table.best.get(c, ()) else " ") for c, v in enumerate(row) if c]
        for i, row in enumerate(cells)
    ]
    header = [plain(h) for h in table.header]
    widths = [max(len(r[c]) for r in [header, *shown]) for c in range(len(header))]
    out = ["  ".join(h.ljust(widths[0]) if c == 0 else h.rjust(widths[c]) for c, h in enumerate(header))]
    for r in shown:
        out.append("  ".join(v.ljust(widths[0]) if c == 0 else v.rjust(widths[c]) for c, v in enumerate(r)))
    out += ["", "ratios in %; * = best per column", *map(plain, table.notes)]
    return "\n".join(out) + "\n"


def compare(paths: list[Path], cfg: CompareConfig) -> str:
    """The comparison of the eval runs at ``paths``, rendered as ``cfg`` asks."""
    if sum((cfg.md, cfg.csv, cfg.json)) > 1:
        raise BadInput("choose one of --md, --csv, --json")
    runs = load_runs(paths, cfg.names)
    notes = check_same_pairs(runs, cfg.allow_different_pairs)
    table = build_table(runs, cfg)
    table.notes = notes
    return render(table, cfg)
