"""`run_demo`: every stage through its entry function, each skipped when its outputs are there."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.demo.config import COLD_OPTIONS, LEARNER_PRESETS, RL_OPTIONS, DemoConfig, DemoResult


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

    if cfg.n_train < 8 or cfg.n_test < 4 or (cfg.blank_steps and cfg.n_blank < 8):
        raise BadInput("the demo needs at least --n-train 8, --n-test 4 and --n-blank 8")
    if min(cfg.blank_steps, cfg.cold_steps, cfg.rl_steps) < 0 or min(cfg.cold_steps, cfg.rl_steps) < 1:
        raise BadInput("--cold-steps and --rl-steps must be at least 1, --blank-steps at least 0")
    from differad_cli.core.families import FAMILIES
    from differad_cli.train.common import check_template

    if cfg.family not in FAMILIES:
        raise BadInput(f"unknown --family {cfg.family!r} (choose from: {', '.join(FAMILIES)})")
    if cfg.preset not in LEARNER_PRESETS:
        raise BadInput(f"unknown --preset {cfg.preset!r} (choose from: {', '.join(LEARNER_PRESETS)})")
    check_template(cfg.template)
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create output folder {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise BadInput(f"output folder is not writable: {out}")
    return {
        "blank_pairs": out / "data" / "blank" / "pairs.jsonl",
        "train_pairs": out / "data" / "train" / "pairs.jsonl",
        "test_pairs": out / "data" / "test" / "pairs.jsonl",
        "learner": out / "models" / "learner",
        "blank": out / "runs" / "blank",
        "cold": out / "runs" / "cold",
        "rl": out / "runs" / "rl",
        "eval_diff": out / "eval" / "diff",
        "eval_untrained": out / "eval" / "untrained",
        "eval_cold": out / "eval" / "learner-cold",
        "eval_rl": out / "eval" / "learner-rl",
        "overlay": out / "predict" / "overlay.png",
        "predict_json": out / "predict" / "result.json",
    }


def _check_learner(learner: Path, family: str, preset: str, trained: bool) -> None:
    """A resumed demo keeps its learner: one of another family than --family is refused, not trained on, and
    so is one of another --preset while there is still training to do."""
    from differad_cli.core.coords import detect_family
    from differad_cli.core.errors import BadInput
    from differad_cli.models.tiny import preset_of

    found = detect_family(learner)  # an unreadable or unknown config.json is bad input too
    if found != family:
        raise BadInput(
            f"{learner} holds a {found} learner, not --family {family}: "
            "give another --out, or the family it was built with"
        )
    if trained:
        return  # its cold start is done: the learner is only evaluated untrained (an older demo's 8x8 one)
    built = preset_of(learner, family)
    if built != preset:
        raise BadInput(
            f"{learner} holds a learner of another size than --preset {preset}"
            + (f" ({built})" if built else "")
            + ": give another --out, or the preset it was built with"
        )


def _data_and_model(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> None:
    from differad_cli.synth import SynthConfig, synthesize
    from differad_cli.synth.config import easy_settings

    trained = _done(paths["cold"] / "config.json")  # then the blank stage's pairs are not needed any more
    learner_there = _done(paths["learner"] / "config.json")
    if learner_there:  # a resumed demo's learner is checked before anything is made for it
        _check_learner(paths["learner"], cfg.family, cfg.preset, trained)
    sets = [("blank_pairs", cfg.n_blank, cfg.seed + 2, "blank")] if cfg.blank_steps and not trained else []
    sets += [
        ("train_pairs", cfg.n_train, cfg.seed, "textured"),
        ("test_pairs", cfg.n_test, cfg.seed + 1, "textured"),
    ]
    with _stage("synth", timings) as stage:
        generated = 0
        for key, n, seed, surfaces in sets:
            folder = paths[key].parent
            scfg = SynthConfig(
                out=folder,
                n=n,
                size=cfg.size,
                seed=seed,
                workers=2,  # the output does not depend on it
                surfaces=surfaces,
                resume=_done(paths[key]),
                **easy_settings(cfg.size),  # type: ignore[arg-type]
            )
            summary = synthesize(scfg)
            generated += summary.generated
            console.info(f"  {folder}: {summary.written} pairs, {summary.anomalous_share:.0%} anomalous")
        if not generated:
            stage.skip()

    with _stage("tiny-model", timings) as stage:
        if learner_there:
            stage.skip()
        else:
            from differad_cli.models.tiny import build_tiny_model

            build_tiny_model(paths["learner"], seed=cfg.seed, preset_name=cfg.preset, family=cfg.family)


def _training(cfg: DemoConfig, paths: dict[str, Path], timings: Timings) -> None:
    """train-cold on the blank pairs (unless --blank-steps 0), train-cold on the training pairs from there,
    train-rl from the cold start. A finished cold start skips the blank stage (an older demo had none)."""
    from differad_cli.core.errors import BadInput
    from differad_cli.models.load import trained_prompt
    from differad_cli.train import train_cold, train_rl

    blank = cfg.blank_steps > 0 and not _done(paths["cold"] / "config.json")
    if blank and _has_checkpoint(paths["cold"]) and not _done(paths["blank"] / "config.json"):
        raise BadInput(
            f"{paths['cold']} holds a cold start begun without the blank stage (an older demo, or "
            "--blank-steps 0): rerun with the options it began with and --blank-steps 0, or another --out"
        )
    first = paths["blank"] if cfg.blank_steps > 0 else paths["learner"]
    stages = [
        (
            "train-blank",
            train_cold,
            COLD_OPTIONS,
            paths["learner"],
            paths["blank"],
            cfg.blank_steps,
            "blank_pairs",
        ),
        ("train-cold", train_cold, COLD_OPTIONS, first, paths["cold"], cfg.cold_steps, "train_pairs"),
        ("train-rl", train_rl, RL_OPTIONS, paths["cold"], paths["rl"], cfg.rl_steps, "train_pairs"),
    ][0 if blank else 1 :]
    for name, train, options, model, run, steps, pairs in stages:
        with _stage(name, timings) as stage:
            if _done(run / "config.json"):
                stage.skip()
            else:  # a stage keeps the prompt its starting model was trained on (an older demo's: differad)
                template = (trained_prompt(model) or {}).get("template") or cfg.template
                train(
                    output_dir=run,
                    options={
                        **options,
                        "template": template,
                        "pairs": str(paths[pairs]),
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
    for name, model, folder, template in (  # untrained: what training changed; trained: their own prompt
        ("untrained", paths["learner"], paths["eval_untrained"], cfg.template),
        ("learner-cold", paths["cold"], paths["eval_cold"], None),
        ("learner-rl", paths["rl"], paths["eval_rl"], None),
    ):
        opts = PredictOptions(backend="hf", model=str(model), template=template, max_new_tokens=48)
        runs.append((name, folder, opts))
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
    return DemoResult(paths=paths, metrics=metrics, timings=timings, preset=cfg.preset)
