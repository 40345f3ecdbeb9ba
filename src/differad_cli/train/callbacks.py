"""Trainer callbacks: logs to OUTPUT/train_log.jsonl and compact stderr lines (stdout stays clean), and
periodic evaluation on held-out pairs with the paper's metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.io import writing
from differad_cli.core.records import Pair

LOG_KEYS = (
    "loss", "mean_token_accuracy", "reward", "batch/iou", "batch/acc@0.3", "resample/degenerate_before",
    "resample/degenerate_after", "resample/rounds", "difficulty/weight_mean", "eval/acc_0.3", "eval/miou",
)  # fmt: skip


def _trim_log(path: Path, step: int) -> None:
    """On resume, forget log lines of steps after the checkpoint: they are about to be logged again."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= step]
    from differad_cli.core.io import atomic_write

    atomic_write(path, keep)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn line: dropped


def route_logs(trainer: Any, output_dir: str | os.PathLike[str], checkpoint: str | None = None) -> None:
    """Trainer logs go to OUTPUT/train_log.jsonl and, compactly, to stderr: stdout stays clean.

    transformers prints every log dict on stdout (PrinterCallback, or ProgressCallback.on_log); both are
    replaced. The progress bar itself is kept where TRL enabled it (an interactive terminal).
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            pass

    class LogLines(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            path = Path(output_dir) / "train_log.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with writing(path), path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
            per_reward = [k for k in logs if k.startswith("rewards/") and k.endswith("/mean")]
            keys = [*LOG_KEYS[:3], *per_reward, *LOG_KEYS[3:]]
            shown = [f"{k}={logs[k]:.4g}" for k in keys if isinstance(logs.get(k), (int, float))]
            if shown:
                console.info(f"  step {state.global_step}/{state.max_steps}  " + "  ".join(shown))

    log_path = Path(output_dir) / "train_log.jsonl"
    if trainer.is_world_process_zero():
        if checkpoint is None:
            log_path.unlink(missing_ok=True)  # a fresh run (refused earlier if checkpoints exist)
        else:
            _trim_log(log_path, int(Path(checkpoint).name.rsplit("-", 1)[-1]))
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)
    trainer.add_callback(LogLines())


def quiet_resume(trainer: Any, checkpoint: str | None, weights_loaded: bool) -> None:
    """One line "resumed from checkpoint-N" instead of transformers' missing/unexpected key lists (~4 KB,
    every weight named, reading like corruption). With a full checkpoint the weights were already loaded by
    us (``weights_loaded``), so the trainer's reload under legacy names is expected to mismatch: said only
    with --verbose. Otherwise (adapters) a mismatch is worth one counted warning."""
    if checkpoint is None:
        return

    def after_load(load_result: Any) -> None:
        missing, unexpected = len(load_result.missing_keys), len(load_result.unexpected_keys)
        if not missing and not unexpected:
            return
        line = (
            f"{Path(checkpoint).name}: trainer reload saw {missing} missing and {unexpected} unexpected keys"
        )
        if weights_loaded:
            console.debug(line + " (the weights were loaded from the checkpoint before training)")
        else:
            console.warn(line)

    trainer._issue_warnings_after_load = after_load
    console.info(f"resumed from {Path(checkpoint).name}")


def make_eval_callback(pairs: list[Pair], cfg: Any, family: str, output_dir: str | os.PathLike[str]) -> Any:
    """Periodic evaluation with the paper's metrics on held-out pairs, generating through the predict helper's
    HFBackend on the in-training model (greedy, canonical prompt); results go to the log and to
    eval/step-N.json."""
    from transformers import TrainerCallback

    class PeriodicEval(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None

        def _run(self, state: Any) -> None:
            from differad_cli.core.io import atomic_write
            from differad_cli.eval.metrics import score
            from differad_cli.predict.backends.hf import HFBackend

            trainer = self.trainer
            if trainer is None:
                return
            model = trainer.accelerator.unwrap_model(trainer.model)
            backend = HFBackend(
                model,
                trainer.processing_class,
                family,
                template=cfg.template,
                max_new_tokens=cfg.eval_max_new_tokens,
                batch_size=cfg.eval_batch_size,
            )
            preds = backend.predict(pairs)
            result = score(pairs, {p.id: p for p in preds})
            overall = result["overall"]
            trainer.log({f"eval/{k}": v for k, v in overall.items() if isinstance(v, (int, float))})
            if trainer.is_world_process_zero():
                path = Path(output_dir) / "eval" / f"step-{state.global_step}.json"
                atomic_write(path, [json.dumps(result, indent=2)])

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if cfg.eval_steps and state.global_step % cfg.eval_steps == 0:
                self._run(state)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not cfg.eval_steps or state.global_step % cfg.eval_steps:
                self._run(state)

    return PeriodicEval()
