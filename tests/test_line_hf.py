"""Line mode of the hf backend: the reference's prompt prefix encoded once and its key/value cache reused,
with the greedy answers (and, closely, the logits) of the uncached path, for the three Qwen-VL families."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import save_png
from differad_cli.core.records import Pair

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _texture(seed: int, h: int = 64, w: int = 64) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8), (w, h))


@pytest.fixture(scope="module", params=[(f, "tiny") for f in FAMILIES] + [("qwen2_5_vl", "learner")])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from differad_cli.models.tiny import build_tiny_model

    family, preset = request.param
    return build_tiny_model(tmp_path_factory.mktemp(family) / preset, family=family, preset_name=preset)


@pytest.fixture
def line(tmp_path: Path) -> dict[str, Path]:
    ref = _texture(0)
    paths = {"ref": tmp_path / "ref.png", "other_ref": tmp_path / "other.png"}
    save_png(paths["ref"], ref)
    save_png(paths["other_ref"], _texture(9))
    for i in range(3):
        tgt = ref.copy() if i != 1 else _texture(5)
        if i == 2:
            tgt[10:40, 20:50] = (255, 0, 255)
        save_png(tmp_path / f"t{i}.png", tgt)
        paths[f"t{i}"] = tmp_path / f"t{i}.png"
    save_png(tmp_path / "odd.png", _texture(7, 56, 72))  # another size: the reference is resized to it
    paths["odd"] = tmp_path / "odd.png"
    return paths


def _pair(ref: Path, tgt: Path) -> Pair:
    return Pair(tgt.name, ref, tgt, (0, 0, 0, 0), 0, 0, 0)


def _spy_lengths(model, monkeypatch) -> list[int]:
    """Token counts of every forward pass of ``model`` (0 for a pass fed embeddings)."""
    seen: list[int] = []
    forward = model.forward

    @functools.wraps(forward)  # generate checks its arguments against the forward's signature
    def spy(*args, **kw):
        ids = kw.get("input_ids")
        seen.append(int(ids.shape[1]) if ids is not None else 0)
        return forward(*args, **kw)

    monkeypatch.setattr(model, "forward", spy)
    return seen


def test_cached_prefix_gives_the_uncached_answers(model_dir: Path, line, monkeypatch) -> None:
    from differad_cli.predict.backends.hf import HFBackend

    backend = HFBackend.from_path(model_dir, device="cpu", max_new_tokens=10)
    answer = backend.with_reference(line["ref"])
    seen = _spy_lengths(backend.model, monkeypatch)
    for name in ("t0", "t1", "odd", "t2"):  # t2: the first size again, after another one
        seen.clear()
        cached = answer(_pair(line["ref"], line[name]))
        total, reused = answer.last_prompt
        assert 0 < reused < total
        # the forward passes fed tokens: at most the prefix once (first target of a size), then never
        # the prefix again: the target's prompt starts after the cached tokens
        prompt_pass = [n for n in seen if n > 1]
        assert prompt_pass[-1] == total - reused, seen
        uncached = backend.predict([_pair(line["ref"], line[name])])[0]
        assert (cached.text, cached.box, cached.valid) == (uncached.text, uncached.box, uncached.valid)
    assert answer.prefix_runs == 2  # one per target size, reused afterwards


def test_cached_logits_match_and_a_wrong_prefix_would_be_caught(model_dir: Path, line) -> None:
    import torch

    from differad_cli.core.images import SizedReference, load_pair_images, load_rgb
    from differad_cli.predict.backends.hf import HFBackend
    from differad_cli.predict.backends.hf_prefix import ReferencePrefix

    backend = HFBackend.from_path(model_dir, device="cpu", max_new_tokens=6)
    answer = backend.with_reference(line["ref"])
    extra = {"output_scores": True, "return_dict_in_generate": True}
    for name in ("t2", "t1", "odd"):  # t1: the prompt of t2 with t1's pixels from the image processor
        tgt = load_rgb(line[name])
        cached, _ = answer.generate(tgt, **extra)
        assert answer.last_prompt[1] > 0
        plain = backend.run_generate(
            **backend.encode([load_pair_images(line["ref"], line[name])[0]], [tgt]), **extra
        )
        assert torch.equal(cached.sequences, plain.sequences)
        for c, p in zip(cached.scores, plain.scores, strict=True):
            assert torch.allclose(c, p, atol=1e-4, rtol=1e-4), (c - p).abs().max()
    # control: a prefix cache built from another reference (same token ids) changes the logits beyond the
    # tolerance, so the comparison above does see what the cache holds
    wrong = ReferencePrefix(backend, SizedReference(line["other_ref"]))
    tgt = load_rgb(line["t2"])
    wrong.generate(tgt)
    wrong.reference = SizedReference(line["ref"])
    wrong.prompts.clear()  # the right reference's prompt and pixels, the other one's cached prefix
    bad, inputs = wrong.generate(tgt, **extra)
    assert wrong.prefix_runs == 1
    plain = backend.run_generate(**inputs, **extra)
    assert (bad.scores[0] - plain.scores[0]).abs().max() > 1e-3
    assert answer.prompts[(64, 64)].shortcut  # the image processor alone gave the processor's pixels


def test_line_mode_cli_uses_the_cache_and_answers_as_one_pair_mode(
    tiny_model_dir: Path, line, monkeypatch, capsys
) -> None:
    from differad_cli.predict.backends.hf_prefix import ReferencePrefix

    calls: list[tuple[int, int]] = []
    generate = ReferencePrefix.generate

    def counted(self, tgt, **kw):
        out = generate(self, tgt, **kw)
        calls.append(self.last_prompt)
        return out

    monkeypatch.setattr(ReferencePrefix, "generate", counted)
    common = ["--model", tiny_model_dir, "--device", "cpu", "--max-new-tokens", "8"]
    targets = [line["t0"], line["t2"], line["odd"]]
    assert run_cli(monkeypatch, "predict", "--ref", line["ref"], *targets, *common) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(calls) == 3 and all(reused > 0 for _, reused in calls)
    for tgt, answer in zip(targets, got, strict=True):
        assert run_cli(monkeypatch, "predict", line["ref"], tgt, "--json", *common) == 0
        one = json.loads(capsys.readouterr().out)
        assert (one["text"], one["box"], one["label"]) == (answer["text"], answer["box"], answer["label"])


def test_lora_adapter_reuses_the_prefix_too(tiny_model_dir: Path, line, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from differad_cli.predict.backends.hf import HFBackend

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    backend = HFBackend.from_path(tmp_path / "adapter", device="cpu", dtype="fp32", max_new_tokens=8)
    answer = backend.with_reference(line["ref"])
    for name in ("t1", "t2"):
        cached = answer(_pair(line["ref"], line[name]))
        assert answer.last_prompt[1] > 0
        assert cached.text == backend.predict([_pair(line["ref"], line[name])])[0].text


def test_older_transformers_takes_the_uncached_path(tiny_model_dir: Path, line, monkeypatch) -> None:
    import transformers

    from differad_cli.predict.backends.hf import HFBackend

    backend = HFBackend.from_path(tiny_model_dir, device="cpu", max_new_tokens=6)
    monkeypatch.setattr(transformers, "__version__", "5.17.0")  # generation code the tests did not check
    answer = backend.with_reference(line["ref"])
    cached = answer(_pair(line["ref"], line["t2"]))
    assert answer.last_prompt[1] == 0 and answer.prefix_runs == 0
    assert cached.text == backend.predict([_pair(line["ref"], line["t2"])])[0].text
