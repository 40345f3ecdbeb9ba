"""train-cold: answer-only SFT rows, descriptions, a 2-step run whose checkpoint generates, bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from differad_cli.core.errors import BadInput
from differad_cli.core.records import Pair, read_pairs

FAST = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "precision": "fp32",
    "gradient_checkpointing": False,
    "logging_steps": 1,
}


def _pair(box: tuple[int, int, int, int], label: int = 1, desc: str | None = None) -> Pair:
    return Pair("p", Path("/r.png"), Path("/t.png"), box, label, 100, 50, description=desc)


def test_description_region_size_and_appearance() -> None:
    from differad_cli.protocol.descriptions import NORMAL_TEXT, describe, region_name

    assert region_name((0, 0, 10, 10), 100, 50) == "upper left"
    assert region_name((45, 20, 55, 30), 100, 50) == "centre"
    assert region_name((80, 40, 100, 50), 100, 50) == "lower right"
    ref = np.full((50, 100, 3), 100, np.uint8)
    tgt = ref.copy()
    tgt[0:10, 0:10] = 200
    text = describe(_pair((0, 0, 10, 10)), ref, tgt)
    assert "upper left" in text and "brighter" in text and "2% of the image" in text
    dark = ref.copy()
    dark[0:10, 0:10] = (20, 20, 90)
    text = describe(_pair((0, 0, 10, 10)), ref, dark)
    assert "darker" in text and "blue" in text
    assert describe(_pair((0, 0, 0, 0), label=0)) == NORMAL_TEXT


def test_target_text_uses_model_coordinates_and_record_description(synth_pairs: Path) -> None:
    from differad_cli.protocol.parsing import parse_answer
    from differad_cli.train.rewards import format_reward
    from differad_cli.train.sft import target_text

    resize = {"min_pixels": 3136, "max_pixels": 12544, "factor": 28}
    pairs = read_pairs(synth_pairs)
    ano = next(p for p in pairs if p.label == 1)
    text = target_text(ano, "qwen2_vl", resize)
    assert format_reward(text) == 1.0
    box = parse_answer(text)
    x1, y1, x2, y2 = (v * 1000 / 64 for v in ano.box)  # rounded outward: the box never shrinks
    assert box == (math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2))
    normal = next(p for p in pairs if p.label == 0)
    assert target_text(normal, "qwen2_vl", resize).endswith("<answer>(0,0),(0,0)</answer>")
    ano.description = "A scratch in the corner."
    assert target_text(ano, "qwen2_vl", resize).startswith("<think>A scratch in the corner.</think>")
    assert "scratch" not in target_text(ano, "qwen2_vl", resize, use_record=False)


def test_collator_trains_on_the_answer_only(synth_pairs: Path, tiny_model_dir: Path) -> None:
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from differad_cli.models.load import load_processor, resize_params
    from differad_cli.train.configs import ColdConfig
    from differad_cli.train.sft import sft_dataset

    proc = load_processor(tiny_model_dir)
    pairs = read_pairs(synth_pairs)[:2]
    ds = sft_dataset(pairs, ColdConfig(), "qwen2_vl", resize_params(proc), seed=0)
    rows = [ds[0], ds[1]]
    assert len(rows[0]["images"]) == 2
    collator = DataCollatorForVisionLanguageModeling(proc, completion_only_loss=True)
    batch = collator(rows)
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        kept = proc.tokenizer.decode(labels[labels != -100])
        answer = row["completion"][0]["content"][0]["text"]
        assert kept.strip() == answer + "<|im_end|>"  # nothing of the prompt (text or image tokens)


def test_train_cold_two_steps_checkpoint_loads_and_generates(
    synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from differad_cli.predict.backends.hf import HFBackend
    from differad_cli.train.sft import train_cold

    out = tmp_path / "cold"
    result = train_cold(
        output_dir=out,
        options={
            "pairs": str(synth_pairs),
            "model": str(tiny_model_dir),
            "max_steps": 2,
            "save_steps": 2,
            "learning_rate": 1e-3,
            **FAST,
        },
    )
    assert result["global_step"] == 2
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 2
    assert summary["prompt"] == {"template": "differad", "paraphrase": True}  # what train-rl compares with
    losses = [
        h["loss"]
        for h in json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
        if "loss" in h
    ]
    assert len(losses) == 2 and all(np.isfinite(losses))
    pairs = read_pairs(synth_pairs)[:2]
    for folder in (out, out / "checkpoint-2"):
        backend = HFBackend.from_path(folder, device="cpu", max_new_tokens=4, batch_size=2)
        preds = backend.predict(pairs)
        assert [p.id for p in preds] == [p.id for p in pairs]
        assert all(p.text is not None for p in preds)


def test_train_cold_lora_with_merge(synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from differad_cli.models.load import load_model_and_processor
    from differad_cli.train.sft import train_cold

    out = tmp_path / "lora"
    train_cold(
        output_dir=out,
        options={
            "pairs": str(synth_pairs),
            "model": str(tiny_model_dir),
            "max_steps": 1,
            "lora": True,
            "lora_r": 2,
            "lora_alpha": 4,
            "merge_lora": True,
            **FAST,
        },
    )
    assert (out / "adapter_model.safetensors").is_file()
    model, _, family = load_model_and_processor(out, device="cpu")
    assert family == "qwen2_vl" and hasattr(model, "peft_config")
    merged = AutoModelForImageTextToText.from_pretrained(out / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_bad_records_are_reported_before_any_model_loads(synth_pairs: Path, tmp_path: Path) -> None:
    from differad_cli.train.sft import train_cold

    recs = [json.loads(line) for line in synth_pairs.read_text().splitlines()]
    root = synth_pairs.parent
    for r in recs:
        r["ref"], r["tgt"] = str(root / r["ref"]), str(root / r["tgt"])
        r["mask"] = None
    missing = [
        dict(recs[0], ref=str(tmp_path / "gone.png")),
        dict(recs[1], id="x", tgt=str(tmp_path / "no.png")),
    ]
    bad = _write(tmp_path / "missing.jsonl", missing + recs[2:4])
    model = str(tmp_path / "no-model")  # never reached: records fail first
    with pytest.raises(BadInput, match=r"2 file problem\(s\) in 4 record\(s\)"):
        train_cold(output_dir=tmp_path / "o", options={"pairs": str(bad), "model": model})
    outside = _write(tmp_path / "outside.jsonl", [dict(recs[0], box=[0, 0, 65, 10], label=1)])
    with pytest.raises(BadInput, match="outside"):
        train_cold(output_dir=tmp_path / "o", options={"pairs": str(outside), "model": model})
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(BadInput, match="no pair records"):
        train_cold(output_dir=tmp_path / "o", options={"pairs": str(empty), "model": model})
    with pytest.raises(BadInput, match="model folder not found"):
        train_cold(output_dir=tmp_path / "o", options={"pairs": str(synth_pairs), "model": model})


def test_cli_bad_input_exits_2(
    synth_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import differad_cli.cli.app as cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1e-5\nnot_an_option: 3\n")
    cases = [
        (
            [
                "train-cold",
                "--pairs",
                str(synth_pairs),
                "--model",
                str(tmp_path / "nope"),
                "--output-dir",
                str(tmp_path / "o"),
            ],
            "model folder not found",
        ),
        (
            [
                "train-rl",
                "--pairs",
                str(synth_pairs),
                "--output-dir",
                str(tmp_path / "o"),
                "--recipe",
                str(recipe),
            ],
            "not_an_option",
        ),
    ]
    for argv, message in cases:
        monkeypatch.setattr(sys, "argv", ["differad", *argv])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_vision_tower_frozen_by_default(tiny_model_dir: Path, tmp_path: Path) -> None:
    from differad_cli.train.configs import build_configs
    from differad_cli.train.model import load_trainable

    for freeze in (True, False):
        cfg, args = build_configs(
            "cold", recipe=None, cli={"freeze_vision": freeze}, output_dir=str(tmp_path)
        )
        model, _ = load_trainable(tiny_model_dir, cfg, args)
        visual = [p.requires_grad for n, p in model.named_parameters() if ".visual." in f".{n}"]
        text = [p.requires_grad for n, p in model.named_parameters() if ".visual." not in f".{n}"]
        assert visual and all(text)
        assert not any(visual) if freeze else all(visual)


def test_staged_template_targets_pass_the_staged_format_reward(synth_pairs: Path) -> None:
    from differad_cli.core.records import read_pairs
    from differad_cli.train.rewards import staged_format_reward
    from differad_cli.train.sft import target_text

    resize = {"min_pixels": 3136, "max_pixels": 12544, "factor": 28}
    pairs = read_pairs(synth_pairs)
    for pair in (next(p for p in pairs if p.label), next(p for p in pairs if not p.label)):
        text = target_text(pair, "qwen2_vl", resize, template="staged")
        assert staged_format_reward(text) == 1.0, text
        assert ("<decision>anomalous</decision>" in text) is bool(pair.label)
