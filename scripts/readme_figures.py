#!/usr/bin/env python3
"""Rewrite the README's measured figures from their sources instead of by hand.

Each figure is a marked span, ``<!-- fig:NAME -->VALUE<!-- /fig -->`` (a name may appear several times):

  tests            the number of tests `pytest --collect-only -q` collects (what `make test` runs)
  demo_time        the demo's wall time, the sum of demo.json's per-stage timings ("53 s")
  demo_cold_steps  the train-cold steps the demo ran (its cold run's train_summary.json)
  demo_blank_steps the steps of its first cold-start stage, on blank pairs (runs/blank/train_summary.json)
  demo_acc_constant / demo_acc_cold / demo_acc_rl / demo_acc_diff
                   held-out Acc@0.3 of the best constant answer, the learner after the cold start and
                   after RL, and the diff backend ("0.604")
  demo_valid       the share of the demo's RL-trained learner's answers in the answer format, in %
  demo_valid_untrained  the same share for the learner before training
  suite_time       with --suite: the wall time of `pytest -q` run now ("8 min 2 s")
  suite_tests      with --suite: the number of tests that run had
  suite_date       with --suite: today's date

    python scripts/readme_figures.py                 # tests + demo figures from demo/demo.json (`make demo`)
    python scripts/readme_figures.py --suite         # ... and run the whole suite to time it
    python scripts/readme_figures.py --check         # exit 1 when the README differs from the sources

A figure whose source is missing (no demo/demo.json yet) is left as it is, with a note on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = (
    "tests", "demo_time", "demo_cold_steps", "demo_valid", "demo_valid_untrained", "demo_blank_steps",
    "demo_acc_constant", "demo_acc_cold", "demo_acc_rl", "demo_acc_diff",
    "suite_time", "suite_tests", "suite_date",
)  # fmt: skip
SPAN = re.compile(r"<!-- fig:(?P<name>[a-z_]+) -->(?P<value>.*?)<!-- /fig -->")


def figures(text: str) -> dict[str, list[str]]:
    """The marked figures of a text: name -> values, in order of appearance."""
    out: dict[str, list[str]] = {}
    for m in SPAN.finditer(text):
        out.setdefault(m["name"], []).append(m["value"])
    return out


def replace(text: str, values: dict[str, str]) -> str:
    """``text`` with every marked figure named in ``values`` set to its value."""
    return SPAN.sub(
        lambda m: f"<!-- fig:{m['name']} -->{values.get(m['name'], m['value'])}<!-- /fig -->", text
    )


def count_tests(python: str = sys.executable) -> int:
    """How many tests pytest collects in this repository (collection only: nothing runs)."""
    proc = subprocess.run(
        [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"^(\d+) tests? collected", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"pytest --collect-only failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return int(found[1])


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


def _valid(overall: dict) -> str:
    return f"{round(100 * (overall['n'] - overall['invalid']) / overall['n'])}%"


def _steps(run: Path) -> str | None:
    """A run's final step, or None when it has no (readable) train_summary.json: the figure stays as it is."""
    try:
        return str(json.loads((run / "train_summary.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def demo_figures(summary: Path) -> dict[str, str]:
    """The demo_* figures from a demo's demo.json (one JSON line) and its runs' train_summary.json; a figure
    an older demo has no source for (no untrained column, no blank stage) is left out."""
    doc = json.loads(summary.read_text(encoding="utf-8").splitlines()[0])
    metrics = doc["metrics"]
    runs = summary.parent / "runs"  # the demo's own layout (demo.json's paths are relative to its cwd)
    values = {
        "demo_time": duration(sum(doc["timings_s"].values())),
        "demo_cold_steps": _steps(runs / "cold"),
        "demo_blank_steps": _steps(runs / "blank"),
        "demo_valid": _valid(metrics["learner-rl"]["overall"]),
    }
    if "untrained" in metrics:  # demos before 2026-11-28 have no such column
        values["demo_valid_untrained"] = _valid(metrics["untrained"]["overall"])
    for name, key in (
        ("constant", "constant"),
        ("cold", "learner-cold"),
        ("rl", "learner-rl"),
        ("diff", "diff"),
    ):
        acc = metrics.get(key, {}).get("overall", {}).get("acc_0.3")
        if acc is not None:
            values[f"demo_acc_{name}"] = f"{acc:.3f}"
    return {k: v for k, v in values.items() if v is not None}


def suite_figures(tests: int, python: str = sys.executable) -> dict[str, str]:
    """Run the whole suite (as `make test` does) and time it."""
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "pytest", "-q"], cwd=REPO, check=True)
    seconds = time.perf_counter() - t0
    return {
        "suite_time": duration(seconds),
        "suite_tests": str(tests),
        "suite_date": datetime.date.today().isoformat(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--demo", type=Path, default=REPO / "demo" / "demo.json", help="a demo's demo.json")
    parser.add_argument("--suite", action="store_true", help="also run the whole test suite to time it")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README differs")
    args = parser.parse_args()

    tests = count_tests()
    values = {"tests": str(tests)}
    if args.demo.is_file():
        values.update(demo_figures(args.demo))
    else:
        print(
            f"readme_figures: no {args.demo} (run `make demo`): demo figures left as they are",
            file=sys.stderr,
        )
    if args.suite:
        values.update(suite_figures(tests))
    text = args.readme.read_text(encoding="utf-8")
    unknown = set(figures(text)) - set(NAMES)
    if unknown:
        raise SystemExit(f"{args.readme}: figures with no source: {', '.join(sorted(unknown))}")
    new = replace(text, values)
    for name, old in figures(text).items():
        if name in values and set(old) != {values[name]}:
            print(f"readme_figures: {name}: {', '.join(sorted(set(old)))} -> {values[name]}", file=sys.stderr)
    if args.check:
        return int(new != text)
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
