"""The whole pipeline at demo size on a CPU, with no download and no input: the README's first command.

synth (train + held-out, the learner's easy generator) -> the learner (`tiny-model --preset learner`) ->
train-cold -> train-rl -> eval the constant-answer baselines, the `diff` backend and the learner untrained,
after the cold start and after RL on the held-out pairs -> predict one pair with an overlay. Every stage goes
through the same importable functions the CLI uses, and each one is skipped when its outputs are already
there, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli.core import console

# The learner's settings of recipes/learner_cpu/ (tests/test_demo.py checks they agree; the recipes are not
# part of an installed package, so the demo carries its own copy), except the budget: 250 steps instead of
# 1,500. That teaches the answer format and the grid scan's shape, not localization: the learner starts
# naming the differing rows after ~8,000 samples (1,000 steps of 8; batch 4 needs as many samples), which no
# 5-minute run on 2 cores reaches (docs/learning.md). At 2e-3 the grid learner's answers were all malformed
# after 250 steps; the recipe's 5e-4 is kept.
COLD_OPTIONS: dict[str, Any] = {
    "think": "grid",
    "paraphrase": False,
    "learning_rate": 5e-4,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 50,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "save_steps": 100,
    "logging_steps": 25,
    "precision": "fp32",
    "gradient_checkpointing": False,
}
RL_OPTIONS: dict[str, Any] = {
    "paraphrase": False,
    "rewards": ["format", "dclr"],
    "learning_rate": 1e-4,
    "num_generations": 8,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "temperature": 0.9,
    "max_completion_length": 48,
    "vision_cache_gb": 1.0,
    "save_steps": 5,
    "logging_steps": 1,
    "precision": "fp32",
    "gradient_checkpointing": False,
}


@dataclass
class DemoConfig:
    out: Path = field(default=Path("demo"), metadata={"help": "Folder for everything the demo writes."})
    n_train: int = field(default=400, metadata={"help": "Synthetic training pairs."})
    n_test: int = field(default=48, metadata={"help": "Synthetic held-out pairs (another seed)."})
    size: int = field(default=224, metadata={"help": "Synthetic image size (pixels, square)."})
    cold_steps: int = field(default=250, metadata={"help": "train-cold optimizer steps."})
    rl_steps: int = field(default=5, metadata={"help": "train-rl optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})
    family: str = field(
        default="qwen3_vl",
        metadata={
            "help": "The learner's family: qwen2_vl | qwen2_5_vl | qwen3_vl (measured by bench_learning)."
        },
    )


@dataclass
class DemoResult:
    paths: dict[str, Path]
    metrics: dict[str, dict[str, Any]]
    timings: dict[str, float]


def _done(path: Path) -> bool:
    return path.exists()


def _has_checkpoint(run: Path) -> bool:
    """Resume a training stage only when an interrupted run left a checkpoint (no warning otherwise)."""
    return any(run.glob("checkpoint-*"))


class Timings(dict[str, float]):
    """Seconds per stage, plus the stages a re-run skipped (their outputs were there): those keep the
    timing of the run that did the work, read back from demo.json, instead of the near-zero skip time."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: set[str] = set()

    def for_summary(self, summary_path: Path) -> dict[str, float]:
        """This run's timings, where a skipped stage keeps the one in the previous ``summary_path``."""
        from differad_cli.core.errors import BadInput
        from differad_cli.core.records import iter_jsonl

        try:
            rows = [obj for _, obj in iter_jsonl(summary_path)] if summary_path.is_file() else []
        except BadInput:
            rows = []
        before = rows[0].get("timings_s") if rows else None
        out = dict(self)
        for name in self.skipped:
            if isinstance(before, dict) and isinstance(before.get(name), (int, float)):
                out[name] = float(before[name])
        return out


def _stage(name: str, timings: Timings) -> Any:
    class _Timer:
        def __enter__(self) -> _Timer:
            console.info(f"[demo] {name} ...")
            self.t = time.perf_counter()
            return self

        def skip(self) -> None:
            timings.skipped.add(name)

        def __exit__(self, *exc: object) -> None:
            timings[name] = time.perf_counter() - self.t

    return _Timer()


def _paths(cfg: DemoConfig) -> dict[str, Path]:
    """Check the sizes and the output folder; where every stage writes."""
    from differad_cli.core.errors import BadInput

    if cfg.n_train < 8 or cfg.n_test < 4:
        raise BadInput("the demo needs at least --n-train 8 and --n-test 4")
    from differad_cli.core.families import FAMILIES

    if cfg.family not in FAMILIES:
        raise BadInput(f"unknown --family {cfg.family!r} (choose from: {', '.join(FAMILIES)})")
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create output folder {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise BadInput(f"output folder is not writable: {out}")
    return {
        "train_pairs": out / "data" / "train" / "pairs.jsonl",
        "test_pairs": out / "data" / "test" / "pairs.jsonl",
        "learner": out / "models" / "learner",
        "cold": out / "runs" / "cold",
        "rl": out / "runs" / "rl",
        "eval_diff": out / "eval" / "diff",
        "eval_untrained": out / "eval" / "untrained",
        "eval_cold": out / "eval" / "learner-cold",
        "eval_rl": out / "eval" / "learner-rl",
        "overlay": out / "predict" / "overlay.png",
        "predict_json": out / "predict" / "result.json",
    }


def _check_family(learner: Path, family: str) -> None:
    """A resumed demo keeps its learner: one of another family than --family is refused, not trained on."""
    from differad_cli.core.coords import detect_family
    from differad_cli.core.errors import BadInput

    found = detect_family(learner)  # an unreadable or unknown config.json is bad input too
    if found != family:
        raise BadInput(
            f"{learner} holds a {found} learner, not --family {family}: "
            "give another --out, or the family it was built with"
        )


def _data_and_model(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> None:
    from differad_cli.synth import SynthConfig, synthesize
    from differad_cli.synth.config import easy_settings

    with _stage("synth", timings) as stage:
        generated = 0
        for key, n, seed in (
            ("train_pairs", cfg.n_train, cfg.seed),
            ("test_pairs", cfg.n_test, cfg.seed + 1),
        ):
            folder = paths[key].parent
            scfg = SynthConfig(
                out=folder,
                n=n,
                size=cfg.size,
                seed=seed,
                workers=1,
                resume=_done(paths[key]),
                **easy_settings(cfg.size),  # type: ignore[arg-type]
            )
            summary = synthesize(scfg)
            generated += summary.generated
            console.info(f"  {folder}: {summary.written} pairs, {summary.anomalous_share:.0%} anomalous")
        if not generated:
            stage.skip()

    with _stage("tiny-model", timings) as stage:
        if _done(paths["learner"] / "config.json"):
            _check_family(paths["learner"], cfg.family)
            stage.skip()
        else:
            from differad_cli.models.tiny import build_tiny_model

            build_tiny_model(paths["learner"], seed=cfg.seed, preset_name="learner", family=cfg.family)


def _training(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> None:
    from differad_cli.train import train_cold, train_rl

    stages = (
        ("train-cold", train_cold, COLD_OPTIONS, paths["learner"], paths["cold"], cfg.cold_steps),
        ("train-rl", train_rl, RL_OPTIONS, paths["cold"], paths["rl"], cfg.rl_steps),
    )
    for name, train, options, model, run, steps in stages:
        with _stage(name, timings) as stage:
            if _done(run / "config.json"):
                stage.skip()
            else:
                train(
                    output_dir=run,
                    options={
                        **options,
                        "pairs": str(paths["train_pairs"]),
                        "model": str(model),
                        "max_steps": steps,
                        "seed": cfg.seed,
                        "resume": _has_checkpoint(run),
                    },
                )


def _evaluation(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> dict[str, Any]:
    from differad_cli.core.records import read_pairs
    from differad_cli.eval import EvalConfig, run_eval
    from differad_cli.eval.baselines import constant_baselines
    from differad_cli.predict import PredictOptions, predict_file

    held = read_pairs(paths["test_pairs"])
    blind = constant_baselines(read_pairs(paths["train_pairs"]), held)
    best = max(blind, key=lambda n: blind[n]["acc_0.3"])
    metrics: dict[str, dict[str, Any]] = {"constant": {"overall": blind[best], "answer": best}}
    runs = [("diff", paths["eval_diff"], PredictOptions(backend="diff", seed=cfg.seed))]
    for name, model, folder in (  # untrained: what training changed (its answers are not in the protocol yet)
        ("untrained", paths["learner"], paths["eval_untrained"]),
        ("learner-cold", paths["cold"], paths["eval_cold"]),
        ("learner-rl", paths["rl"], paths["eval_rl"]),
    ):
        runs.append((name, folder, PredictOptions(backend="hf", model=str(model), max_new_tokens=48)))
    for name, folder, opts in runs:
        with _stage(f"eval {name}", timings) as stage:
            pred = folder / "predictions.jsonl"
            if _done(pred):
                stage.skip()
            else:
                predict_file(paths["test_pairs"], pred, opts)
            metrics[name] = run_eval(EvalConfig(paths["test_pairs"], folder, pred=pred, overlays=4))
    return metrics


def _one_prediction(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> None:
    from differad_cli.core.records import read_pairs, write_jsonl
    from differad_cli.predict import PredictOptions, predict_one
    from differad_cli.predict.run import write_overlay

    with _stage("predict", timings):
        pair = next((p for p in read_pairs(paths["test_pairs"]) if p.label == 1), None)
        assert pair is not None, "synthetic test set without an anomalous pair"
        result = predict_one(pair.ref, pair.tgt, PredictOptions(backend="diff", seed=cfg.seed))
        paths["overlay"].parent.mkdir(parents=True, exist_ok=True)
        write_overlay(paths["overlay"], result, gt_box=list(pair.box))
        result["gt_box"] = list(pair.box)
        write_jsonl(paths["predict_json"], [result])


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run (or resume) every stage, each through its stage's entry function, and return where everything
    is plus both metric sets."""
    from differad_cli.core.records import write_jsonl

    paths = _paths(cfg)
    timings = Timings()
    _data_and_model(cfg, paths, timings)
    _training(cfg, paths, timings)
    metrics = _evaluation(cfg, paths, timings)
    _one_prediction(cfg, paths, timings)
    summary_path = Path(cfg.out) / "demo.json"
    kept = timings.for_summary(summary_path)
    write_jsonl(
        summary_path,
        [{"paths": {k: str(v) for k, v in paths.items()}, "metrics": metrics, "timings_s": kept}],
    )
    paths["summary"] = summary_path
    return DemoResult(paths=paths, metrics=metrics, timings=timings)


METRIC_ROWS = (
    ("Acc@0.3", "acc_0.3"),
    ("F1@0.3", "f1_0.3"),
    ("mIoU", "miou"),
    ("mIoU (anomalous)", "miou_ano"),
    ("mIoU (normal)", "miou_nor"),
    ("image precision", "image_precision"),
    ("image recall", "image_recall"),
    ("image F1", "image_f1"),
    ("invalid answers", "invalid"),
)


def side_by_side(metrics: dict[str, dict[str, Any]]) -> str:
    """The overall metrics of each run as columns of one table (`differad compare` prints runs as rows)."""
    names = list(metrics)
    width = max(len(label) for label, _ in METRIC_ROWS)
    col = max(10, *(len(n) for n in names))
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)]
    lines.append("-" * len(lines[0]))
    n = metrics[names[0]]["overall"]
    for label, key in METRIC_ROWS:
        cells = []
        for name in names:
            v = metrics[name]["overall"].get(key)
            text = "-" if v is None else f"{v:d}" if isinstance(v, int) else f"{100 * v:.2f}"
            cells.append(f"{text:>{col}}")
        lines.append(f"{label:<{width}}  " + "  ".join(cells))
    lines.append(
        f"(ratios in %, as in every differad table; {n['n']} held-out pairs: {n['n_ano']} anomalous, "
        f"{n['n_nor']} normal)"
    )
    return "\n".join(lines)


def _protocol_sentence(metrics: dict[str, dict[str, Any]]) -> str:
    """What the run's invalid-answer counts say (not a fixed claim: a short run may not get there)."""
    counts = [metrics.get(k, {}).get("overall", {}).get("invalid") for k in ("untrained", "learner-rl")]
    if None in counts:
        return "see the invalid answers row"
    return f"invalid answers {counts[0]} untrained -> {counts[1]} after RL"


def describe(result: DemoResult) -> str:
    p = result.paths
    total = sum(result.timings.values())
    return "\n".join(
        [
            "",
            "differad demo: done in " + f"{total:.0f} s",
            f"  training pairs     {p['train_pairs']}",
            f"  held-out pairs     {p['test_pairs']}",
            f"  learner model      {p['learner']}",
            f"  train-cold run     {p['cold']}",
            f"  train-rl run       {p['rl']}  (final model in the folder root)",
            f"  eval: diff         {p['eval_diff']}/report.md",
            f"  eval: untrained    {p['eval_untrained']}/report.md",
            f"  eval: cold start   {p['eval_cold']}/report.md",
            f"  eval: after RL     {p['eval_rl']}/report.md",
            f"  predict overlay    {p['overlay']}",
            f"  summary            {p['summary']}",
            "",
            "Held-out metrics. constant = the best image-blind answer ("
            + str(result.metrics.get("constant", {}).get("answer", "-"))
            + "); diff = the training-free",
            "golden-template backend; untrained / learner-cold / learner-rl = the ~1.6M-parameter",
            "learner before training, after a short CPU cold start and after a few GRPO steps. At demo",
            f"size it learns the answer protocol ({_protocol_sentence(result.metrics)}),",
            "not yet to use the images (it needs ~8,000 samples); --cold-steps 1500 --rl-steps 30",
            "--n-train 2000 --n-test 100 (~24 min) shows it learning (README; bench/bench_learning.py,",
            "docs/learning.md):",
            "",
            side_by_side(result.metrics),
            "",
        ]
    )
