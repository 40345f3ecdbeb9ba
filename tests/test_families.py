"""Every Qwen-VL family end to end on a CPU: each tiny model is its family's own architecture and loads with
plain transformers; the real presets have the published sizes; train-cold (full, LoRA + merge), train-rl with
resume, predict and eval run through the CLI; boxes reach the model in the family's own coordinate frame and
come back to the right pixels; bad families and mismatched recipes are refused before any model loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from differad_cli.core.coords import FAMILIES
from differad_cli.core.records import read_pairs
from differad_cli.models.presets import FAMILY_PRESETS, MODEL_CLASSES

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PATCH = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
PUBLISHED = {
    "qwen2_vl": "Qwen2-VL-2B-Instruct",
    "qwen2_5_vl": "Qwen2.5-VL-3B-Instruct",
    "qwen3_vl": "Qwen3-VL-2B-Instruct",
}
RECIPE_DIRS = {"qwen2_vl": "qwen2_vl_2b", "qwen2_5_vl": "qwen2_5_vl_3b_lora", "qwen3_vl": "qwen3_vl_2b"}


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """(family, tiny model folder) for each family, built once per module."""
    from differad_cli.models.tiny import build_tiny_model

    family = request.param
    return family, build_tiny_model(tmp_path_factory.mktemp(family) / "model", seed=0, family=family)


def _plain_processor(family: str, folder: Path) -> object:
    """The processor through transformers' own from_pretrained: the stock class where torchvision imports,
    else differad's image-only subclass (AutoProcessor resolves the saved stock class name, which cannot be
    built without torchvision)."""
    from differad_cli.models.load import image_only_processor_class, torchvision_available

    if torchvision_available():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(folder)
    return image_only_processor_class(family).from_pretrained(folder)


def test_tiny_model_is_the_family_architecture_and_loads_with_plain_transformers(
    family_model: tuple[str, Path],
) -> None:
    import transformers
    from transformers import AutoModelForImageTextToText

    family, folder = family_model
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(model) is getattr(transformers, MODEL_CLASSES[family][1])
    assert model.config.model_type == family
    assert sum(p.numel() for p in model.parameters()) < 300_000
    proc = _plain_processor(family, folder)
    assert type(proc).__name__ == {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                                   "qwen3_vl": "Qwen3VLProcessor"}[family]  # fmt: skip
    tok = proc.tokenizer
    assert model.config.text_config.vocab_size == len(tok)
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert proc.image_processor.patch_size == model.config.vision_config.patch_size == PATCH[family]
    if family == "qwen3_vl":  # deepstack mergers exist and feed the first decoder layers
        assert model.config.vision_config.deepstack_visual_indexes == [0]
        assert len(model.model.visual.deepstack_merger_list) == 1
        assert model.config.text_config.rope_parameters["mrope_interleaved"] is True
    # the family's own chat template: Qwen2/2.5-VL add a default system prompt, Qwen3-VL does not
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Hi"}]}
    ]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert ("You are a helpful assistant." in prompt) is (family != "qwen3_vl")
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert (tok.convert_ids_to_tokens(tok("<think>")["input_ids"]) == ["<think>"]) is (family == "qwen3_vl")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    inputs = proc(text=[prompt], images=images, return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8  # 4 merged tokens per image
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


REAL_SIZES = [(f, "real") for f in FAMILIES] + [("qwen2_5_vl", "7b"), ("qwen3_vl", "8b")]


@pytest.mark.parametrize(("family", "size"), REAL_SIZES)
def test_real_presets_have_the_published_architecture(family: str, size: str) -> None:
    """Config-only: a real-size preset's keys are the family's config fields (a typo would be silently kept)
    and the parameter count, on the meta device, is the published one within 1% (the 7B/8B presets are what
    the 7B/8B recipes are sized for)."""
    import dataclasses

    import transformers

    from differad_cli.models.tiny import build_tokenizer, count_parameters, model_config

    spec = FAMILY_PRESETS[family][size]
    cfg = model_config(family, spec, build_tokenizer(family=family))
    for sub, keys in (("text_config", spec.text), ("vision_config", spec.vision)):
        fields = {f.name for f in dataclasses.fields(type(getattr(cfg, sub)))}
        assert set(keys) <= fields, set(keys) - fields
    assert cfg.text_config.vocab_size == spec.vocab_size
    assert cfg.tie_word_embeddings == (size == "real")  # the small checkpoints tie, the 7B/8B do not
    assert type(cfg) is getattr(transformers, MODEL_CLASSES[family][0])
    assert spec.patch_size == cfg.vision_config.patch_size == PATCH[family]
    n = count_parameters(family, size)
    assert abs(n - spec.published_params) / spec.published_params < 0.01, n


def _cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> None:
    assert run_cli(monkeypatch, *args, "-q") == 0, args


def test_cli_chain_per_family(
    family_model: tuple[str, Path], synth_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train-cold (full, and LoRA with --merge-lora) -> train-rl (interrupted, resumed) -> predict -> eval."""
    family, model = family_model
    cold, lora, rl = tmp_path / "cold", tmp_path / "lora", tmp_path / "rl"
    tiny = RECIPES / "tiny_cpu"
    common = ["--pairs", synth_pairs, "--max-steps", "2"]
    _cli(
        monkeypatch,
        "train-cold",
        *common,
        "--model",
        model,
        "--output-dir",
        cold,
        "--recipe",
        tiny / "cold.yaml",
    )
    _cli(
        monkeypatch, "train-cold", *common, "--model", model, "--output-dir", lora,
        "--recipe", tiny / "cold.yaml", "--lora", "--merge-lora",
    )  # fmt: skip
    rl_args = ["--pairs", synth_pairs, "--model", cold, "--output-dir", rl, "--recipe", tiny / "grpo.yaml",
               "--max-completion-length", "8"]  # fmt: skip
    _cli(monkeypatch, "train-rl", *rl_args, "--max-steps", "1", "--save-steps", "1")
    _cli(monkeypatch, "train-rl", *rl_args, "--max-steps", "2", "--save-steps", "1", "--resume")
    for folder in (cold, lora / "merged", rl):
        assert json.loads((folder / "config.json").read_text())["model_type"] == family
    assert (lora / "adapter_config.json").is_file()
    logged = [json.loads(line) for line in (rl / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "loss" in e] == [1, 2]  # step 1 kept, step 2 after the resume
    assert json.loads((rl / "train_summary.json").read_text())["family"] == family

    preds = tmp_path / "preds.jsonl"
    _cli(monkeypatch, "predict", "--backend", "hf", "--model", rl, "--pairs", synth_pairs, "--out", preds,
         "--max-new-tokens", "8", "--device", "cpu")  # fmt: skip
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(p.id for p in read_pairs(synth_pairs))
    ev = tmp_path / "eval"
    merged = lora / "merged"
    _cli(monkeypatch, "eval", "--pairs", synth_pairs, "--out", ev, "--backend", "hf", "--model", merged,
         "--max-new-tokens", "8", "--device", "cpu")  # fmt: skip
    assert json.loads((ev / "metrics.json").read_text())["overall"]["n"] == len(records)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_resumed_full_training_equals_a_straight_run(family: str, synth_pairs: Path, tmp_path: Path) -> None:
    """2 steps + resume to 3 == 3 steps straight, also where checkpoints name the weights differently."""
    import torch
    from safetensors.torch import load_file

    from differad_cli.models.tiny import build_tiny_model
    from differad_cli.train.sft import train_cold

    model = build_tiny_model(tmp_path / "model", family=family)
    base = {
        "pairs": str(synth_pairs), "model": str(model), "save_steps": 1, "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 4, "precision": "fp32", "gradient_checkpointing": False,
        "learning_rate": 1e-2, "seed": 0,
    }  # fmt: skip
    train_cold(output_dir=tmp_path / "straight", options={**base, "max_steps": 3})
    train_cold(output_dir=tmp_path / "cut", options={**base, "max_steps": 2})
    train_cold(output_dir=tmp_path / "cut", options={**base, "max_steps": 3, "resume": True})
    straight, resumed = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("straight", "cut"))
    untrained = load_file(str(model / "model.safetensors"))
    assert sorted(straight) == sorted(resumed) == sorted(untrained)
    assert sum(not torch.equal(straight[k], untrained[k]) for k in straight) > 10
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-5, atol=1e-6)


def _outward(box: tuple[int, ...], sx: float, sy: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return math.floor(x1 * sx), math.floor(y1 * sy), math.ceil(x2 * sx), math.ceil(y2 * sy)


def test_boxes_cross_the_model_boundary_in_the_family_frame(
    family_model: tuple[str, Path], tmp_path: Path
) -> None:
    """A known box on a 200x100 target: the SFT target text and the GRPO ground truth are in the family's
    frame (Qwen2.5-VL: pixels of the image the processor actually produced, here 140x56; else 0-1000), and
    the same answer coming out of the model maps back to the box's target pixels through predict's parser."""
    import torch

    from differad_cli.models.load import load_model_and_processor, resize_params
    from differad_cli.predict.backends.hf import HFBackend
    from differad_cli.protocol.parsing import parse_answer
    from differad_cli.train.configs import RLConfig
    from differad_cli.train.grpo import rl_dataset
    from differad_cli.train.sft import target_text

    family, folder = family_model
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    tgt = ref.copy()
    tgt[20:80, 50:150] = 255
    for name, im in (("ref.png", ref), ("tgt.png", tgt)):
        Image.fromarray(im).save(tmp_path / name)
    record = {"id": "a", "ref": "ref.png", "tgt": "tgt.png", "mask": None, "box": [50, 20, 150, 80],
              "label": 1, "width": 200, "height": 100, "category": "c"}  # fmt: skip
    (tmp_path / "pairs.jsonl").write_text(json.dumps(record) + "\n")
    pairs = read_pairs(tmp_path / "pairs.jsonl")
    model, processor, detected = load_model_and_processor(folder, device="cpu", dtype="fp32")
    assert detected == family

    # the frame the model sees: the processor's own resize of the target image
    grid = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[Image.fromarray(tgt)],
                     return_tensors="pt")["image_grid_thw"][0].tolist()  # fmt: skip
    rh, rw = grid[1] * PATCH[family], grid[2] * PATCH[family]
    if family == "qwen2_5_vl":
        assert (rw, rh) == (140, 56)  # min/max pixels 56^2..112^2, factor 28
        expected, extent = _outward((50, 20, 150, 80), rw / 200, rh / 100), [rw, rh]
        assert expected == (35, 11, 105, 45)
    else:
        expected, extent = (250, 200, 750, 800), [1000, 1000]

    resize = resize_params(processor)
    assert parse_answer(target_text(pairs[0], family, resize)) == expected
    row = rl_dataset(pairs, RLConfig(), family, resize, seed=0)[0]
    assert tuple(row["gt_box"]) == expected and row["extent"] == extent

    # the model answers in its frame; predict maps the answer back to target pixels
    answer = (
        f"<think>bright</think><answer>({expected[0]},{expected[1]}),({expected[2]},{expected[3]})</answer>"
    )
    answer_ids = processor.tokenizer(answer, return_tensors="pt")["input_ids"]

    def scripted_generate(**inputs: object) -> torch.Tensor:
        ids = inputs["input_ids"]
        assert isinstance(ids, torch.Tensor)
        return torch.cat([ids, answer_ids.repeat(ids.shape[0], 1)], dim=1)

    model.generate = scripted_generate
    (pred,) = HFBackend(model, processor, family, max_new_tokens=64).predict(pairs)
    assert pred.valid and pred.text == answer
    assert all(abs(a - b) <= 2 for a, b in zip(pred.box, (50, 20, 150, 80), strict=True)), pred.box


def test_bad_family_and_checkpoint_are_bad_input(
    family_model: tuple[str, Path], synth_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """One line, exit 2, before any model loads (loading is made to fail loudly here)."""
    import transformers

    family, model = family_model

    def no_loading(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_loading)
    odd, untyped = tmp_path / "odd", tmp_path / "untyped"
    for folder, model_type in ((odd, "llava"), (untyped, None)):
        folder.mkdir()
        cfg = json.loads((model / "config.json").read_text())
        cfg.pop("model_type")
        (folder / "config.json").write_text(
            json.dumps(cfg if model_type is None else {**cfg, "model_type": model_type})
        )
    other = next(f for f in FAMILIES if f != family)
    named = tmp_path / "named.yaml"  # a recipe naming no family, but a model path that spells one
    named.write_text(f"model: /models/{PUBLISHED[other]}\nlearning_rate: 1.0e-6\n")
    out = ["--output-dir", tmp_path / "run"]
    cases = [
        (["tiny-model", tmp_path / "t", "--family", "qwen4_vl"], "unknown model family 'qwen4_vl'"),
        (["tiny-model", tmp_path / "t", "--preset", "huge"], "unknown preset 'huge'"),
        (["train-cold", "--pairs", synth_pairs, "--model", odd, *out], "unsupported model_type 'llava'"),
        (["train-rl", "--pairs", synth_pairs, "--model", untyped, *out], "no model_type"),
        (["predict", "--backend", "hf", "--model", odd, "--pairs", synth_pairs, "--out", tmp_path / "p.j"],
         "unsupported model_type 'llava'"),
        (["train-rl", "--pairs", synth_pairs, "--model", model, *out, "--recipe", named],
         f"written for {other}"),
    ]  # fmt: skip
    cases.append(
        (["train-cold", "--pairs", synth_pairs, "--model", model, *out, "--precision", "fp32",
          "--recipe", RECIPES / RECIPE_DIRS[other] / "cold.yaml"], f"written for {other} (family: {other})")
    )  # fmt: skip
    for args, message in cases:
        code = run_cli(monkeypatch, *args)
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists() and not (tmp_path / "run").exists()
    # the family's own recipe passes the check (and fails later, on the missing GPU-size settings only)
    own = RECIPES / RECIPE_DIRS[family] / "cold.yaml"
    code = run_cli(monkeypatch, "train-cold", "--pairs", synth_pairs, "--model", model, *out, "--recipe", own,
                   "--precision", "fp32", "--max-steps", "1")  # fmt: skip
    assert "written for" not in capsys.readouterr().err and code != 0  # reached loading: AssertionError -> 1


def test_tiny_model_dtype_and_device_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """--dtype decides what is saved; unknown dtypes/devices and a missing GPU are one-line usage errors."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bf16"
    assert run_cli(monkeypatch, "tiny-model", folder, "--family", "qwen3_vl", "--dtype", "bf16", "-q") == 0
    capsys.readouterr()  # transformers' own save progress bar
    assert {t.dtype for t in load_file(str(folder / "model.safetensors")).values()} == {torch.bfloat16}
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen3_vl"
    bad = [(["--dtype", "fp16"], "unknown --dtype 'fp16'"), (["--device", "tpu"], "unknown --device 'tpu'")]
    if not torch.cuda.is_available():
        bad.append((["--device", "cuda"], "no CUDA device"))
    for args, message in bad:
        assert run_cli(monkeypatch, "tiny-model", tmp_path / "x", *args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_vision_cache_keeps_the_logits_and_encodes_each_image_once(family_model: tuple[str, Path]) -> None:
    """The frozen tower's memo (train.vision_cache): same logits and gradients as the tower itself, an image
    repeated in a batch (a GRPO group) or seen again (next epoch) is not encoded again, and a tower that
    trains is never served from the memo."""
    import torch
    from transformers import AutoModelForImageTextToText

    from differad_cli.train.model import freeze_vision
    from differad_cli.train.vision_cache import install_vision_cache

    family, folder = family_model
    proc = _plain_processor(family, folder)
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Hi"}]
    prompt = proc.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    rng = np.random.default_rng(1)
    a, b, c = (Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(3))
    inputs = proc(text=[prompt] * 3, images=[a, b, a, b, a, c], return_tensors="pt")  # a 3x, b 2x, c 1x

    def run(model: object) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        logits = model(**inputs).logits
        logits.square().mean().backward()
        return logits.detach(), model.get_input_embeddings().weight.grad.clone()

    torch.manual_seed(0)
    plain = AutoModelForImageTextToText.from_pretrained(folder)
    freeze_vision(plain)
    want_logits, want_grad = run(plain)

    model = AutoModelForImageTextToText.from_pretrained(folder)
    freeze_vision(model)
    cache = install_vision_cache(model, 0.01)
    assert cache is not None
    encoded: list[int] = []
    model.model.visual.register_forward_hook(lambda m, args, out: encoded.append(int(args[0].shape[0])))
    patches = int(inputs["image_grid_thw"][0].prod())
    for _ in range(2):  # first pass: a, b, c encoded once each; second pass: all from the memo
        logits, grad = run(model)
        torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert encoded == [3 * patches]
    assert (cache.misses, cache.hits) == (3, 3 + 6)  # repeats of the first pass, then all six

    next(model.model.visual.parameters()).requires_grad_(True)  # a trained tower: the memo steps aside,
    with torch.no_grad():  # also where no gradient is taken (generation), and for good
        model(**inputs)
    run(model)
    assert encoded == [3 * patches, 6 * patches, 6 * patches] and cache.hits == 9
    assert cache.off and not cache.store and cache.bytes == 0
    assert install_vision_cache(model, 0) is None and install_vision_cache(model, 1.0) is None


def test_vision_cache_size_below_zero_is_bad_input(tmp_path: Path) -> None:
    from differad_cli.core.errors import BadInput
    from differad_cli.train.configs import build_configs

    for kind in ("cold", "rl"):
        with pytest.raises(BadInput, match="vision_cache_gb must be a number >= 0"):
            build_configs(kind, recipe=None, cli={"vision_cache_gb": -1}, output_dir=str(tmp_path))


def test_vision_cache_keeps_an_empty_deepstack_list(tmp_path: Path) -> None:
    """Qwen3-VL without deepstack layers returns deepstack_features=[]: the memo must hand back [] too (None
    broke the model's forward)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from differad_cli.models.tiny import build_tiny_model
    from differad_cli.train.model import freeze_vision
    from differad_cli.train.vision_cache import install_vision_cache

    folder = build_tiny_model(tmp_path / "model", seed=0, family="qwen3_vl")
    config = AutoConfig.from_pretrained(folder)
    config.vision_config.deepstack_visual_indexes = []
    proc = _plain_processor("qwen3_vl", folder)
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Hi"}]
    prompt = proc.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    inputs = proc(text=[prompt], images=images, return_tensors="pt")
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    freeze_vision(model)
    with torch.no_grad():
        want = model(**inputs).logits
        assert install_vision_cache(model, 0.01) is not None
        for _ in range(2):  # a miss, then a hit
            torch.testing.assert_close(model(**inputs).logits, want)
