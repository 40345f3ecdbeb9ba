"""Training visibly learns: train-cold and train-rl (the real code paths) improve a tiny model on a task it
can learn in seconds, and broken objectives do not.

The task is a decision on very easy pairs: black 56x56 reference; the target is the same (normal, zero box)
or has a white central square (anomalous, one fixed box). A short cold start on the true labels gives a
model that uses the images but samples badly; GRPO with the ``decision`` reward must raise its sampled
held-out reward.
Negative controls, same code path: (a) the advantages' sign flipped inside ``_compute_loss``, (b) rewards
computed against shuffled ground truth (boxes and labels permuted across the training records). With balanced
labels an image-blind policy cannot beat 1/2 decision accuracy, so (b) has nothing to learn but the images'
irrelevance. Settings were chosen on a 2-core CPU (a full run took ~5 minutes there, shared).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = 56
TEMPERATURE = 0.7
RL_STEPS = 20
MARGIN = 0.2  # the measured gain was ~0.35; sampling noise of the measure is ~0.04 (128 draws)


def make_pairs(out: Path, n: int, seed: int, *, shuffle: bool = False) -> Path:
    """n balanced pairs; ``shuffle`` permutes (box, label, description) across records (images unchanged)."""
    from PIL import Image

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    a, b = SIZE // 4, SIZE - SIZE // 4
    recs: list[dict[str, Any]] = []
    for i in range(n):
        label = i % 2
        ref = np.zeros((SIZE, SIZE, 3), np.uint8)
        tgt = ref.copy()
        if label:
            tgt[a:b, a:b] = 255
        Image.fromarray(ref).save(out / f"r{i}.png")
        Image.fromarray(tgt).save(out / f"t{i}.png")
        recs.append({
            "id": f"p{i}", "ref": f"r{i}.png", "tgt": f"t{i}.png", "box": [a, a, b, b] if label else [0] * 4,
            "label": label, "description": "The target differs." if label else "The images match.",
        })  # fmt: skip
    if shuffle:
        gts = [(r["box"], r["label"], r["description"]) for r in recs]
        rng.shuffle(gts)
        for r, (box, lab, desc) in zip(recs, gts, strict=True):
            r["box"], r["label"], r["description"] = box, lab, desc
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return out / "pairs.jsonl"


def sampled_reward(model_dir: Path, pairs_path: Path, *, repeats: int = 4) -> float:
    """Mean ``decision`` reward against the true labels over sampled answers (fixed sampling seed)."""
    import torch

    from differad_cli.core.records import read_pairs
    from differad_cli.predict.backends.hf import HFBackend

    pairs = read_pairs(pairs_path) * repeats
    torch.manual_seed(0)
    backend = HFBackend.from_path(
        model_dir, do_sample=True, temperature=TEMPERATURE, max_new_tokens=36, batch_size=32
    )
    preds = backend.predict(pairs)
    return float(
        np.mean([p.valid and p.is_anomalous == q.is_anomalous for p, q in zip(preds, pairs, strict=True)])
    )


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pairs, the random tiny model and its cold start (the fixed starting checkpoint of the RL checks)."""
    import torch

    from differad_cli.models.tiny import build_tiny_model
    from differad_cli.train.sft import train_cold

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("learning")
    paths = {
        "train": make_pairs(root / "train", 64, 1),
        "rl": make_pairs(root / "rl", 64, 3),
        "rl_shuffled": make_pairs(root / "rl_shuffled", 64, 3, shuffle=True),
        "held": make_pairs(root / "held", 32, 2),
        "tiny": build_tiny_model(root / "tiny", seed=0),
        "cold": root / "cold",
    }
    train_cold(
        output_dir=paths["cold"],
        options={
            "pairs": str(paths["train"]), "model": str(paths["tiny"]), "max_steps": 150,
            "learning_rate": 3e-3, "per_device_train_batch_size": 8, "gradient_checkpointing": False,
            "save_strategy": "no", "precision": "fp32", "logging_steps": 10, "eval_pairs": str(paths["held"]),
            "eval_max_new_tokens": 36, "eval_batch_size": 32,
        },
    )  # fmt: skip
    return paths


def _log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]


def test_cold_start_learns(task: dict[str, Path]) -> None:
    """SFT loss falls and the held-out answers become valid (the random model's are all invalid)."""
    from differad_cli.core.records import read_pairs
    from differad_cli.eval.metrics import score
    from differad_cli.predict.backends.hf import HFBackend

    held = read_pairs(task["held"])
    before = score(
        held, {p.id: p for p in HFBackend.from_path(task["tiny"], max_new_tokens=36).predict(held)}
    )
    log = _log(task["cold"])
    losses = [d["loss"] for d in log if "loss" in d]
    after = next(d for d in log if "eval/invalid" in d)
    assert losses[-1] < 0.5 * losses[0], losses
    assert before["overall"]["invalid"] == len(held)
    assert after["eval/invalid"] <= 0.02 * len(held), after
    assert after["eval/image_f1"] >= 0.9, after


def _train_rl(task: dict[str, Path], out: Path, seed: int, *, pairs: str = "rl", flip: bool = False) -> Path:
    from differad_cli.train.grpo import train_rl

    def hook(trainer: Any) -> None:
        if flip:  # negative control (a): ascend the opposite of the GRPO objective
            loss = trainer._compute_loss
            trainer._compute_loss = lambda m, inputs: loss(m, {**inputs, "advantages": -inputs["advantages"]})

    train_rl(
        output_dir=out,
        trainer_hook=hook,
        options={
            "pairs": str(task[pairs]), "model": str(task["cold"]), "rewards": ["decision"], "seed": seed,
            "max_steps": RL_STEPS, "learning_rate": 1e-3, "num_generations": 4,
            "per_device_train_batch_size": 16, "max_completion_length": 32, "temperature": TEMPERATURE,
            "gradient_checkpointing": False,
            "save_strategy": "no", "precision": "fp32", "logging_steps": 1,
        },
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def start_reward(task: dict[str, Path]) -> float:
    return sampled_reward(task["cold"], task["held"])


@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_raises_held_out_reward(task: dict[str, Path], start_reward: float, tmp_path: Path, seed: int):
    """GRPO from the fixed cold start raises the sampled held-out decision reward by a wide margin."""
    out = _train_rl(task, tmp_path / "rl", seed)
    after = sampled_reward(out, task["held"])
    assert after >= start_reward + MARGIN, (start_reward, after)


def test_grpo_flipped_advantages_do_not_learn(task: dict[str, Path], start_reward: float, tmp_path: Path):
    out = _train_rl(task, tmp_path / "flip", 0, flip=True)
    after = sampled_reward(out, task["held"])
    assert after <= start_reward + MARGIN / 2, (start_reward, after)


def test_grpo_shuffled_ground_truth_does_not_learn(
    task: dict[str, Path], start_reward: float, tmp_path: Path
) -> None:
    out = _train_rl(task, tmp_path / "shuffled", 0, pairs="rl_shuffled")
    after = sampled_reward(out, task["held"])
    assert after <= start_reward + MARGIN / 2, (start_reward, after)
