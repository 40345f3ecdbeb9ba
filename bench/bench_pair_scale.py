"""Benchmark: `differad pair` over a large tree with the default (pixel) embedder: images/s and peak memory.

Builds a synthetic MVTec-AD-style tree of N images (JPEG, --size px square; per category 80% train/good pool,
10% test/good, 10% test/defect with a mask), then runs each phase in its own process and reports wall time,
images/s and that process's peak resident memory (getrusage ru_maxrss), beside two references measured in
the same run: an idle interpreter with differad imported (the floor) and the embedding-only pass (every
image decoded and embedded once, nothing else: what `pair` cannot beat without a faster embedder).

  1. embed only          PixelEmbedder over all N images
  2. pair, cold          run_pair: discovery, embedding (cache written), top-k, masks -> boxes, records
  3. pair, warm cache    the same again: embeddings from the cache, so discovery + retrieval + boxes

    python bench/bench_pair_scale.py [--n 2000] [--categories 10] [--size 256] [--k 8] [--tree DIR]

--n 100000 is the issue's measurement (the tree alone is ~1.5 GB of JPEGs at 256 px). --tree keeps the tree
(reused when it already holds N images), else it is built in a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build_tree(root: Path, n: int, categories: int, size: int, seed: int = 0) -> int:
    """N images split over ``categories``; returns the number of images written (0 when already there)."""
    marker = root / ".bench_tree.json"
    spec = {"n": n, "categories": categories, "size": size, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return 0
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    per_cat = n // categories
    written = 0
    for c in range(categories):
        cat = root / f"cat{c:02d}"
        for d in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
            (cat / d).mkdir(parents=True, exist_ok=True)
        fx, fy = rng.uniform(0.02, 0.2, 2)
        base = 128 + 80 * np.sin(fx * xx + c) * np.cos(fy * yy)
        n_cat = per_cat + (1 if c < n % categories else 0)
        n_test = max(1, n_cat // 10)
        for i in range(n_cat):
            img = base + rng.normal(0, 8, (size, size)) + rng.uniform(-20, 20)
            img = np.roll(img, int(rng.integers(-8, 9)), axis=1)
            if i < n_cat - 2 * n_test:
                folder, name = "train/good", f"{i:06d}.jpg"
            elif i < n_cat - n_test:
                folder, name = "test/good", f"{i:06d}.jpg"
            else:
                folder, name = "test/defect", f"{i:06d}.jpg"
                x, y = (int(v) for v in rng.integers(0, size - size // 8, 2))
                m = np.zeros((size, size), np.uint8)
                m[y : y + size // 8, x : x + size // 8] = 255
                img[m > 0] = 255 - img[m > 0]
                cv2.imwrite(str(cat / "ground_truth" / "defect" / f"{i:06d}_mask.png"), m)
            rgb = np.clip(np.stack([img, img * 0.9, img * 0.8], axis=2), 0, 255).astype(np.uint8)
            cv2.imwrite(str(cat / folder / name), rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])
            written += 1
    marker.write_text(json.dumps(spec))
    return written


def phase(name: str, tree: Path, out: Path, k: int) -> dict:
    """Run in a child process: one phase, then its wall time and this process's peak RSS."""
    from differad_cli.core import console

    console.set_verbosity(console.QUIET)
    t = time.perf_counter()
    n = 0
    if name == "embed":
        from differad_cli.core.images import list_images
        from differad_cli.pair.retrieval import PixelEmbedder

        paths = [p for p in list_images(tree) if "ground_truth" not in p.parts]
        PixelEmbedder().embed_paths(paths)
        n = len(paths)
    elif name in ("pair_cold", "pair_warm"):
        from differad_cli.pair import run_pair
        from differad_cli.pair.config import PairConfig

        target = out if name == "pair_cold" else out.with_name("pairs_warm.jsonl")  # same cache folder
        pairs = run_pair(PairConfig(out=target, data=tree, layout="mvtec", k=k))
        n = len(pairs)
    elif name == "idle":
        import differad_cli.pair.build  # noqa: F401  (numpy, OpenCV, the pair stage: the floor)
    else:
        raise SystemExit(f"unknown phase {name}")
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"phase": name, "wall_s": wall, "peak_rss_mb": peak_mb, "records": n}


def run_child(name: str, tree: Path, out: Path, k: int) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--tree", str(tree), "--out", str(out), "--k", str(k)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images in the tree (masks not counted)")
    ap.add_argument("--categories", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--tree", type=Path, default=None, help="keep (and reuse) the tree here")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.tree, args.out, args.k)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_pair_scale_") as tmp:
        tree = args.tree or Path(tmp) / "tree"
        t = time.perf_counter()
        made = build_tree(tree, args.n, args.categories, args.size)
        t_tree = time.perf_counter() - t
        out = Path(tmp) / "out" / "pairs.jsonl"
        out.parent.mkdir()
        print(
            f"# pair over {args.n:,} images ({args.categories} categories, {args.size}x{args.size} JPEG, "
            f"80% pool / 20% targets), k={args.k}, pixel embedder, {os.cpu_count()} CPU(s) visible"
        )
        print(f"  tree: {'built' if made else 'reused'} in {t_tree:.1f} s")
        rows = [run_child(p, tree, out, args.k) for p in ("idle", "embed", "pair_cold", "pair_warm")]
    labels = {
        "idle": "idle interpreter (differad imported): the floor",
        "embed": "embed only (decode + pixel embedding of every image): the reference",
        "pair_cold": "pair, cold (no embedding cache)",
        "pair_warm": "pair, warm (embedding cache from the cold run)",
    }
    embed_s = next(r["wall_s"] for r in rows if r["phase"] == "embed")
    print(f"  {'phase':<70} {'wall s':>8} {'images/s':>9} {'peak RSS MB':>12} {'x embed':>8}")
    for r in rows:
        rate = f"{args.n / r['wall_s']:,.0f}" if r["phase"] != "idle" else "-"
        ratio = f"{r['wall_s'] / embed_s:.2f}" if r["phase"] != "idle" else "-"
        print(f"  {labels[r['phase']]:<70} {r['wall_s']:8.2f} {rate:>9} {r['peak_rss_mb']:12.0f} {ratio:>8}")
    print(f"  records written: {rows[2]['records']:,} (targets = 20% of the images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
