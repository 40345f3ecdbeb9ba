"""The anomaly-map protocol for non-LLM baselines (paper IV-A): calibrate the F1-best threshold on a seeded
30% split, binarize, box the largest connected component, score the other 70%."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX, IntBox, iou_many
from differad_cli.core.errors import BadInput
from differad_cli.core.records import Pair, Prediction
from differad_cli.eval.score import evaluate, listed

MAP_SUFFIXES = (".npy", ".png")


def find_maps(pairs: list[Pair], maps_dir: str | Path) -> dict[str, Path]:
    """Each target's map (``<id>.npy`` or ``<id>.png`` in ``maps_dir``); all missing ones are reported."""
    root = Path(maps_dir)
    if not root.is_dir():
        raise BadInput(f"maps folder not found: {root}")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for pair in pairs:
        for suffix in MAP_SUFFIXES:
            p = root / f"{pair.id}{suffix}"
            if p.is_file():
                found[pair.id] = p
                break
        else:
            missing.append(pair.id)
    if missing:
        raise BadInput(
            f"{len(missing)} anomaly map(s) missing in {root} (expected <id>.npy or <id>.png): "
            + listed(missing)
        )
    return found


def load_map(path: str | Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """A 2-D float32 anomaly map (.npy as is; 8/16-bit PNG scaled to [0, 1]), resized to (width, height)."""
    import cv2

    p = Path(path)
    if p.suffix.lower() == ".npy":
        arr = _load_npy(p)
    else:
        arr = _load_png_map(p)
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "biuf":
        raise BadInput(f"anomaly map {p} must be a 2-D numeric array, got shape {arr.shape} ({arr.dtype})")
    a = arr.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():  # +inf is the most anomalous value a tool can write, NaN/-inf the least
        lo = float(a[finite].min()) if finite.any() else 0.0
        hi = float(a[finite].max()) if finite.any() else 0.0
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo).astype(np.float32)
    if width is not None and height is not None and a.shape != (height, width):
        a = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    return a


def _load_npy(p: Path) -> np.ndarray:
    """A plain numeric .npy, read without ever unpickling; the header is checked (mapped, not read) before
    any data is loaded, so a junk or pickled file, or one claiming billions of values, is one line."""
    from differad_cli.core.images import DEFAULT_MAX_PIXELS

    try:
        with p.open("rb"):
            pass
    except OSError as e:
        raise BadInput(f"cannot read anomaly map {p}: {e.strerror or e}") from None
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise ValueError("not a plain numeric array")
        if arr.size > DEFAULT_MAX_PIXELS:
            raise BadInput(f"anomaly map {p} holds {arr.size} values, more than {DEFAULT_MAX_PIXELS}")
        return np.array(arr)
    except (OSError, ValueError, EOFError, TypeError, OverflowError):
        raise BadInput(f"not a numeric .npy anomaly map: {p}") from None


def _load_png_map(p: Path) -> np.ndarray:
    """An 8/16-bit PNG (or other image) map; quantized values are scaled to [0, 1]."""
    import cv2

    try:
        data = np.fromfile(p, dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if arr is None:
            raise ValueError("not a readable image")
    except (OSError, ValueError, EOFError) as e:
        raise BadInput(f"cannot read anomaly map {p}: {e or type(e).__name__}") from None
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2)
    if arr.dtype in (np.uint8, np.uint16):  # a quantized [0, 1] map: comparable with .npy maps
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return arr


def map_box(amap: np.ndarray, threshold: float) -> IntBox:
    """Box of the largest 8-connected component of ``amap > threshold``; the zero box when none."""
    import cv2

    mask = (amap > threshold).astype(np.uint8)
    if not mask.any():
        return ZERO_BOX
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    k = 1 + int(np.argmax(stats[1:n, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    return (x, y, x + w, y + h)


def split_calibration(
    pairs: list[Pair], *, seed: int = 0, fraction: float = 0.3
) -> tuple[list[Pair], list[Pair]]:
    """Seeded split by sorted id (independent of file order): (calibration, evaluation)."""
    if not 0.0 < fraction < 1.0:
        raise BadInput(f"--cal-fraction must be in (0, 1), got {fraction}")
    if len(pairs) < 2:
        raise BadInput("the maps protocol needs at least 2 pairs (calibration and evaluation)")
    ordered = sorted(pairs, key=lambda p: p.id)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_cal = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    cal = sorted(perm[:n_cal].tolist())
    ev = sorted(perm[n_cal:].tolist())
    return [ordered[i] for i in cal], [ordered[i] for i in ev]


def _objective(boxes: np.ndarray, gt: np.ndarray, label: np.ndarray, t: float) -> tuple[float, float]:
    """(detection F1@t, Acc@t) of one candidate's boxes on the calibration pairs."""
    flagged = boxes.any(axis=1)
    iou = np.where(label & flagged, iou_many(boxes, gt), 0.0)
    tp = int((label & flagged & (iou >= t)).sum())
    p = tp / flagged.sum() if flagged.any() else 0.0
    r = tp / label.sum() if label.any() else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    score = np.where(label, iou, (~flagged).astype(np.float64))
    return float(f1), float((score >= t).mean())


def calibrate_threshold(
    pairs: list[Pair],
    maps: Mapping[str, Path],
    *,
    seed: int = 0,
    iou_threshold: float = 0.3,
    n_coarse: int = 24,
    n_fine: int = 12,
    sample_per_map: int = 2048,
) -> dict:
    """The pixel threshold maximizing detection F1@iou_threshold on the calibration pairs.

    F1 is the detection F1 (the reported ``f1_<t>``), because the boxes are what is scored. Candidates,
    coarse to fine: quantiles of a seeded pixel sample pooled over the calibration maps (upper tail, from the
    median to the 99.99th percentile, geometrically spaced since defects are small), plus quantiles of the
    per-map maxima (which decide image-level flags); then ``n_fine`` evenly spaced values between the best
    coarse candidate's neighbours. Each map is read once per round and thresholded at every candidate; a
    candidate at or above a map's maximum needs no connected-component pass. Ties go to the higher Acc@t,
    then the lower threshold.
    """
    rng = np.random.default_rng(seed)
    gt = np.array([p.box for p in pairs], dtype=np.float64)
    label = np.array([p.label == 1 for p in pairs])
    samples, maxima = [], []
    for pair in console.progress(pairs, total=len(pairs), desc="calibration maps"):
        a = load_map(maps[pair.id], pair.width, pair.height).ravel()
        maxima.append(float(a.max()))
        samples.append(a[rng.integers(0, a.size, min(sample_per_map, a.size))])
    pooled = np.concatenate(samples)
    levels = 1.0 - np.geomspace(0.5, 1e-4, n_coarse)
    coarse = np.concatenate(
        [np.quantile(pooled, levels), np.quantile(np.asarray(maxima), np.linspace(0.05, 0.95, 10)) - 1e-6]
    )
    coarse = np.unique(coarse.astype(np.float64))

    def run(cands: np.ndarray) -> list[tuple[float, float, float]]:
        boxes = np.zeros((len(cands), len(pairs), 4), dtype=np.float64)
        for j, pair in enumerate(pairs):
            a = load_map(maps[pair.id], pair.width, pair.height)
            top = maxima[j]
            for c, t in enumerate(cands):
                if t < top:
                    boxes[c, j] = map_box(a, float(t))
        return [(*_objective(boxes[c], gt, label, iou_threshold), float(cands[c])) for c in range(len(cands))]

    def best(results: list[tuple[float, float, float]]) -> tuple[float, float, float]:
        return max(results, key=lambda r: (r[0], r[1], -r[2]))

    results = run(coarse)
    f1, acc, t_best = best(results)
    k = int(np.searchsorted(coarse, t_best))
    lo = coarse[k - 1] if k > 0 else coarse[k] - (coarse[-1] - coarse[0] + 1e-6) / n_coarse
    hi = coarse[k + 1] if k + 1 < len(coarse) else coarse[k] + (coarse[-1] - coarse[0] + 1e-6) / n_coarse
    fine = np.setdiff1d(np.linspace(lo, hi, n_fine + 2)[1:-1], coarse)
    if fine.size:
        f1, acc, t_best = best(results + run(fine))
    return {
        "threshold": t_best,
        "objective": f"f1_{iou_threshold:g}",
        "cal_f1": f1,
        "cal_acc": acc,
        "n_candidates": int(len(coarse) + fine.size),
    }


def evaluate_maps(
    pairs: list[Pair],
    maps_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    cal_fraction: float = 0.3,
    iou_threshold: float = 0.3,
    overlays: int = 0,
    notes: Sequence[str] = (),
) -> dict:
    """The non-LLM baseline protocol: calibrate on a seeded split, box the largest blob, score the rest."""
    if not 0.0 < iou_threshold <= 1.0:
        raise BadInput(f"--iou-threshold must be in (0, 1], got {iou_threshold}")
    maps = find_maps(pairs, maps_dir)
    cal, ev = split_calibration(pairs, seed=seed, fraction=cal_fraction)
    console.info(f"calibrating on {len(cal)} pairs, scoring {len(ev)} (seed {seed})")
    calib = calibrate_threshold(cal, maps, seed=seed, iou_threshold=iou_threshold)
    t = calib["threshold"]
    preds: list[Prediction] = []
    split = {p.id: "cal" for p in cal}
    for pair in console.progress([*cal, *ev], total=len(pairs), desc="boxing maps"):
        amap = load_map(maps[pair.id], pair.width, pair.height)
        extra = {"split": split.get(pair.id, "eval")}
        preds.append(Prediction(pair.id, map_box(amap, t), True, score=float(amap.max()), extra=extra))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from differad_cli.core.records import write_predictions

    write_predictions(out / "predictions.jsonl", preds)
    calibration = {**calib, "seed": seed, "fraction": cal_fraction, "n_cal": len(cal), "n_eval": len(ev)}
    note = (
        f"maps protocol: threshold {t:.6g} maximizing {calib['objective']} on a seeded {cal_fraction:g} "
        f"split (seed {seed}, {len(cal)} pairs); scored on the other {len(ev)} pairs"
    )
    by_id = {p.id: p for p in preds}
    return evaluate(
        ev, {p.id: by_id[p.id] for p in ev}, out, iou_threshold=iou_threshold, overlays=overlays,
        notes=[*notes, note], extra={"calibration": calibration},
    )  # fmt: skip
