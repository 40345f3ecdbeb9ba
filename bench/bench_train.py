"""Benchmark: a DifferAD GRPO step vs a plain TRL GRPOTrainer step on the tiny offline model, side by side.

Goal: with resampling off, the DifferAD step (difficulty weights, batch IoU/Acc logging, reward caching) costs
<= 1.1x the plain step. Runs are interleaved (plain, differad, plain, ...) and repeated; medians of per-step
times are compared, the first step of each run is warm-up and dropped. With resampling on, the step cost is
reported against the share of degenerate groups (controlled by a reward that is constant on chosen groups).
Also reports the peak RSS of this process (all tiny CPU runs). Exits 1 when the 1.1x goal is missed.

    python bench/bench_train.py [--rounds 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GOAL = 1.10
ARGS = {
    "per_device_train_batch_size": 8,
    "num_generations": 4,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 32,
    "precision": "fp32",
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
    "learning_rate": 1e-5,
}


def _step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def controlled_reward(degenerate_ids: set[str]) -> Any:
    """Constant 0 on the chosen pairs' groups (degenerate whatever is generated), varied elsewhere."""
    from differad_cli.train.rewards import completion_text

    def reward(completions: list, id: list, **_: Any) -> list[float]:  # TRL passes the dataset column "id"
        return [
            0.0 if i in degenerate_ids else zlib.crc32(completion_text(c).encode()) / 2**32
            for c, i in zip(completions, id, strict=True)
        ]

    return reward


def run(
    kind: str, model_dir: Path, pairs_path: Path, out: Path, steps: int, **over: Any
) -> tuple[list[float], dict]:
    """One run of ``steps`` steps: per-step seconds (warm-up dropped) and mean resampling logs."""
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from differad_cli.core.records import read_pairs
    from differad_cli.models.load import resize_params
    from differad_cli.train.configs import build_configs
    from differad_cli.train.grpo import rl_dataset
    from differad_cli.train.grpo_trainer import DifferadGRPOTrainer
    from differad_cli.train.model import left_padding, load_trainable, suppress_vision_tokens
    from differad_cli.train.rewards import get_reward

    extra_rewards = over.pop("extra_rewards", [])
    cfg, args = build_configs(
        "rl", recipe=None, cli={**ARGS, "max_steps": steps, **over}, output_dir=str(out)
    )
    model, proc = load_trainable(model_dir, cfg, args)
    suppress_vision_tokens(args, model)
    left_padding(proc)
    ds = rl_dataset(read_pairs(pairs_path), cfg, "qwen2_vl", resize_params(proc), args.seed)
    rewards = [get_reward(n) for n in cfg.rewards] + extra_rewards
    timer = _step_timer()
    common = {
        "model": model,
        "reward_funcs": rewards,
        "args": args,
        "train_dataset": ds,
        "processing_class": proc,
        "callbacks": [timer],
    }
    if kind == "plain":
        trainer = GRPOTrainer(**common)
    else:
        trainer = DifferadGRPOTrainer(**common, max_resample=cfg.max_resample, tau=cfg.tau)
    trainer.remove_callback(PrinterCallback)  # both kinds alike: no log dicts on stdout
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    keys = {k for h in logs for k in h if k.startswith("resample/")}
    return timer.times[1:], {k: statistics.mean(h[k] for h in logs if k in h) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4, help="Interleaved repetitions of each run.")
    ap.add_argument("--steps", type=int, default=6, help="Steps per run (the first is warm-up).")
    opts = ap.parse_args()

    from differad_cli.core import console
    from differad_cli.models.tiny import build_tiny_model
    from differad_cli.synth.config import SynthConfig
    from differad_cli.synth.run import synthesize

    console.set_verbosity(console.QUIET)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    model_dir = build_tiny_model(tmp / "model", seed=0)
    synthesize(SynthConfig(out=tmp / "data", n=16, size=64, seed=0))
    pairs_path = tmp / "data" / "pairs.jsonl"

    plain: list[float] = []
    differad: list[float] = []
    for r in range(opts.rounds):  # ABBA order, so drift in machine load hits both sides alike
        order = ("plain", "differad") if r % 2 == 0 else ("differad", "plain")
        for kind in order:
            times = run(kind, model_dir, pairs_path, tmp / f"{kind}{r}", opts.steps, max_resample=0)[0]
            (plain if kind == "plain" else differad).extend(times)
    mp, md = statistics.median(plain), statistics.median(differad)
    ratio = md / mp
    print(
        f"resampling off: plain GRPOTrainer step {mp * 1e3:.1f} ms, DifferAD step {md * 1e3:.1f} ms "
        f"(medians of {len(plain)} / {len(differad)} steps) -> ratio {ratio:.3f} (goal <= {GOAL})"
    )

    from differad_cli.core.records import read_pairs

    ids = [p.id for p in read_pairs(pairs_path)]
    print("resampling on (max_resample 2), each beside a plain GRPOTrainer run with the same rewards:")
    print(f"{'target':>7} {'degenerate':>10} {'rounds':>7} {'plain ms':>9} {'differad ms':>12} {'ratio':>6}")
    for share in (0.0, 0.25, 0.5, 1.0):
        chosen = set(ids[: round(share * len(ids))])
        same = {"rewards": ["format"]}
        base, _ = run(
            "plain",
            model_dir,
            pairs_path,
            tmp / f"rp{share}",
            opts.steps,
            **same,
            extra_rewards=[controlled_reward(chosen)],
        )
        times, log = run(
            "differad",
            model_dir,
            pairs_path,
            tmp / f"r{share}",
            opts.steps,
            max_resample=2,
            **same,
            extra_rewards=[controlled_reward(chosen)],
        )
        b, m = statistics.median(base), statistics.median(times)
        print(
            f"{share:>7.2f} {log.get('resample/degenerate_before', float('nan')):>10.2f} "
            f"{log.get('resample/rounds', float('nan')):>7.2f} {b * 1e3:>9.1f} {m * 1e3:>12.1f} {m / b:>6.2f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of all tiny CPU runs in this process: {rss_mb:.0f} MB")
    if ratio > GOAL:
        print(
            f"FAIL: DifferAD step costs {ratio:.3f}x a plain GRPOTrainer step (goal <= {GOAL})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
