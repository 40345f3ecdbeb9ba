"""Benchmark: scoring the paper's test-set size and parsing 100k model outputs, against naive references.

Goals (exit 1 when missed): scoring 13,003 pairs < 1 s; parsing 100,000 outputs < 2 s. Each figure is the
best of ``--repeat`` runs; the naive per-sample Python references run in the same process on the same data,
and their results must equal the fast paths' (a speed-up that changes numbers is a bug).

    python bench/bench_eval.py [--pairs 13003] [--outputs 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from differad_cli.core.boxes import iou, order_box
from differad_cli.core.records import Pair, Prediction
from differad_cli.eval.metrics import score
from differad_cli.protocol.parsing import parse_answer

SCORE_GOAL_S = 1.0
PARSE_GOAL_S = 2.0


def make_set(n: int, seed: int = 0) -> tuple[list[Pair], dict[str, Prediction]]:
    """Pairs shaped like AD-DualDiff (20 categories, 3 subsets, ~60% anomalous) and noisy predictions."""
    rng = random.Random(seed)
    subsets = ("easy_structure", "common_logic", "complex_structure")
    pairs, preds = [], {}
    for i in range(n):
        w, h = rng.choice([(256, 256), (512, 384), (1024, 1024)])
        anomalous = rng.random() < 0.6
        if anomalous:
            bw, bh = rng.randint(4, w // 3), rng.randint(4, h // 3)
            x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
            box = (x, y, x + bw, y + bh)
        else:
            box = (0, 0, 0, 0)
        pid = f"t-{i:06d}"
        pairs.append(Pair(pid, Path("r.png"), Path("t.png"), box, int(anomalous), w, h,
                          category=f"cat{i % 20:02d}", subset=subsets[i % 3]))  # fmt: skip
        r = rng.random()
        if r < 0.03:
            continue  # missing
        if r < 0.08:
            preds[pid] = Prediction(pid, (0, 0, 0, 0), False, text="garbage")
        elif r < 0.35:
            preds[pid] = Prediction(pid, (0, 0, 0, 0), True)
        else:
            cx, cy = rng.randint(0, w - 10), rng.randint(0, h - 10)
            if anomalous and rng.random() < 0.7:
                cx, cy = max(0, box[0] + rng.randint(-8, 8)), max(0, box[1] + rng.randint(-8, 8))
            pw, ph = rng.randint(4, w // 3), rng.randint(4, h // 3)
            preds[pid] = Prediction(pid, (cx, cy, min(w, cx + pw), min(h, cy + ph)), True)
    return pairs, preds


def naive_score(pairs: list[Pair], preds: dict[str, Prediction], t: float = 0.3) -> dict:
    """The metric definitions written sample by sample, for comparison only."""

    def block(items: list[tuple[Pair, Prediction | None]]) -> dict:
        n = n_ano = hits = tp_det = tp_img = flagged = invalid = 0
        total = total_ano = total_nor = 0.0
        for pair, pred in items:
            n += 1
            valid = pred is not None and pred.valid
            nonzero = valid and any(pred.box)  # type: ignore[union-attr]
            invalid += not valid
            flagged += nonzero
            if pair.label == 1:
                n_ano += 1
                s = iou(pred.box, pair.box) if nonzero else 0.0  # type: ignore[union-attr]
                total_ano += s
                tp_det += nonzero and s >= t
                tp_img += nonzero
            else:
                s = 1.0 if valid and not nonzero else 0.0
                total_nor += s
            total += s
            hits += s >= t
        p, r = (tp_det / flagged if flagged else 0.0), (tp_det / n_ano if n_ano else 0.0)
        return {"n": n, "acc": hits / n, "f1": 2 * p * r / (p + r) if p + r else 0.0, "miou": total / n,
                "tp_img": tp_img, "invalid": invalid}  # fmt: skip

    groups: dict[str, list] = defaultdict(list)
    items = [(p, preds.get(p.id)) for p in pairs]
    for pair, pred in items:
        groups[pair.category].append((pair, pred))
    return {"overall": block(items), "per_category": {k: block(v) for k, v in groups.items()}}


_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NAIVE_FORMS = (
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)",
    rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]",
    rf"(?<![\w.+\-])(?<![\d.][ \t])({_NUM})[ \t]+({_NUM})[ \t]+({_NUM})[ \t]+({_NUM})"
    r"(?![\w.]|[ \t]+[-+]?[\d.])",
)


def naive_parse(text: str) -> tuple[float, ...] | None:
    """Each accepted form searched separately (all matches, sorted by position) -- the obvious approach."""
    low = text.lower()
    i = low.find("<answer>")
    if i >= 0:
        j = low.find("</answer>", i + 8)
        text = text[i + 8 : j if j >= 0 else len(text)]
    found = []
    for form in _NAIVE_FORMS:
        found += [(m.start(), m.groups()) for m in re.finditer(form, text)]
    for _, g in sorted(found, key=lambda x: x[0]):
        v = [float(x) for x in g]
        if not all(math.isfinite(x) for x in v):
            continue
        if all(x == 0 for x in v):
            return (0.0, 0.0, 0.0, 0.0)
        b = order_box(v)
        if b[2] > b[0] and b[3] > b[1]:
            return b
    return None


def make_outputs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    think = "<think>Comparing image 1 with image 2, the texture near the lower edge is brighter. </think>"
    out = []
    for _ in range(n):
        x1, y1 = rng.randint(0, 900), rng.randint(0, 900)
        x2, y2 = x1 + rng.randint(1, 99), y1 + rng.randint(1, 99)
        form = rng.randrange(8)
        box = [
            f"({x1},{y1}),({x2},{y2})", f"[{x1}, {y1}, {x2}, {y2}]", f"[[{x1},{y1},{x2},{y2}]]",
            f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>", f'{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}',
            f"{x1} {y1} {x2} {y2}", "(0,0),(0,0)", "I cannot tell.",
        ][form]  # fmt: skip
        out.append(f"{think}<answer>{box}</answer>" if rng.random() < 0.8 else f"{think} {box}")
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=13003)
    ap.add_argument("--outputs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    pairs, preds = make_set(args.pairs)
    fast = score(pairs, preds)
    ref = naive_score(pairs, preds)
    for name, f_block, r_block in [("overall", fast["overall"], ref["overall"])] + [
        (k, fast["per_category"][k], ref["per_category"][k]) for k in ref["per_category"]
    ]:
        got = (f_block["n"], f_block["acc_0.3"], f_block["f1_0.3"], f_block["miou"], f_block["invalid"])
        want = (r_block["n"], r_block["acc"], r_block["f1"], r_block["miou"], r_block["invalid"])
        if not all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(got, want, strict=True)):
            print(f"MISMATCH in scoring ({name}): {got} != {want}", file=sys.stderr)
            return 1
    t_score = best_of(lambda: score(pairs, preds), args.repeat)
    t_score_ref = best_of(lambda: naive_score(pairs, preds), args.repeat)

    texts = make_outputs(args.outputs)
    mismatches = sum(parse_answer(t) != naive_parse(t) for t in texts[:20000])
    if mismatches:
        print(f"MISMATCH in parsing: {mismatches} of 20000 outputs differ", file=sys.stderr)
        return 1
    t_parse = best_of(lambda: [parse_answer(t) for t in texts], args.repeat)
    t_parse_ref = best_of(lambda: [naive_parse(t) for t in texts], 1)

    print(f"scoring {len(pairs):,} pairs: {t_score:.3f} s (naive per-sample Python: {t_score_ref:.3f} s, "
          f"x{t_score_ref / t_score:.1f}); goal < {SCORE_GOAL_S} s")  # fmt: skip
    print(f"parsing {len(texts):,} outputs: {t_parse:.3f} s = {1e6 * t_parse / len(texts):.1f} us each "
          f"(naive per-form search: {t_parse_ref:.3f} s, x{t_parse_ref / t_parse:.1f}); "
          f"goal < {PARSE_GOAL_S} s")  # fmt: skip
    ok = t_score < SCORE_GOAL_S and t_parse < PARSE_GOAL_S
    print("PASS" if ok else "FAIL: a goal was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
