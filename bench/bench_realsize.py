"""Benchmark: each Qwen-VL family's smallest real configuration, random weights, on this CPU machine.

Why: the tiny model proves the code paths, not what a real-size model costs. For Qwen2-VL-2B, Qwen2.5-VL-3B
and Qwen3-VL-2B (``differad tiny-model OUT --family F --preset real``) this runs, through the CLI, one LoRA
cold-start step, one LoRA GRPO step (one prompt, G = 2, 8 new tokens, two 448x448 images) and one
``predict`` of a 448x448 pair, and reports image tokens per pair, seconds per step (TRL's ``step_time`` for
GRPO, ``train_runtime`` for one SFT step: warm-up included, there is only one step), predict latency
(``elapsed_ms``: the model load excluded) and peak memory of each subprocess (its process tree's summed RSS
sampled every 0.25 s, and getrusage's largest single child so far). Recipes: recipes/realsize_cpu/.

Precision, measured first: this CPU (AVX2, no bf16 instructions) ran a 256x2048x2048 matmul at 36 GFLOP/s
in fp32 and 0.2 GFLOP/s in bf16 (emulated, 180x slower; 2026-11-27): bf16 compute is not feasible here, fp32
is, where it fits in memory. The benchmark times both matmuls again, then per family computes in fp32 when
fp32 is faster and its weights (4 bytes x parameters, +15% and 1.5 GiB for the loader, LoRA state and
activations with gradient checkpointing) fit in the available memory; otherwise in bf16 when bf16 is the
faster, else the family is skipped and says why (``--dtype`` forces one). Qwen2.5-VL-3B in fp32 needs
~18.8 GiB: it runs only when the other users of the machine leave that much. The weights are written in
bf16 (half the disk and write time) and loaded in the compute dtype: the training commands get
``--precision`` (with LoRA the frozen base is loaded in it), predict gets ``--dtype``.

    python bench/bench_realsize.py [--families qwen2_vl,qwen2_5_vl,qwen3_vl] [--out /tmp/realsize]
    python bench/bench_realsize.py --size tiny       # today's tiny Qwen2-VL (before --family/--preset exist)

Not a CI test: a real-size family takes minutes per step on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import (
    Profile,
    Runner,
    Sampler,
    fmt,
    image_tokens,
    read_log,
    safetensors_params,
)

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
PARAMS_B = {"qwen2_vl": 2.21, "qwen2_5_vl": 3.75, "qwen3_vl": 2.13}  # published totals, vision included
COLD, GRPO = "recipes/realsize_cpu/cold.yaml", "recipes/realsize_cpu/grpo.yaml"
LIMITS = {k: (3600.0, 5.0) for k in ("build", "synth", "cold", "rl", "predict")}


def matmul_gflops(dtype_name: str, n: int = 128, k: int = 2048, repeat: int = 1) -> float:
    """GFLOP/s of an (n x k) @ (k x k) matmul in this process (both cores)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, k, dtype=dtype), torch.randn(k, k, dtype=dtype)
    a @ b  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n * k * k * repeat / (time.perf_counter() - t) / 1e9


def choose_dtype(family: str, forced: str | None, speed: dict[str, float]) -> tuple[str | None, str]:
    """(compute dtype or None to skip, why): the faster dtype where its weights fit in available memory."""
    if forced:
        return forced, "forced"
    import psutil

    avail = psutil.virtual_memory().available / 2**30
    need = {b: PARAMS_B.get(family, 0.0) * n * 1.15 + 1.5 for b, n in (("fp32", 4), ("bf16", 2))}
    fast = "fp32" if speed["float32"] >= speed["bfloat16"] else "bf16"
    if need[fast] < avail:
        return fast, f"{fast} is faster here and needs ~{need[fast]:.1f} of {avail:.1f} GiB available"
    return None, f"{fast} (the faster) needs ~{need[fast]:.1f} GiB, {avail:.1f} GiB available: skipped"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("real", "tiny"), default="real")
    ap.add_argument("--families", default=None, help="comma-separated (default: all three; tiny: qwen2_vl)")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default=None, help="default: measured choice")
    ap.add_argument("--px", type=int, default=448, help="image side of the pairs")
    ap.add_argument("--out", type=Path, default=None, help="folder for realsize.json and realsize.log")
    ap.add_argument("--work", type=Path, default=None, help="models, data, runs (default: a temp folder)")
    args = ap.parse_args(argv)
    real = args.size == "real"
    families = (args.families or ",".join(FAMILIES if real else ("qwen2_vl",))).split(",")
    out = args.out or Path(tempfile.mkdtemp(prefix="differad-realsize-out-"))
    work = args.work or Path(tempfile.mkdtemp(prefix="differad-realsize-"))
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    prof = Profile(
        size=args.size, families=families, train_n=4, train_px=args.px, predict_n=4, predict_px=args.px,
        batch1_n=1, batch_size=1, cold_steps=1, rl_steps=1, predict_max_new_tokens=8, accelerate_config=None,
        grad_accum=None, budget_s=6 * 3600.0, limits=LIMITS,
    )  # fmt: skip
    runner = Runner(prof, work, out, Sampler(gpu=False), log="realsize.log")
    speed = {d: round(matmul_gflops(d), 1) for d in ("float32", "bfloat16")}
    print(
        f"matmul 128x2048x2048 on this CPU: fp32 {speed['float32']}, bf16 {speed['bfloat16']} GFLOP/s",
        flush=True,
    )
    data = work / "data"
    synth = runner.cli("synth", "--out", str(data), "--n", "4", "--size", str(args.px), "-q")
    st = runner.run("synth", synth, "synth", [])
    if st.status != "ok":
        return 1
    pairs = data / "pairs.jsonl"
    first = json.loads(pairs.read_text("utf-8").splitlines()[0])
    result: dict[str, Any] = {"size": args.size, "matmul_gflops": speed, "image_px": args.px, "families": {}}
    for fam in families:
        dtype, why = choose_dtype(fam, args.dtype, speed) if real else ("fp32", "tiny model")
        res: dict[str, Any] = {"dtype": dtype, "dtype_why": why}
        result["families"][fam] = res
        print(f"[{fam}] compute dtype {dtype}: {why}", flush=True)
        if dtype is None:
            continue
        model = work / "models" / fam
        build = runner.cli("tiny-model", str(model))
        if real:
            build += ["--family", fam, "--preset", "real", "--dtype", "bf16", "--device", "cpu"]
        st = runner.run(f"{fam}-build", build, "build", [], family=fam)
        if st.status != "ok":
            continue
        weights = list(model.glob("*.safetensors"))
        res["params_m"] = round(sum(safetensors_params(p) for p in weights) / 1e6, 1)
        res["image_tokens"] = image_tokens(model, args.px)
        train = ["--pairs", str(pairs), "--model", str(model), "--precision", dtype]
        cold = work / "runs" / fam / "cold"
        cmd = runner.cli("train-cold", *train, "--output-dir", str(cold), "--recipe", COLD)
        runner.run(f"{fam}-cold", cmd, "cold", [], family=fam)
        summary = next((r for r in read_log(cold / "train_log.jsonl") if "train_runtime" in r), {})
        res["cold_step_s"] = summary.get("train_runtime")
        rl = work / "runs" / fam / "rl"
        rl_args = ["--num-generations", "2", "--batch-size", "2", "--max-completion-length", "8"]
        cmd = runner.cli("train-rl", *train, "--output-dir", str(rl), "--recipe", GRPO, *rl_args)
        runner.run(f"{fam}-rl", cmd, "rl", [], family=fam)
        rows = read_log(rl / "train_log.jsonl")
        res["grpo_step_s"] = next((r.get("step_time") for r in rows if "step_time" in r), None)
        res["grpo_runtime_s"] = next((r.get("train_runtime") for r in rows if "train_runtime" in r), None)
        ref, tgt = (str(data / first[k]) for k in ("ref", "tgt"))
        pred = runner.cli("predict", ref, tgt, "--json", "--backend", "hf", "--model", str(model),
                          "--max-new-tokens", "8", "--dtype", dtype, "--device", "cpu")  # fmt: skip
        st = runner.run(f"{fam}-predict", pred, "predict", [], family=fam)
        log = (work / "logs" / f"{fam}-predict.log").read_text("utf-8", errors="replace")
        line = next((ln for ln in log.splitlines() if ln.startswith("{") and "elapsed_ms" in ln), None)
        res["predict_ms"] = json.loads(line)["elapsed_ms"] if line else None
        stages = {s.name.split("-", 1)[1]: s for s in runner.stages if s.family == fam}
        res["stages"] = {
            k: {"status": s.status, "seconds": s.seconds, "peak_rss_mib": s.peak_rss_mib,
                "max_child_rss_mib": s.max_child_rss_mib}
            for k, s in stages.items()
        }  # fmt: skip
    failures = [s.name for s in runner.stages if s.status != "ok"]
    result["failures"] = failures
    (out / "realsize.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    cols = (
        "family",
        "dtype",
        "params M",
        "img tok/pair",
        "cold s/step",
        "GRPO s/step",
        "predict ms",
        "peak RSS MiB",
    )
    print("\n" + "".join(f"{c:>14}" for c in cols))
    for fam, r in result["families"].items():
        peak = max((s["peak_rss_mib"] or 0.0 for s in r.get("stages", {}).values()), default=None)
        tok = (r.get("image_tokens") or {}).get("per_pair")
        row = (fam, r["dtype"] or "skipped", fmt(r.get("params_m")), fmt(tok), fmt(r.get("cold_step_s")),
               fmt(r.get("grpo_step_s")), fmt(r.get("predict_ms")), fmt(peak))  # fmt: skip
        print("".join(f"{c:>14}" for c in row))
    print(f"\n{out / 'realsize.json'}; failed stages: {', '.join(failures) or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
