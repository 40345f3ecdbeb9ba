"""Benchmark: training that visibly learns. The learner (`differad tiny-model --preset learner`) is
cold-started on easy synthetic pairs, then trained with GRPO from that checkpoint, and the paper's ablations
are run in miniature (Table VIII: IoU-only / consistency-only / DCLR; Table IX: GRPO without resampling and
weighting, with each, with both). Every model is scored on held-out pairs of the same generator (another
seed), beside the constant-answer baselines and the training-free `diff` backend, all in the same run.

Goals (issue 11): the cold start reaches >= 98% valid answers, image F1 >= 0.85 and Acc@0.3 >= 0.5 within
20 minutes of wall time; RL from it raises Acc@0.3 and mIoU (mean of the seeds). Exits 1 when a goal is
missed. Every run writes its result to WORK/results/*.json as it ends, so an interrupted benchmark resumes
where it stopped (a result is reused only when its settings match).

    python bench/bench_learning.py [--work bench_out/learning] [--seeds 3] [--no-ablations] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes" / "learner_cpu"
SIZE = 224
GOALS = {"valid": 0.98, "image_f1": 0.85, "acc": 0.5, "minutes": 20.0}
T = "0.3"
# (name, rewards, max_resample, difficulty_weighting): Table VIII varies the localization reward with the full
# method; Table IX varies resampling/weighting with DCLR. ("dclr", both on) is the main RL run in both tables.
MAIN = ("dclr + both", ["format", "dclr"], 2, True)
TABLE_VIII = (
    ("iou only", ["format", "iou"], 2, True),
    ("consistency only", ["format", "consistency"], 2, True),
)
TABLE_IX = (
    ("neither", ["format", "dclr"], 0, False),
    ("resampling", ["format", "dclr"], 2, False),
    ("weighting", ["format", "dclr"], 0, True),
)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _save(path: Path, value: Any) -> None:
    from differad_cli.core.io import atomic_write

    atomic_write(path, json.dumps(value, indent=1).encode())


def make_data(work: Path, n_train: int, n_held: int, seed: int) -> tuple[Path, Path]:
    from differad_cli.synth import SynthConfig, synthesize
    from differad_cli.synth.config import easy_settings

    out = []
    for name, n, s in (("train", n_train, seed), ("held", n_held, seed + 1)):
        folder = work / "data" / name
        done = (folder / "pairs.jsonl").exists()
        cfg = SynthConfig(out=folder, n=n, size=SIZE, seed=s, workers=2, resume=done, **easy_settings(SIZE))
        synthesize(cfg)
        out.append(folder / "pairs.jsonl")
    return out[0], out[1]


def evaluate(model: Path, held: Path, tag: str, work: Path) -> dict[str, Any]:
    """Greedy answers of ``model`` on the held-out pairs, scored with eval's metrics (cached by tag)."""
    from differad_cli.core.records import read_pairs, write_predictions
    from differad_cli.predict.backends.hf import HFBackend

    pairs = read_pairs(held)
    t0 = time.perf_counter()
    preds = HFBackend.from_path(model, max_new_tokens=48, batch_size=16).predict(pairs)
    write_predictions(work / "predictions" / f"{tag}.jsonl", preds)
    metrics = _overall(pairs, preds)
    metrics["eval_s"] = time.perf_counter() - t0
    return metrics


def diff_metrics(held: Path) -> dict[str, Any]:
    from differad_cli.core.records import read_pairs
    from differad_cli.predict.backends import make_backend
    from differad_cli.predict.config import PredictOptions

    pairs = read_pairs(held)
    return _overall(pairs, make_backend(PredictOptions(backend="diff")).predict(pairs))


def _overall(pairs: list, preds: list) -> dict[str, Any]:
    """eval's overall metrics block plus the share of valid answers."""
    from differad_cli.eval.metrics import score

    m = score(pairs, {p.id: p for p in preds})["overall"]
    m["valid"] = 1.0 - m["invalid"] / max(1, m["n"])
    return m


def run_cold(work: Path, train: Path, held: Path, model: Path, steps: int | None) -> dict[str, Any]:
    from differad_cli.train import train_cold

    key = {"stage": "cold", "steps": steps, "recipe": (RECIPES / "cold.yaml").read_text(encoding="utf-8")}
    res_path = work / "results" / "cold.json"
    res = _json(res_path)
    if res and res.get("key") == key and (work / "runs" / "cold" / "config.json").exists():
        return res
    out = work / "runs" / "cold"
    opts: dict[str, Any] = {"pairs": str(train), "model": str(model), "eval_pairs": None}
    if steps:
        opts["max_steps"] = steps
    opts["resume"] = any(out.glob("checkpoint-*"))
    t0 = time.perf_counter()
    train_cold(output_dir=out, recipe=RECIPES / "cold.yaml", options=opts)
    train_s = time.perf_counter() - t0
    res = {"key": key, "train_s": train_s, "metrics": evaluate(out, held, "cold", work)}
    _save(res_path, res)
    return res


def _log_means(run: Path, names: tuple[str, ...]) -> dict[str, float]:
    """Means over training steps of logged metrics (train_log.jsonl)."""
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if x]
    out = {}
    for n in names:
        vals = [r[n] for r in rows if isinstance(r.get(n), (int, float))]
        out[n] = statistics.fmean(vals) if vals else float("nan")
    return out


LOGGED = (
    "resample/degenerate_before",
    "resample/degenerate_after",
    "signal/iou_flat_dclr_varies",
    "signal/iou_flat",
    "reward",
)


def run_rl(
    work: Path, train: Path, held: Path, cold: Path, variant: tuple, seed: int, steps: int | None
) -> dict[str, Any]:
    from differad_cli.train import train_rl

    name, rewards, resample, weighting = variant
    tag = f"rl-{name.replace(' ', '_').replace('+', 'and')}-s{seed}"
    key = {
        "stage": tag,
        "steps": steps,
        "rewards": rewards,
        "resample": resample,
        "weighting": weighting,
        "recipe": (RECIPES / "grpo.yaml").read_text(encoding="utf-8"),
        "cold": _json(work / "results" / "cold.json")["train_s"],
    }
    res_path = work / "results" / f"{tag}.json"
    res = _json(res_path)
    if res and res.get("key") == key:
        return res
    out = work / "runs" / tag
    opts: dict[str, Any] = {
        "pairs": str(train),
        "model": str(cold),
        "rewards": rewards,
        "max_resample": resample,
        "difficulty_weighting": weighting,
        "seed": seed,
        "resume": any(out.glob("checkpoint-*")),
    }
    if steps:
        opts["max_steps"] = steps
    t0 = time.perf_counter()
    train_rl(output_dir=out, recipe=RECIPES / "grpo.yaml", options=opts)
    train_s = time.perf_counter() - t0
    metrics = evaluate(out, held, tag, work)
    res = {"key": key, "train_s": train_s, "log": _log_means(out, LOGGED), "metrics": metrics}
    _save(res_path, res)
    return res


def _pm(vals: list[float]) -> str:
    """mean ± half the range (the spread of the seeds)."""
    if not vals:
        return "-"
    m = statistics.fmean(vals)
    return f"{m:.3f} ± {(max(vals) - min(vals)) / 2:.3f}"


def _row(name: str, results: list[dict[str, Any]]) -> str:
    ms = [r["metrics"] for r in results]
    logs = [r.get("log", {}) for r in results]
    cells = [_pm([m[k] for m in ms]) for k in (f"acc_{T}", f"f1_{T}", "miou", "image_f1", "valid")]
    extra = [
        _pm([lg[k] for lg in logs if k in lg and lg[k] == lg[k]])
        for k in ("resample/degenerate_before", "resample/degenerate_after", "signal/iou_flat_dclr_varies")
    ]
    mins = statistics.fmean(r["train_s"] for r in results) / 60
    return f"| {name} | " + " | ".join([*cells, *extra, f"{mins:.1f}"]) + " |"


HEAD = (
    f"| model | Acc@{T} | F1@{T} | mIoU | image F1 | valid | degenerate before | after "
    "| IoU flat, DCLR varies | train min |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _single(name: str, m: dict[str, Any], minutes: float | None = None) -> str:
    cells = [f"{m[k]:.3f}" for k in (f"acc_{T}", f"f1_{T}", "miou", "image_f1", "valid")]
    last = "-" if minutes is None else f"{minutes:.1f}"
    return f"| {name} | " + " | ".join([*cells, "-", "-", "-", last]) + " |"


def _pool(a: argparse.Namespace, runs: list[tuple[str, int]]) -> None:
    """Run the RL runs in ``a.jobs`` worker processes of one thread each (small models use a core better
    that way than two threads on one run); each writes its result file, which the caller then reads."""
    import subprocess

    base = [sys.executable, __file__, "--work", str(a.work), "--family", a.family, "--seeds", str(a.seeds)]
    base += ["--n-train", str(a.n_train), "--n-held", str(a.n_held), "--threads", "1"]
    for flag, value in (("--cold-steps", a.cold_steps), ("--rl-steps", a.rl_steps)):
        if value:
            base += [flag, str(value)]
    if a.no_ablations:
        base.append("--no-ablations")
    if a.ablation_seeds is not None:
        base += ["--ablation-seeds", str(a.ablation_seeds)]
    pending = list(runs)
    active: list[tuple[subprocess.Popen, tuple[str, int]]] = []
    while pending or active:
        while pending and len(active) < max(1, a.jobs):
            name, seed = pending.pop(0)
            active.append((subprocess.Popen([*base, "--one", name, str(seed)]), (name, seed)))
        proc, run = active.pop(0)
        if proc.wait() != 0:
            raise SystemExit(f"RL run {run} failed (exit {proc.returncode})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench_out" / "learning")
    ap.add_argument(
        "--family", default="qwen3_vl", help="The learner's family (the recipe was tuned on qwen3_vl)."
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-held", type=int, default=200)
    ap.add_argument("--cold-steps", type=int, default=None, help="Override the recipe's max_steps.")
    ap.add_argument("--rl-steps", type=int, default=None, help="Override the recipe's max_steps.")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument(
        "--ablation-seeds", type=int, default=None, help="Seeds of the ablation runs (default: --seeds)."
    )
    ap.add_argument("--threads", type=int, default=2, help="Torch threads of the cold start.")
    ap.add_argument("--jobs", type=int, default=2, help="RL runs side by side (one thread each).")
    ap.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="A smoke run: few steps and pairs, one seed.")
    a = ap.parse_args(argv)
    if a.quick:
        a.n_train, a.n_held, a.seeds = 64, 16, 1
        a.cold_steps, a.rl_steps = a.cold_steps or 4, a.rl_steps or 2
    import torch

    torch.set_num_threads(a.threads)
    from differad_cli.core.records import read_pairs
    from differad_cli.eval.baselines import constant_baselines
    from differad_cli.models.tiny import build_tiny_model

    work = a.work
    (work / "results").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, held = make_data(work, a.n_train, a.n_held, 0)
    model = work / "learner"
    if not (model / "config.json").exists():
        build_tiny_model(model, family=a.family, preset_name="learner", seed=0)
    data_s = time.perf_counter() - t0
    cold = run_cold(work, train, held, model, a.cold_steps)
    cold_dir = work / "runs" / "cold"
    seeds = list(range(a.seeds))
    variants = [MAIN] + ([] if a.no_ablations else [*TABLE_VIII, *TABLE_IX])
    if a.one:  # a worker of the pool below: one RL run
        v = next(v for v in variants if v[0] == a.one[0])
        run_rl(work, train, held, cold_dir, v, int(a.one[1]), a.rl_steps)
        return 0
    ab_seeds = seeds if a.ablation_seeds is None else list(range(a.ablation_seeds))

    def seeds_of(v: tuple) -> list[int]:
        return seeds if v is MAIN else ab_seeds

    _pool(a, [(v[0], s) for v in variants for s in seeds_of(v)])
    base = constant_baselines(read_pairs(train), read_pairs(held))
    diff = diff_metrics(held)
    rl: dict[str, list[dict[str, Any]]] = {}
    for v in variants:
        rl[v[0]] = [run_rl(work, train, held, cold_dir, v, s, a.rl_steps) for s in seeds_of(v)]

    print(f"# bench_learning ({a.family} learner, {a.n_train} training / {a.n_held} held-out pairs, "
          f"{a.threads} threads; data + model {data_s:.0f} s)\n")  # fmt: skip
    print("## Cold start vs baselines (held-out pairs)\n")
    print(HEAD)
    for name, m in base.items():
        m["valid"] = 1.0
        print(_single(f"constant: {name}", m))
    print(_single("diff backend (training-free)", diff))
    cold_min = cold["train_s"] / 60
    print(_single("learner, cold start", cold["metrics"], cold_min))
    print(_row(f"learner, cold + GRPO ({MAIN[0]})", rl[MAIN[0]]))
    if not a.no_ablations:
        n_ab = len(ab_seeds)
        seeds_note = f"{n_ab} seeds; the last row {a.seeds}"
        print(f"\n## Table VIII in miniature (GRPO from the same cold start; {seeds_note})\n")
        print(HEAD)
        for v in (*TABLE_VIII, MAIN):
            print(_row(v[0], rl[v[0]]))
        print(f"\n## Table IX in miniature (DCLR; resampling / difficulty weighting; {seeds_note})\n")
        print(HEAD)
        for v in (*TABLE_IX, MAIN):
            print(_row(v[0], rl[v[0]]))
    cm = cold["metrics"]
    rl_acc = statistics.fmean(r["metrics"][f"acc_{T}"] for r in rl[MAIN[0]])
    rl_miou = statistics.fmean(r["metrics"]["miou"] for r in rl[MAIN[0]])
    checks = {
        f"cold valid >= {GOALS['valid']:.0%}": cm["valid"] >= GOALS["valid"],
        f"cold image F1 >= {GOALS['image_f1']}": cm["image_f1"] >= GOALS["image_f1"],
        f"cold Acc@{T} >= {GOALS['acc']}": cm[f"acc_{T}"] >= GOALS["acc"],
        f"cold within {GOALS['minutes']:.0f} min (incl. its eval)": (cold["train_s"] + cm["eval_s"]) / 60
        <= GOALS["minutes"],
        f"RL raises Acc@{T} ({cm[f'acc_{T}']:.3f} -> {rl_acc:.3f})": rl_acc > cm[f"acc_{T}"],
        f"RL raises mIoU ({cm['miou']:.3f} -> {rl_miou:.3f})": rl_miou > cm["miou"],
    }
    print("\n## Goals\n")
    for k, ok in checks.items():
        print(f"- {'PASS' if ok else 'MISS'}: {k}")
    print(f"\ntotal wall time {(time.perf_counter() - t0) / 60:.1f} min (results reused from {work}/results)")
    return 0 if all(checks.values()) or a.quick else 1


if __name__ == "__main__":
    sys.exit(main())
