"""Sweep: which cold-start recipe makes the learner localize, and after how many samples.

A learning curve per recipe (held-out Acc@0.3 / mIoU / image F1 / invalid answers every
``--eval-steps``), many recipes side by side, under one wall-clock budget: made for a lent GPU (the
learner is tiny, so several runs share one card), where thousands of steps take minutes, to choose what
the 20-minute CPU recipe (``recipes/learner_cpu/cold.yaml``, ``bench/bench_learning.py``) should be.
Results are the same computation as on a CPU (same model, data, loss), only faster; what transfers is
*samples seen*, not wall time.

Every run is ``train_cold`` with a recipe derived from ``recipes/learner_cpu/cold.yaml`` and the project's own
periodic evaluation (``eval_pairs`` / ``eval_steps``, written to the run's ``train_log.jsonl`` as it happens),
so a run stopped at the deadline keeps every evaluation it finished. Everything lands in ``OUT/sweep.json``
and a printed table.

    python bench/sweep_learning.py --out OUT [--budget-s 420] [--runs q3p_3e4,q2_3e4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224

# name -> (model, recipe overrides). Models: q2 = qwen2_vl learner, q3r = qwen3_vl learner with its random
# position table (RMS 0.02), q3p / q3p2 = the same with the Fourier position code at RMS 1 / 2.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "q2_3e4": ("q2", {}),
    "q3r_3e4": ("q3r", {}),
    "q3p_3e4": ("q3p", {}),
    "q3p_1e3": ("q3p", {"learning_rate": 1e-3}),
    "q3p_3e4_vision": ("q3p", {"freeze_vision": False}),
    "q3p_6e4_b32": ("q3p", {"learning_rate": 6e-4, "per_device_train_batch_size": 32}),
    "q3p_3e4_empty": ("q3p", {"think": "empty"}),
    "q3p2_3e4": ("q3p2", {}),
    "q2_1e3": ("q2", {"learning_rate": 1e-3}),
}
MODELS = {
    "q2": ("qwen2_vl", None),
    "q3r": ("qwen3_vl", 0.0),
    "q3p": ("qwen3_vl", 1.0),
    "q3p2": ("qwen3_vl", 2.0),
}


def recipe_for(name: str, work: Path, max_steps: int, eval_steps: int) -> Path:
    import yaml

    base = yaml.safe_load((ROOT / "recipes" / "learner_cpu" / "cold.yaml").read_text(encoding="utf-8"))
    model, extra = RUNS[name]
    base.update(
        model=str(work / "models" / model),
        lr_scheduler_type="constant_with_warmup",  # a curve that a deadline can cut anywhere
        warmup_steps=50,
        max_steps=max_steps,
        save_steps=max_steps,
        logging_steps=50,
        eval_steps=eval_steps,
        eval_batch_size=50,
        eval_max_new_tokens=48,
        dataloader_num_workers=1,
    )
    base.update(extra)
    path = work / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    return path


def one(name: str, work: Path) -> None:
    from differad_cli.train import train_cold

    data = work / "data"
    train_cold(
        output_dir=work / "runs" / name,
        recipe=work / "recipes" / f"{name}.yaml",
        options={
            "pairs": str(data / "train" / "pairs.jsonl"),
            "eval_pairs": str(data / "held" / "pairs.jsonl"),
        },
    )


def curve(run: Path) -> dict[str, Any]:
    """Loss and evaluation rows of a run's train_log.jsonl (whatever it reached)."""
    rows = []
    log = run / "train_log.jsonl"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    evals = [
        {"step": r.get("step"), **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
        for r in rows
        if any(k.startswith("eval/") for k in r)
    ]
    loss = [(r.get("step"), r["loss"]) for r in rows if "loss" in r]
    step_s = [r["step_time"] for r in rows if "step_time" in r]
    return {
        "evals": evals,
        "loss": loss[-3:],
        "steps": max((r.get("step") or 0 for r in rows), default=0),
        "step_time": step_s[-3:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="Data, models and runs (default: OUT/../sweep).")
    ap.add_argument("--budget-s", type=float, default=420.0, help="Wall time for the training runs.")
    ap.add_argument("--runs", default=",".join(list(RUNS)[:8]))
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-held", type=int, default=200)
    ap.add_argument("--max-steps", type=int, default=8000)
    ap.add_argument("--eval-steps", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1, help="Torch threads per run.")
    ap.add_argument("--quick", action="store_true", help="A smoke run: few pairs and steps.")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = a.work or a.out.parent / "sweep"
    if a.one:
        one(a.one, work)
        return 0
    if a.quick:
        a.n_train, a.n_held, a.max_steps, a.eval_steps = 32, 12, 6, 3
    names = [n for n in a.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        print(f"unknown runs: {', '.join(unknown)} (choose from: {', '.join(RUNS)})", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_learning import make_data
    from differad_cli.core.records import read_pairs
    from differad_cli.eval.baselines import constant_baselines
    from differad_cli.models.tiny import build_tiny_model

    train, held = make_data(work, a.n_train, a.n_held, seed=0)
    for key in {RUNS[n][0] for n in names}:
        family, code = MODELS[key]
        folder = work / "models" / key
        if not (folder / "config.json").exists():
            build_tiny_model(folder, family=family, preset_name="learner", position_code=code)
    baselines = constant_baselines(read_pairs(train), read_pairs(held))
    print(f"data and models: {time.perf_counter() - t0:.0f} s", flush=True)

    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
    procs = {}
    for name in names:
        recipe_for(name, work, a.max_steps, a.eval_steps)
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed when the run ends
        cmd = [sys.executable, __file__, "--out", str(a.out), "--work", str(work), "--one", name]
        procs[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    start = time.perf_counter()
    while time.perf_counter() - start < a.budget_s and any(p.poll() is None for p, _ in procs.values()):
        time.sleep(2)
    wall = time.perf_counter() - start
    for p, _log in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p, log in procs.values():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()

    result = {"wall_s": wall, "baselines": baselines, "runs": {}}
    for name in names:
        c = curve(work / "runs" / name)
        c["recipe"] = RUNS[name][1]
        c["model"] = RUNS[name][0]
        c["log_tail"] = (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-1500:]
        result["runs"][name] = c
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "sweep.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(
        f"runs for {wall:.0f} s; constant answers: "
        + ", ".join(f"{k} Acc@0.3 {v.get('acc_0.3', 0):.3f}" for k, v in baselines.items())
    )
    print("| run | steps | step | Acc@0.3 | mIoU | image F1 | invalid |\n|---|---|---|---|---|---|---|")
    for name, c in result["runs"].items():
        for e in c["evals"]:
            print(
                f"| {name} | {c['steps']} | {e.get('step')} | {e.get('acc_0.3', float('nan')):.3f} | "
                f"{e.get('miou', float('nan')):.3f} | {e.get('image_f1', float('nan')):.3f} | "
                f"{e.get('invalid', float('nan'))} |"
            )
        if not c["evals"]:
            tail = c["log_tail"][-200:].replace("\n", " ")
            print(f"| {name} | {c['steps']} | - | - | - | - | - |  {tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
