"""Plumbing shared by train-cold and train-rl: input checks, datasets, model setup, resume, saving, eval.

Everything the user can get wrong (records, files, model path, family, recipe keys) is checked before any
model is loaded, so a bad run fails in seconds with one line instead of after minutes of loading.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from differad_cli import console
from differad_cli.errors import BadInput
from differad_cli.records import Pair, check_files, read_pairs

MAX_SHOWN = 5


@dataclass
class Setup:
    """Everything a training command has checked before any model loads, then the loaded model."""

    cfg: Any
    args: Any
    pairs: list[Pair]
    eval_pairs: list[Pair] | None
    model_path: Path
    family: str
    checkpoint: str | None
    model: Any = None
    processor: Any = None
    callbacks: list[Any] = field(default_factory=list)  # periodic evaluation, when --eval-pairs is given

    @property
    def peft_config(self) -> Any:
        return lora_config(self.cfg) if self.cfg.lora and not hasattr(self.model, "peft_config") else None


def setup(
    kind: str,
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None,
    options: dict[str, Any] | None,
    check: Callable[[Any], None] | None = None,
) -> Setup:
    """Configs (defaults < recipe < options), every input check (``check`` adds the command's own), then the
    model: a bad run fails in seconds with one line instead of after minutes of loading."""
    from differad_cli.configs import build_configs
    from differad_cli.models import quiet_accelerator_probe

    quiet_accelerator_probe()
    cfg, args = build_configs(kind, recipe=recipe, cli=dict(options or {}), output_dir=str(output_dir))
    check_template(cfg.template)
    if check is not None:
        check(cfg)
    pairs = validate_pairs(cfg.pairs)
    eval_pairs = validate_pairs(cfg.eval_pairs, what="--eval-pairs") if cfg.eval_pairs else None
    model_path, family = check_model_path(cfg.model)
    check_recipe_family(cfg, recipe, model_path, family)
    checkpoint = resume_checkpoint(output_dir, cfg.resume)
    run = Setup(cfg, args, pairs, eval_pairs, model_path, family, checkpoint)
    run.model, run.processor = load_trainable(model_path, cfg, args, checkpoint)
    if eval_pairs:
        run.callbacks = [make_eval_callback(eval_pairs, cfg, family, output_dir)]
    return run


def train_and_save(trainer: Any, run: Setup, output_dir: str | os.PathLike[str], banner: str) -> dict:
    """The common tail of both commands: wire callbacks and logs, train (resuming), save, summarize."""
    for cb in run.callbacks:
        cb.trainer = trainer
    route_logs(trainer, output_dir, run.checkpoint)
    console.info(banner)
    trainer.train(resume_from_checkpoint=run.checkpoint)
    save_final(trainer, run.processor, run.cfg, output_dir)
    return summary(trainer, output_dir, {"family": run.family, "pairs": len(run.pairs)})


def validate_pairs(path: str | os.PathLike[str] | None, *, what: str = "--pairs") -> list[Pair]:
    """Read and check every record and the files it points to; all problems in one report (exit 2)."""
    if path is None:
        raise BadInput(f"{what} is required (a pairs.jsonl manifest)")
    pairs = read_pairs(path)
    problems = check_files(pairs, open_images=True)
    if problems:
        shown = "; ".join(problems[:MAX_SHOWN])
        more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
        raise BadInput(f"{len(problems)} file problem(s) in {len(pairs)} record(s) of {path}: {shown}{more}")
    return pairs


def check_model_path(path: str | None) -> tuple[Path, str]:
    """(absolute model folder, coordinate family); missing folder or unknown family -> BadInput."""
    from differad_cli.models import model_family

    if not path:
        raise BadInput(
            "--model is required (a model folder; `differad tiny-model DIR` builds an offline one)"
        )
    p = Path(path).resolve()
    return p, model_family(p)


def check_recipe_family(
    cfg: Any, recipe: str | os.PathLike[str] | None, model_path: Path, family: str
) -> None:
    """A recipe written for one family refuses another family's checkpoint: its learning rate, LoRA targets
    and batch sizes were chosen for that model. The recipe's ``family`` key decides; without one, the family
    its own ``model`` path spells out (e.g. /models/Qwen2.5-VL-3B-Instruct), if any."""
    from differad_cli.configs import load_recipe
    from differad_cli.coords import check_family, family_from_name

    if cfg.family is not None:
        expected, why = check_family(cfg.family), f"family: {cfg.family}"
    else:
        named = load_recipe(recipe).get("model") if recipe is not None else None
        expected, why = (family_from_name(named), f"model: {named}") if isinstance(named, str) else (None, "")
    if expected is not None and expected != family:
        raise BadInput(
            f"recipe {recipe} is written for {expected} ({why}) but {model_path} is a {family} checkpoint; "
            f"use a {family} recipe (recipes/README.md) or recipes/tiny_cpu for the tiny models"
        )


def check_template(name: str) -> str:
    from differad_cli.prompts import TEMPLATES

    if name not in TEMPLATES:
        raise BadInput(f"unknown template '{name}' (choose from: {', '.join(TEMPLATES)})")
    return name


def _resized(pair: Pair, family: str, resize: dict[str, int]) -> tuple[int, int] | None:
    from differad_cli.coords import smart_resize

    return smart_resize(pair.height, pair.width, **resize) if family == "qwen2_5_vl" else None


def model_box(pair: Pair, family: str, resize: dict[str, int]) -> tuple[int, int, int, int]:
    """The pair's box in the family's answer coordinates (what the model is taught to write)."""
    from differad_cli.coords import to_model

    return to_model(pair.box, family, pair.width, pair.height, _resized(pair, family, resize))


def model_extent(pair: Pair, family: str, resize: dict[str, int]) -> list[int]:
    """(width, height) of the frame the family answers in: rewards clip answers to it, as eval does."""
    resized = _resized(pair, family, resize)
    return [1000, 1000] if resized is None else [resized[1], resized[0]]


def pair_images(pair: Pair) -> list[Any]:
    """[reference, target] as PIL RGB images (image 1 = reference, image 2 = target)."""
    from PIL import Image

    from differad_cli.images import load_rgb

    return [Image.fromarray(load_rgb(pair.ref)), Image.fromarray(load_rgb(pair.tgt))]


def prompt_rng(seed: int, index: int) -> random.Random:
    """The paraphrase drawn for sample ``index`` depends only on (seed, index): every copy of a GRPO group and
    every rank sees the same prompt, and a resumed run sees the same prompts."""
    return random.Random(seed * 1_000_003 + index)


def lazy_dataset(n: int, make_row: Callable[[int], dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of ``n`` indices whose rows (images included) are built on access."""
    from datasets import Dataset

    ds = Dataset.from_dict({"pair_index": list(range(n))})

    def transform(batch: dict[str, list]) -> dict[str, list]:
        rows = [make_row(i) for i in batch["pair_index"]]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}

    return ds.with_transform(transform)


VISION_MODULES = r".*\bvisual\b.*"  # Qwen-VL's vision tower lives under `visual`


def lora_config(cfg: Any) -> Any:
    """LoRA adapters on the language model; with a frozen vision tower no adapter goes into it either
    (Qwen2.5-VL's vision blocks also have gate/up/down projections that the default targets would match)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        exclude_modules=VISION_MODULES if cfg.freeze_vision else None,
        task_type="CAUSAL_LM",
    )


def check_lora_targets(model: Any, cfg: Any) -> None:
    """Unknown --lora-target-modules are a usage error (exit 2), not a PEFT traceback after loading."""
    if not cfg.lora:
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(cfg.lora_target_modules) - names)
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"}
        )
        raise BadInput(
            f"--lora-target-modules: no module named {', '.join(missing)} in this model "
            f"(linear layers: {', '.join(linear)})"
        )


def full_checkpoint(checkpoint: str | None) -> Path | None:
    """A resumed checkpoint that holds the whole model (not LoRA adapters)."""
    if checkpoint is None:
        return None
    ckpt = Path(checkpoint)
    is_full = (ckpt / "config.json").is_file() and not (ckpt / "adapter_config.json").is_file()
    return ckpt if is_full else None


def load_trainable(
    model_path: Path, cfg: Any, trl_args: Any, checkpoint: str | None = None
) -> tuple[Any, Any]:
    """(model, processor) ready for a trainer: adapters continued or merged, vision tower frozen if asked.

    Weights that are trained stay float32 and bf16/fp16 act as mixed precision (pure bf16 rounds away most
    updates at the paper's lr of 1e-6); with LoRA the frozen base is loaded in the half type to save memory.
    When resuming a full fine-tuning run the weights come from the checkpoint itself: transformers 5 saves
    checkpoints under its legacy parameter names and its resume path does not map them back, so the
    trainer's own reload would silently keep the base weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    from differad_cli.models import adapter_base, load_processor

    processor = load_processor(model_path, trust_remote_code=cfg.trust_remote_code)
    half = torch.bfloat16 if trl_args.bf16 else torch.float16 if trl_args.fp16 else torch.float32
    dtype = half if cfg.lora else torch.float32
    base = adapter_base(model_path)
    resumed = full_checkpoint(checkpoint)
    source = resumed if resumed is not None else (base or model_path)
    model = AutoModelForImageTextToText.from_pretrained(
        str(source), dtype=dtype, trust_remote_code=cfg.trust_remote_code, use_safetensors=True
    )
    if resumed is not None:
        console.debug(f"resuming the weights of {resumed}")
        base = None
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_path), is_trainable=cfg.lora)
        if not cfg.lora:
            model = model.merge_and_unload()
    if cfg.freeze_vision:
        frozen = freeze_vision(model)
        console.debug(f"froze {frozen} vision parameters")
    check_lora_targets(model, cfg)
    return model, processor


VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def suppress_vision_tokens(args: Any, model: Any) -> None:
    """Never sample image/video placeholders or vision brackets in a completion: TRL suppresses only the image
    token, and a sampled <|vision_start|> or <|video_pad|> breaks Qwen-VL's 3D rope index in the loss pass."""
    if getattr(args, "use_vllm", False):  # vLLM's sampling parameters have no suppress_tokens
        console.debug("use_vllm: vision tokens are not suppressed in vLLM generation")
        return
    config = getattr(model, "config", None)
    ids = {getattr(config, k) for k in VISION_TOKEN_KEYS if isinstance(getattr(config, k, None), int)}
    kwargs = dict(args.generation_kwargs or {})
    kwargs["suppress_tokens"] = sorted(set(kwargs.get("suppress_tokens") or []) | ids)
    args.generation_kwargs = kwargs


def left_padding(processor: Any) -> None:
    """GRPO tokenizes prompts of different lengths (paraphrases) with the processor and left-pads the ids: the
    processor must pad on the left too, or its mm_token_type_ids no longer line up with the prompt ids."""
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"


def freeze_vision(model: Any) -> int:
    """Freeze the vision encoder (``visual``) including its merger; returns the count of frozen tensors."""
    n = 0
    for name, p in model.named_parameters():
        if ".visual." in f".{name}":
            p.requires_grad_(False)
            n += 1
    return n


def resume_checkpoint(output_dir: str | os.PathLike[str], resume: bool) -> str | None:
    """The checkpoint to resume from; checkpoints present without --resume are refused (nothing is lost)."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--output-dir {out} is a file; give a folder for checkpoints and the final model")
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last and not resume:
        raise BadInput(
            f"{out} already holds checkpoints (last: {Path(last).name}); pass --resume to continue"
        )
    if resume and not last:
        console.warn(f"--resume: no checkpoint in {out}; starting from the beginning")
    return last if resume else None


def _zero3(trainer: Any) -> bool:
    plugin = getattr(getattr(trainer.accelerator, "state", None), "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def save_final(trainer: Any, processor: Any, cfg: Any, output_dir: str | os.PathLike[str]) -> None:
    """Model (or adapters) + processor in the output root; --merge-lora adds a merged model in merged/."""
    out = Path(output_dir)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    processor.save_pretrained(str(out))
    if cfg.lora and cfg.merge_lora:
        if _zero3(trainer):
            console.warn(
                "--merge-lora skipped under DeepSpeed ZeRO-3 (rank 0 holds only a shard of the weights); the "
                f"adapters in {out} load directly with `differad predict --model {out}`"
            )
            return
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"), safe_serialization=True)
        processor.save_pretrained(str(out / "merged"))
        console.info(f"merged LoRA model written to {out / 'merged'}")


def summary(trainer: Any, output_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> dict:
    """A small train_summary.json (final step, last logged metrics) for scripts and CI."""
    history = trainer.state.log_history
    last = {k: v for h in history for k, v in h.items() if isinstance(v, (int, float))}
    data = {"global_step": trainer.state.global_step, "last": last, **(extra or {})}
    if trainer.is_world_process_zero():
        from differad_cli.records import atomic_write_lines

        atomic_write_lines(Path(output_dir) / "train_summary.json", [json.dumps(data, indent=2)])
    return data


LOG_KEYS = (
    "loss", "mean_token_accuracy", "reward", "batch/iou", "batch/acc@0.3", "resample/degenerate_before",
    "resample/degenerate_after", "resample/rounds", "difficulty/weight_mean", "eval/acc_0.3", "eval/miou",
)  # fmt: skip


def _trim_log(path: Path, step: int) -> None:
    """On resume, forget log lines of steps after the checkpoint: they are about to be logged again."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= step]
    from differad_cli.records import atomic_write_lines

    atomic_write_lines(path, keep)


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
            with path.open("a", encoding="utf-8") as f:
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


def make_eval_callback(pairs: list[Pair], cfg: Any, family: str, output_dir: str | os.PathLike[str]) -> Any:
    """Periodic evaluation with the SPEC metrics on held-out pairs, generating through the predict helper's
    HFBackend on the in-training model (greedy, canonical prompt); results go to the log and to
    eval/step-N.json."""
    from transformers import TrainerCallback

    class PeriodicEval(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None

        def _run(self, state: Any) -> None:
            from differad_cli.hf_backend import HFBackend
            from differad_cli.metrics import score
            from differad_cli.records import atomic_write_lines

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
                atomic_write_lines(path, [json.dumps(result, indent=2)])

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if cfg.eval_steps and state.global_step % cfg.eval_steps == 0:
                self._run(state)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not cfg.eval_steps or state.global_step % cfg.eval_steps:
                self._run(state)

    return PeriodicEval()
