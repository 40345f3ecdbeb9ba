r"""The prepared GPU check: real-size random-weight Qwen-VL models through the CLI on one GPU, in one command.

A lent GPU machine gives a session a few minutes once, so everything is in one script of at most ~8 minutes:
it drives ``differad`` exactly as users run it (``python -m differad_cli`` subprocesses; no differad import)
and writes every figure to ``OUT/bench_gpu.json`` (plus all stage output in ``OUT/bench_gpu.log``):

1. ``tiny-model --family F --preset real --dtype bf16 --device cuda``: a real-size random-weight model
   (default F = qwen2_5_vl, Qwen2.5-VL-3B; ``--families qwen2_5_vl,qwen3_vl`` adds Qwen3-VL-2B, if time
   allows: about 3 minutes more).
2. ``synth``: 448x448 training pairs and 800x800 pairs for predict.
3. ``predict --backend hf`` on 800x800 pairs, batch 1 and batched: milliseconds per pair between the first
   and the last flushed chunk of 16 records (model load and the warm-up chunk excluded). Random weights never
   stop early, so every answer runs to ``--predict-max-new-tokens`` (32 by default, about a box answer).
4. ``train-cold`` (SFT) and ``train-rl`` (GRPO) with recipes/gpu_check/*.yaml through accelerate + DeepSpeed
   ZeRO-2 on one GPU (``--accelerate-config recipes/accelerate/zero2.yaml --num-processes 1``; no optimizer
   section, so the HF Trainer's torch AdamW is used and no CUDA op is compiled): bf16, gradient
   checkpointing, frozen vision, LoRA r16/alpha32 on q,k,v,o,gate,up,down of the language model, GRPO with
   G = 8, temperature 0.9, 256 new tokens, resampling (2 rounds) and difficulty weighting on.
   Seconds per step: the median gap between consecutive step lines of the run's ``train_log.jsonl`` (written
   as each step ends; the first step is warm-up and dropped), and for GRPO also TRL's ``step_time``
   (generation + loss + backward of one optimizer step). Generated tokens/s in GRPO:
   ``completions/mean_length`` x completions per step / ``step_time``, and an estimate that counts the
   resampled generations too (x (1 + rounds x degenerate share)).
5. Peak GPU memory per stage: the whole card's used memory (NVML, else ``nvidia-smi``) sampled every 0.25 s
   while the stage runs, so CUDA context and the caching allocator's reserve are included; the idle
   baseline is recorded beside it. Peak RSS: the stage's process tree, summed, sampled likewise (psutil).
   Image tokens per pair: Qwen's ``smart_resize`` with the model folder's processor settings.

The published anchors are printed beside the figures with the ratio (different models and hardware: they
place the figures, they are not goals): VLM-R1 25-30 s/step (7B, G = 7, 8xA100), EasyR1 ~1,800 tokens/s per
H100 (Qwen2.5-VL-3B), DifferAD-R1 ~100 ms per 800x800 pair (2B model, one RTX 4090).

Every stage has a timeout under one overall deadline (``--budget-s``); a failed stage is recorded (exit code,
stderr tail) and the next stage runs where it can; the exit code is 1 when any stage failed.

On the GPU machine (trl, deepspeed, datasets and their needs travel as wheels in .whl/, ``make gpu-wheels``;
device tool: carry [".whl"], timeout_s 560):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 && \
        python3 bench/bench_gpu.py --out $OUT

Without a GPU (``--size tiny``, the default when torch sees no CUDA) the same stages run on today's tiny
offline Qwen2-VL in about a minute, without accelerate (``--accelerate-config`` to force it):

    python bench/bench_gpu.py --size tiny --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {
    "grpo_s_per_step": (27.5, "VLM-R1: 25-30 s/step, Qwen2.5-VL-7B, G = 7, 8xA100"),
    "grpo_tokens_per_s": (1800.0, "EasyR1: ~1,800 tokens/s per H100, Qwen2.5-VL-3B"),
    "predict_ms_per_pair": (100.0, "DifferAD-R1: ~100 ms per 800x800 pair, 2B model, one RTX 4090"),
}
PACKAGES = ("torch", "transformers", "trl", "deepspeed", "accelerate", "peft", "datasets", "pydantic")
CARRIED = ("trl", "datasets", "deepspeed", "pydantic", "pydantic_core", "multiprocess", "typing_inspection")
COLD_RECIPE, GRPO_RECIPE = "recipes/gpu_check/cold.yaml", "recipes/gpu_check/grpo.yaml"
LOG_CAP = 60_000  # characters of each stage's output kept in bench_gpu.log (head + tail)


@dataclass
class Profile:
    """Everything that differs between the GPU check (real) and its CPU rehearsal (tiny)."""

    size: str
    families: list[str]
    train_n: int
    train_px: int
    predict_n: int
    predict_px: int
    batch1_n: int
    batch_size: int
    cold_steps: int
    rl_steps: int
    predict_max_new_tokens: int
    accelerate_config: str | None
    grad_accum: int | None  # None: the recipe's
    budget_s: float
    extra_train_args: list[str] = field(default_factory=list)
    # stage -> (cap, floor): a stage gets at most cap seconds, and the later stages' floors stay reserved
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)


REAL_LIMITS = {
    "device": (60, 10), "synth": (90, 15), "build": (150, 40), "predict_b1": (120, 40),
    "predict_batched": (90, 30), "cold": (150, 60), "rl": (300, 90),
}  # fmt: skip
TINY_LIMITS = {k: (180, 5) for k in REAL_LIMITS}


def profile(args: argparse.Namespace) -> Profile:
    real = args.size == "real"
    families = args.families.split(",") if args.families else (["qwen2_5_vl"] if real else ["qwen2_vl"])
    accel = args.accelerate_config
    if accel is None:
        accel = "recipes/accelerate/zero2.yaml" if real else ""
    return Profile(
        size=args.size, families=[f.strip() for f in families if f.strip()],
        train_n=64 if real else 16, train_px=448 if real else 64,
        predict_n=48 if real else 32, predict_px=800 if real else 128,
        batch1_n=24 if real else 32, batch_size=16,
        # sized from the first H100 run (2026-11-27): cold ~50 s load + 14 s/step, GRPO ~50 s load + ~27 s per
        # step without resampling (random weights: every group resampled twice, ~3x that)
        cold_steps=args.cold_steps or (5 if real else 3), rl_steps=args.rl_steps or (2 if real else 3),
        predict_max_new_tokens=args.predict_max_new_tokens or (32 if real else 8),
        accelerate_config=accel or None, grad_accum=None if real else 1,
        budget_s=args.budget_s or (500.0 if real else 600.0),
        # the tiny CPU rehearsal: fp32 (TRL refuses bf16 without a GPU), one micro-batch per step
        extra_train_args=[] if real else ["--precision", "fp32"],
        limits=REAL_LIMITS if real else TINY_LIMITS,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- measuring


class Sampler:
    """Card memory in use (NVML or nvidia-smi) and a process tree's summed RSS, polled by the stage loop."""

    def __init__(self, gpu: bool) -> None:
        self.nvml: Any = None
        self.smi = gpu and shutil.which("nvidia-smi") is not None
        if gpu:
            try:
                import pynvml

                pynvml.nvmlInit()
                self.nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
            except Exception:
                self.nvml = None
        try:
            import psutil

            self.psutil: Any = psutil
        except ImportError:
            self.psutil = None
        self.method = "nvml" if self.nvml else "nvidia-smi" if self.smi else None

    def gpu_mib(self) -> float | None:
        if self.nvml:
            mod, handle = self.nvml
            return mod.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        if self.smi:
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True, text=True, timeout=5,
                )  # fmt: skip
                return float(out.stdout.strip().splitlines()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None
        return None

    def tree_rss_mib(self, pid: int) -> float | None:
        if self.psutil is None:
            return None
        try:
            root = self.psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except self.psutil.Error:
            return None
        total = 0
        for p in procs:
            with contextlib.suppress(self.psutil.Error):
                total += p.memory_info().rss
        return total / 2**20


@dataclass
class Stage:
    name: str
    family: str | None
    argv: list[str]
    status: str = "not run"  # ok | failed | timeout | skipped
    rc: int | None = None
    seconds: float | None = None
    timeout_s: float | None = None
    peak_gpu_mib: float | None = None
    gpu_baseline_mib: float | None = None
    peak_rss_mib: float | None = None
    max_child_rss_mib: float | None = None  # getrusage(RUSAGE_CHILDREN): largest single process so far
    error_tail: str | None = None
    watch: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, records in file)


def count_records(paths: tuple[Path, ...], key: str) -> int:
    """Complete JSONL records holding ``key`` in the first of ``paths`` that exists (files that another
    process appends to; predict's partial file is replaced by the final one at the end)."""
    for path in paths:
        try:
            text = path.read_text("utf-8", errors="replace")
        except OSError:
            continue
        return sum(1 for line in text.splitlines() if line.endswith("}") and key in line)
    return 0


class Runner:
    """Runs stages one after another under one deadline and keeps their records and output."""

    def __init__(
        self, prof: Profile, work: Path, out: Path, sampler: Sampler, log: str = "bench_gpu.log"
    ) -> None:
        self.prof, self.work, self.out, self.sampler = prof, work, out, sampler
        self.deadline = time.monotonic() + prof.budget_s
        self.stages: list[Stage] = []
        self.log = out / log
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def timeout_for(self, key: str, later: list[str]) -> float:
        cap, floor = self.prof.limits[key]
        reserve = sum(self.prof.limits[k][1] for k in later)
        return max(floor, min(cap, self.deadline - time.monotonic() - reserve))

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "differad_cli", *args]

    def run(self, name: str, argv: list[str], key: str, later: list[str], *, family: str | None = None,
            watch: tuple[Path, ...] = (), watch_key: str = '"loss"',
            label: str | None = None) -> Stage:  # fmt: skip
        st = Stage(name, family, argv)
        self.stages.append(st)
        left = self.deadline - time.monotonic()
        if left < 5:
            st.status, st.error_tail = "skipped", "overall budget spent"
            print(f"[{name}] skipped: budget spent", flush=True)
            return st
        st.timeout_s = round(min(self.timeout_for(key, later), left), 1)
        st.gpu_baseline_mib = self.sampler.gpu_mib()
        shown = label or " ".join(argv[2:] if argv[:2] == [sys.executable, "-m"] else argv)
        print(f"[{name}] {shown}", flush=True)
        log_file = self.work / "logs" / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with log_file.open("w", encoding="utf-8") as lf:
            proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env,
                                    start_new_session=True)  # fmt: skip
            last_sample, last_count = 0.0, -1
            while True:
                rc = proc.poll()
                now = time.monotonic()
                if now - last_sample >= 0.25 or rc is not None:
                    last_sample = now
                    gpu = self.sampler.gpu_mib()
                    if gpu is not None:
                        st.peak_gpu_mib = max(st.peak_gpu_mib or 0.0, gpu)
                    rss = self.sampler.tree_rss_mib(proc.pid) if rc is None else None
                    if rss is not None:
                        st.peak_rss_mib = max(st.peak_rss_mib or 0.0, rss)
                if watch:
                    n = count_records(watch, watch_key)
                    if n != last_count:
                        st.watch.append((round(now - t0, 3), n))
                        last_count = n
                if rc is not None:
                    break
                if now - t0 > st.timeout_s:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    rc = None
                    break
                time.sleep(0.05)
        st.seconds = round(time.monotonic() - t0, 2)
        st.max_child_rss_mib = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        st.rc = proc.returncode
        text = log_file.read_text("utf-8", errors="replace")
        if rc is None:
            st.status = "timeout"
        else:
            st.status = "ok" if rc == 0 else "failed"
        if st.status != "ok":
            st.error_tail = text[-3000:]
        with self.log.open("a", encoding="utf-8") as f:
            kept = (
                text
                if len(text) <= LOG_CAP
                else text[: LOG_CAP // 4] + "\n[...]\n" + text[-LOG_CAP * 3 // 4 :]
            )
            f.write(f"\n===== {name}: {st.status} rc={st.rc} {st.seconds}s\n$ {' '.join(argv)}\n{kept}\n")
        mem = f", GPU peak {st.peak_gpu_mib:.0f} MiB" if st.peak_gpu_mib else ""
        print(f"[{name}] {st.status} in {st.seconds:.1f} s{mem}", flush=True)
        if st.status != "ok":
            print("    " + "\n    ".join(text.strip().splitlines()[-8:]), flush=True)
        return st


# ------------------------------------------------------------------------------------------- figures


def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's image resize rule (multiples of patch x merge, pixel count between the limits)."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def image_tokens(model_dir: Path, px: int) -> dict[str, Any] | None:
    """LLM tokens of one square image and of a pair, from the model folder's processor settings."""
    ip: dict[str, Any] = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        try:
            data = json.loads((model_dir / name).read_text("utf-8"))
        except (OSError, ValueError):
            continue
        ip = data.get("image_processor", data)
        break
    if not ip:
        return None
    patch, merge = int(ip.get("patch_size", 14)), int(ip.get("merge_size", 2))
    size = ip.get("size") or {}
    lo = int(ip.get("min_pixels") or size.get("shortest_edge") or 56 * 56)
    hi = int(ip.get("max_pixels") or size.get("longest_edge") or 28 * 28 * 1280)
    hb, wb = smart_resize(px, px, patch * merge, lo, hi)
    per_image = (hb // patch) * (wb // patch) // (merge * merge)
    return {"image_px": px, "resized": [wb, hb], "per_image": per_image, "per_pair": 2 * per_image}


def safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header (no weights read)."""
    with path.open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def read_log(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def step_gaps(watch: list[tuple[float, int]]) -> list[float]:
    """Seconds per step between consecutive step lines of train_log.jsonl (the first step dropped)."""
    gaps = []
    for (t0, n0), (t1, n1) in itertools.pairwise(watch):
        if n0 >= 1 and n1 > n0:
            gaps.extend([(t1 - t0) / (n1 - n0)] * (n1 - n0))
    return gaps


def train_figures(st: Stage, run_dir: Path, kind: str, completions_per_step: int) -> dict[str, Any]:
    rows = read_log(run_dir / "train_log.jsonl")
    steps = [r for r in rows if "loss" in r and "train_runtime" not in r]
    summary = next((r for r in rows if "train_runtime" in r), {})
    fig: dict[str, Any] = {
        "status": st.status,
        "steps_logged": len(steps),
        "s_per_step": median(step_gaps(st.watch)),
        "train_runtime_s": summary.get("train_runtime"),
        "loss_last": steps[-1].get("loss") if steps else None,
    }
    if kind == "rl":
        times = [r["step_time"] for r in steps[1:] if isinstance(r.get("step_time"), (int, float))]
        lengths = [r.get("completions/mean_length") for r in steps[1:]]
        deg = [r.get("resample/degenerate_before", 0.0) for r in steps[1:]]
        rounds = [r.get("resample/rounds", 0.0) for r in steps[1:]]
        tok = [ln * completions_per_step / t for ln, t in zip(lengths, times, strict=False) if ln and t]
        est = [
            ln * completions_per_step * (1 + (r or 0) * (d or 0)) / t
            for ln, t, d, r in zip(lengths, times, deg, rounds, strict=False)
            if ln and t
        ]
        fig.update({
            "trl_step_time_s": median(times),
            "completions_per_step": completions_per_step,
            "completion_mean_length": median([x for x in lengths if x]),
            "resample_rounds_mean": round(statistics.fmean(rounds), 3) if rounds else None,
            "degenerate_before_mean": round(statistics.fmean(deg), 3) if deg else None,
            "difficulty_weight_mean": median([r.get("difficulty/weight_mean") or 0.0 for r in steps[1:]]),
            "tokens_per_s": median(tok),
            "tokens_per_s_with_resampling_est": median(est),
        })  # fmt: skip
    return fig


def predict_figures(st: Stage, batch_size: int) -> dict[str, Any]:
    """ms per pair between the first and last flushed chunk (load and the warm-up chunk excluded)."""
    pts = [(t, n) for t, n in st.watch if n > 0]
    ms = None
    if len(pts) >= 2 and pts[-1][1] > pts[0][1]:
        ms = round((pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1]) * 1000.0, 2)
    return {"status": st.status, "batch_size": batch_size, "ms_per_pair": ms,
            "pairs_timed": (pts[-1][1] - pts[0][1]) if len(pts) >= 2 else 0,
            "first_chunk_s": pts[0][0] if pts else None}  # fmt: skip


def ratio(value: float | None, key: str) -> dict[str, Any]:
    anchor, what = ANCHORS[key]
    return {"measured": value, "anchor": anchor, "anchor_is": what,
            "ratio": round(value / anchor, 3) if value else None}  # fmt: skip


# ------------------------------------------------------------------------------------------- environment


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def preflight() -> list[str]:
    """Unmet requirements of the carried wheels (installed with --no-deps, so nothing checked them)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    problems = []
    for name in CARRIED:
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed")
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} needs {req}: missing")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{name} needs {req}: have {have}")
    return problems


DEVICE_PROBE = """
import json, time
t = time.perf_counter()
import torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if d["cuda_available"]:
    d["name"] = torch.cuda.get_device_name(0)
    d["bf16"] = torch.cuda.is_bf16_supported()
    d["total_mib"] = torch.cuda.get_device_properties(0).total_memory / 2**20
d["import_s"] = round(time.perf_counter() - t, 2)
t = time.perf_counter()
for m in ("transformers", "trl", "deepspeed", "datasets", "peft", "accelerate"):
    try:
        __import__(m)
    except Exception as e:
        d.setdefault("import_errors", {})[m] = repr(e)[:300]
d["import_stack_s"] = round(time.perf_counter() - t, 2)
print("DEVICE " + json.dumps(d))
"""


def probe_device(runner: Runner) -> dict[str, Any]:
    argv = [sys.executable, "-c", DEVICE_PROBE]
    st = runner.run("device", argv, "device", [], label="torch, CUDA, imports")
    log = (runner.work / "logs" / "device.log").read_text("utf-8", errors="replace")
    line = next((ln for ln in log.splitlines() if ln.startswith("DEVICE ")), None)
    return json.loads(line[7:]) if line else {"error": st.error_tail}


# ------------------------------------------------------------------------------------------- the check


def head_manifest(src: Path, dst: Path, n: int) -> None:
    lines = [ln for ln in src.read_text("utf-8").splitlines() if ln.strip()]
    dst.write_text("\n".join(lines[:n]) + "\n", "utf-8")


def run_family(runner: Runner, fam: str, data: dict[str, Path], later_families: int) -> dict[str, Any]:
    prof, work = runner.prof, runner.work
    real = prof.size == "real"
    fam_later = ["build", "predict_b1", "predict_batched", "cold", "rl"] * later_families
    res: dict[str, Any] = {}
    model = work / "models" / fam
    shutil.rmtree(model, ignore_errors=True)
    argv = runner.cli("tiny-model", str(model))
    if real:
        argv += ["--family", fam, "--preset", "real", "--dtype", "bf16", "--device", "cuda"]
    elif fam != "qwen2_vl":
        argv += ["--family", fam]
    st = runner.run(f"{fam}-build", argv, "build",
                    ["predict_b1", "predict_batched", "cold", "rl", *fam_later], family=fam)  # fmt: skip
    res["build"] = {"status": st.status, "seconds": st.seconds}
    if st.status != "ok":
        return res
    weights = list(model.glob("*.safetensors"))
    res["build"]["disk_mb"] = round(sum(p.stat().st_size for p in weights) / 1e6, 1)
    res["build"]["params_m"] = round(sum(safetensors_params(p) for p in weights) / 1e6, 2)
    res["image_tokens"] = {
        "train": image_tokens(model, prof.train_px),
        "predict": image_tokens(model, prof.predict_px),
    }
    dev = ["--dtype", "bf16", "--device", "cuda"] if real else ["--device", "cpu"]
    pred = work / "pred" / fam
    shutil.rmtree(pred, ignore_errors=True)
    for key, manifest, bs in (
        ("predict_b1", data["b1"], 1),
        ("predict_batched", data["pred"], prof.batch_size),
    ):
        out = pred / f"{key}.jsonl"
        later = ["cold", "rl", *fam_later] if key == "predict_batched" else ["predict_batched", "cold", "rl"]
        argv = runner.cli(
            "predict", "--pairs", str(manifest), "--out", str(out), "--backend", "hf", "--model", str(model),
            "--batch-size", str(bs), "--max-new-tokens", str(prof.predict_max_new_tokens), "--no-resume",
            *dev,
        )  # fmt: skip
        watch = (out, pred / f".{out.name}.partial")
        st = runner.run(f"{fam}-{key}", argv, key, later, family=fam, watch=watch, watch_key='"id"')
        res[key] = predict_figures(st, bs)
    accel = (
        ["--accelerate-config", prof.accelerate_config, "--num-processes", "1"]
        if prof.accelerate_config
        else []
    )
    accum = ["--grad-accum", str(prof.grad_accum)] if prof.grad_accum else []
    cold = work / "runs" / fam / "cold"
    shutil.rmtree(cold, ignore_errors=True)
    argv = runner.cli(
        "train-cold", "--pairs", str(data["train"]), "--model", str(model), "--output-dir", str(cold),
        "--recipe", COLD_RECIPE, "--max-steps", str(prof.cold_steps),
        *accum, *prof.extra_train_args, *accel,
    )  # fmt: skip
    st = runner.run(
        f"{fam}-cold", argv, "cold", ["rl", *fam_later], family=fam, watch=(cold / "train_log.jsonl",)
    )
    res["cold"] = train_figures(st, cold, "cold", 0)
    start = cold if st.status == "ok" and (cold / "adapter_config.json").is_file() else model
    res["rl_started_from"] = "cold-start adapters" if start == cold else "base model"
    rl = work / "runs" / fam / "rl"
    shutil.rmtree(rl, ignore_errors=True)
    over = [] if real else ["--max-completion-length", "16"]
    argv = runner.cli(
        "train-rl", "--pairs", str(data["train"]), "--model", str(start), "--output-dir", str(rl),
        "--recipe", GRPO_RECIPE, "--max-steps", str(prof.rl_steps),
        *over, *accum, *prof.extra_train_args, *accel,
    )  # fmt: skip
    st = runner.run(f"{fam}-rl", argv, "rl", fam_later, family=fam, watch=(rl / "train_log.jsonl",))
    recipe = yaml.safe_load((ROOT / GRPO_RECIPE).read_text("utf-8"))
    per_step = recipe["per_device_train_batch_size"] * (
        prof.grad_accum or recipe["gradient_accumulation_steps"]
    )
    res["rl"] = train_figures(st, rl, "rl", completions_per_step=per_step)
    res["comparison"] = {
        "grpo_s_per_step": ratio(res["rl"]["s_per_step"], "grpo_s_per_step"),
        "grpo_tokens_per_s": ratio(res["rl"]["tokens_per_s"], "grpo_tokens_per_s"),
        "predict_ms_per_pair": ratio(res["predict_b1"]["ms_per_pair"], "predict_ms_per_pair"),
    }
    peaks = {s.name.split("-", 1)[1]: s for s in runner.stages if s.family == fam}
    res["peak_gpu_mib"] = {k: s.peak_gpu_mib for k, s in peaks.items()}
    res["peak_rss_mib"] = {k: s.peak_rss_mib for k, s in peaks.items()}
    return res


def synthesize(runner: Runner) -> dict[str, Path] | None:
    prof, work = runner.prof, runner.work
    paths = {}
    for key, n, px, seed in (
        ("train", prof.train_n, prof.train_px, 0),
        ("pred", prof.predict_n, prof.predict_px, 1),
    ):
        out = work / "data" / key
        shutil.rmtree(out, ignore_errors=True)
        argv = runner.cli(
            "synth", "--out", str(out), "--n", str(n), "--size", str(px), "--seed", str(seed), "-q"
        )
        st = runner.run(
            f"synth-{key}", argv, "synth", ["build", "predict_b1", "predict_batched", "cold", "rl"]
        )
        if st.status != "ok":
            return None
        paths[key] = out / "pairs.jsonl"
    paths["b1"] = paths["pred"].with_name("pairs_b1.jsonl")
    head_manifest(paths["pred"], paths["b1"], prof.batch1_n)
    return paths


def fmt(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:,.4g}{unit}"


def print_summary(result: dict[str, Any]) -> None:
    dev = result["device"]
    print(f"\n== bench_gpu ({result['size']}) on {dev.get('name', 'cpu')}: "
          + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v))  # fmt: skip
    for fam, res in result["families"].items():
        tok = (res.get("image_tokens") or {}).get("predict") or {}
        build = res.get("build", {})
        print(f"\n{fam}: {fmt(build.get('params_m'), 'M')} parameters, {fmt(build.get('disk_mb'), ' MB')}, "
              f"{tok.get('per_pair', '-')} image tokens per {tok.get('image_px', '-')}^2 pair")  # fmt: skip
        cold, rl = res.get("cold", {}), res.get("rl", {})
        print(f"  train-cold  {fmt(cold.get('s_per_step'), ' s/step')} ({cold.get('steps_logged', 0)} steps, "
              f"{cold.get('status')})")  # fmt: skip
        print(f"  train-rl    {fmt(rl.get('s_per_step'), ' s/step')} "
              f"(TRL step_time {fmt(rl.get('trl_step_time_s'), ' s')}, {rl.get('steps_logged', 0)} steps, "
              f"{rl.get('status')}); completions {rl.get('completions_per_step')} x "
              f"{fmt(rl.get('completion_mean_length'))} tokens, "
              f"resampling rounds {fmt(rl.get('resample_rounds_mean'))}")  # fmt: skip
        print(
            f"              {fmt(rl.get('tokens_per_s'), ' generated tokens/s')} "
            f"({fmt(rl.get('tokens_per_s_with_resampling_est'))} counting resampled generations, estimate)"
        )
        for key in ("predict_b1", "predict_batched"):
            p = res.get(key, {})
            print(f"  predict     batch {p.get('batch_size')}: {fmt(p.get('ms_per_pair'), ' ms/pair')} "
                  f"({p.get('pairs_timed', 0)} pairs timed, {p.get('status')})")  # fmt: skip
        print("  peak GPU MiB: " + ", ".join(f"{k} {fmt(v)}" for k, v in res.get("peak_gpu_mib", {}).items()))
        print("  peak RSS MiB: " + ", ".join(f"{k} {fmt(v)}" for k, v in res.get("peak_rss_mib", {}).items()))
        for key, c in res.get("comparison", {}).items():
            print(
                f"  vs anchor   {key}: {fmt(c['measured'])} / {c['anchor']:g} = {fmt(c['ratio'])}x  "
                f"({c['anchor_is']})"
            )
    bad = [s for s in result["stages"] if s["status"] != "ok"]
    print(f"\nstages: {len(result['stages']) - len(bad)} ok, {len(bad)} not ok"
          + "".join(f"\n  {s['name']}: {s['status']}" for s in bad))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for bench_gpu.json and bench_gpu.log")
    ap.add_argument("--size", choices=("real", "tiny"), default=None,
                    help="real (default with CUDA) or tiny (default without)")  # fmt: skip
    ap.add_argument("--families", default=None, help="comma-separated, e.g. qwen2_5_vl,qwen3_vl")
    ap.add_argument("--cold-steps", type=int, default=None)
    ap.add_argument("--rl-steps", type=int, default=None)
    ap.add_argument("--predict-max-new-tokens", type=int, default=None)
    ap.add_argument("--accelerate-config", default=None, help="'' for none (default: zero2.yaml when real)")
    ap.add_argument("--budget-s", type=float, default=None, help="overall deadline (real: 500 s)")
    ap.add_argument("--work", type=Path, default=None, help="models, data and runs (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    if args.size is None:
        probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                               capture_output=True, text=True)  # fmt: skip
        args.size = "real" if probe.stdout.strip() == "True" else "tiny"
    prof = profile(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu.log").unlink(missing_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="differad-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(gpu=prof.size == "real")
    runner = Runner(prof, work, args.out, sampler)
    result: dict[str, Any] = {
        "schema": 1, "size": prof.size, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {k: v for k, v in asdict(prof).items() if k != "limits"},
        "memory_method": {"gpu": sampler.method and f"{sampler.method}: card memory used, every 0.25 s",
                          "rss": "psutil: stage process tree, summed, sampled every 0.25 s"},
        "versions": versions(), "anchors": {k: {"value": v, "is": w} for k, (v, w) in ANCHORS.items()},
        "families": {},
    }  # fmt: skip
    result["preflight_unmet"] = preflight()
    for line in result["preflight_unmet"]:
        print(f"[preflight] {line}", flush=True)
    result["device"] = probe_device(runner)
    data = synthesize(runner)
    if data is not None:
        for i, fam in enumerate(prof.families):
            result["families"][fam] = run_family(runner, fam, data, len(prof.families) - 1 - i)
    result["stages"] = [asdict(s) for s in runner.stages]
    result["failures"] = [s.name for s in runner.stages if s.status != "ok"]
    result["ok"] = data is not None and not result["failures"]
    result["seconds_total"] = round(time.monotonic() - t_start, 1)
    (args.out / "bench_gpu.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print_summary(result)
    print(f"\n{args.out / 'bench_gpu.json'} ({result['seconds_total']} s); ok = {result['ok']}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
