"""The ``hf`` part of bench_line.py: per-target latency of a Qwen-VL model against one reference, the
per-pair path (the whole prompt for every target) against line mode (the reference's prompt prefix encoded
once, its key/value cache reused), same run, identical answers checked. Rows are over the targets after the
first (line mode's first target pays for the prefix once; its time is printed on its own)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_line import _row


def _images(root: Path, n: int, size: int) -> tuple[Path, list[Path]]:
    import cv2
    import numpy as np

    from differad_cli.core.images import save_png

    rng = np.random.default_rng(5)
    golden = cv2.resize(rng.integers(30, 220, (size // 8, size // 8, 3)).astype(np.uint8), (size, size))
    save_png(root / "golden.png", golden)
    targets = []
    for i in range(n):
        tgt = golden.copy()
        if i % 2:
            y, x = rng.integers(0, size * 3 // 4, 2)
            tgt[y : y + size // 6, x : x + size // 5] = rng.integers(0, 256, 3)
        targets.append(root / f"t{i:03d}.png")
        save_png(targets[-1], tgt)
    return root / "golden.png", targets


def bench_hf(args: argparse.Namespace, pinned: str) -> bool:
    import torch

    from differad_cli.core.images import load_rgb
    from differad_cli.core.records import Pair
    from differad_cli.models.tiny import build_tiny_model
    from differad_cli.predict.backends.hf import HFBackend

    if args.hf_device == "cpu":
        torch.set_num_threads(1)
    if args.hf_n < 2:
        raise SystemExit("--hf-n must be at least 2 (line mode's first target also encodes the prefix)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.hf_model
        if model is None:
            device = "cuda" if args.hf_device.startswith("cuda") else "cpu"
            model = build_tiny_model(
                root / "model", family=args.hf_family, preset_name=args.hf_preset, device=device
            )
        golden, targets = _images(root, args.hf_n, args.hf_size)
        pairs = [Pair(t.name, golden, t, (0, 0, 0, 0), 0, args.hf_size, args.hf_size) for t in targets]
        backend = HFBackend.from_path(model, device=args.hf_device)
        sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda: None)
        cpu = args.hf_device == "cpu"
        where = f"one CPU core ({pinned})" if cpu else str(torch.cuda.get_device_name())
        name = model.name if args.hf_model is not None else f"{args.hf_family} {args.hf_preset}"
        print(
            f"bench_line: hf backend, {name}, {args.hf_n} targets of {args.hf_size}x{args.hf_size} against "
            f"one reference, {where}; per target the fastest of {args.repeat}, the paths interleaved"
        )
        ok = True
        for tokens in (1, args.hf_new_tokens):
            backend.max_new_tokens = tokens
            backend.predict(pairs[:1])  # warm-up: kernels, allocator

            # the two paths interleaved target by target (a shared machine's load hits both alike); per
            # target the fastest of the repeats; line mode's first target builds the prefix and pays for it
            times: dict[str, list[list[float]]] = {"per-pair": [], "line": []}
            texts: dict[str, list[str]] = {"per-pair": [], "line": []}
            for _ in range(args.repeat):
                answer = backend.with_reference(golden)
                runs = {"per-pair": lambda p: backend.predict([p])[0], "line": answer}
                row: dict[str, list[float]] = {"per-pair": [], "line": []}
                texts = {"per-pair": [], "line": []}
                for p in pairs:
                    for label, fn in runs.items():
                        sync()
                        t = time.perf_counter()
                        texts[label].append(fn(p).text)
                        sync()
                        row[label].append((time.perf_counter() - t) * 1000.0)
                for label in row:
                    times[label].append(row[label])
            best = {label: [min(col) for col in zip(*rows, strict=True)] for label, rows in times.items()}
            total, shared = answer.last_prompt
            inputs = backend.encode([load_rgb(golden)], [load_rgb(targets[0])])
            merge = int(getattr(backend.processor.image_processor, "merge_size", 2)) ** 2  # patches per token
            ref_tokens = int(inputs["image_grid_thw"][0].prod()) // merge
            share = ref_tokens / total
            if tokens == 1:
                print(
                    f"  prompt {total} tokens: cached prefix {shared} ({shared / total:.0%}), of which the "
                    f"reference image {ref_tokens} ({share:.0%})"
                )
            print(f" {tokens} new token(s){' (the prompt cost)' if tokens == 1 else ''}:")
            # the per-target cost in line mode is that of the targets after the first; the first one also
            # encodes the reference's prefix (a one-time cost, reported on its own line)
            first = best["line"][0]
            means = {label: _row(label, t[1:]) for label, t in best.items()}
            print(f"  line mode's first target (prefix encoded): {first:.1f} ms")
            ratio = means["line"] / means["per-pair"]
            same = texts["line"] == texts["per-pair"]
            goal = 1.0 - share
            print(f"  line / per-pair: {ratio:.2f}" + (f" (goal <= {goal:.2f})" if tokens == 1 else "")
                  + f"; identical answers: {same}")  # fmt: skip
            ok = ok and same and (tokens != 1 or ratio <= goal)
        print("  goal met" if ok else "  GOAL MISSED")
        return ok
