"""Times the per-pair ``diff`` path of whatever differad is importable (bench_line.py --against-src runs it
under another checkout's ``src``): one line of JSON, milliseconds per pair, in the manifest's order.

    python line_per_pair_worker.py PAIRS.jsonl REPEAT
"""

from __future__ import annotations

import json
import sys
import time

from one_core import pin_one_core  # first: one BLAS/OpenMP thread before numpy loads


def main() -> None:
    pin_one_core()
    import cv2

    from differad_cli.core.records import read_pairs
    from differad_cli.predict.backends.diff import DiffBackend

    cv2.setNumThreads(1)
    pairs = read_pairs(sys.argv[1])
    backend = DiffBackend()
    backend.predict(pairs[:1])  # warm the codecs and lazy imports, as bench_line does for its own paths
    best: list[float] | None = None
    for _ in range(int(sys.argv[2])):
        times = []
        for p in pairs:
            t = time.perf_counter()
            backend.predict([p])
            times.append((time.perf_counter() - t) * 1000.0)
        best = times if best is None or sum(times) < sum(best) else best
    import differad_cli

    print(json.dumps({"module": differad_cli.__file__, "times": best}))  # the caller checks which code ran


if __name__ == "__main__":
    main()
