"""`differad predict`: human line, --json, --overlay, batch mode with resume, bad input, the hf backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import load_rgb, save_png
from differad_cli.core.records import Prediction, read_pairs, read_predictions


def textured(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (size // 8, size // 8, 3)).astype(np.uint8)
    import cv2

    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    ref = textured(0)
    bad = ref.copy()
    bad[30:50, 40:70] = (255, 0, 255)
    paths = {"ref": tmp_path / "ref.png", "bad": tmp_path / "bad.png", "good": tmp_path / "good.png"}
    save_png(paths["ref"], ref)
    save_png(paths["bad"], bad)
    save_png(paths["good"], np.clip(ref.astype(int) + 10, 0, 255).astype(np.uint8))
    save_png(tmp_path / "small_ref.png", ref[::2, ::2])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return paths


def test_human_line_anomalous_and_normal(images, monkeypatch, capsys) -> None:
    assert run_cli(monkeypatch, "predict", images["ref"], images["bad"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("anomalous: box (")
    assert "region covering" in line  # the diff backend's explanation
    assert run_cli(monkeypatch, "predict", images["ref"], images["good"]) == 0
    assert capsys.readouterr().out.startswith("normal: no anomaly found")


def test_json_and_overlay(images, tmp_path, monkeypatch, capsys) -> None:
    overlay = tmp_path / "viz" / "o.png"
    assert run_cli(monkeypatch, "predict", images["ref"], images["bad"], "--json", "--overlay", overlay) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) >= {"ref", "tgt", "box", "label", "valid", "text", "backend", "elapsed_ms"}
    assert obj["backend"] == "diff" and obj["label"] == 1 and obj["valid"] is True
    x1, y1, x2, y2 = obj["box"]
    assert abs(x1 - 40) <= 3 and abs(y1 - 30) <= 3 and abs(x2 - 70) <= 3 and abs(y2 - 50) <= 3
    assert obj["elapsed_ms"] >= 0
    img = load_rgb(overlay)
    assert img.shape[0] >= 96 and img.shape[1] >= 2 * 96  # reference beside target


def test_reference_of_other_size_is_resized_with_warning(images, tmp_path, monkeypatch, capsys) -> None:
    assert run_cli(monkeypatch, "predict", tmp_path / "small_ref.png", images["bad"], "--json") == 0
    cap = capsys.readouterr()
    assert "resized to the target" in cap.err
    assert json.loads(cap.out)["label"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/broken.png", "{tmp}/bad.png"], "cannot read image"),
        (["{tmp}/missing.png", "{tmp}/bad.png"], "not found"),
        ([], "give REF and TGT"),
        (["{tmp}/ref.png", "{tmp}/bad.png", "--pairs", "{tmp}/p.jsonl"], "not both"),
        (["--pairs", "{tmp}/p.jsonl"], "--pairs needs --out"),
        (["{tmp}/ref.png", "{tmp}/bad.png", "--backend", "hf"], "needs --model"),
        (["{tmp}/ref.png", "{tmp}/bad.png", "--backend", "gpt"], "unknown backend"),
        (["{tmp}/ref.png", "{tmp}/bad.png", "--threshold", "-1"], "--threshold must be positive"),
        (["{tmp}/ref.png", "{tmp}/bad.png", "--model", "{tmp}/nomodel"], "model folder not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(images, tmp_path, monkeypatch, capsys, args, message) -> None:
    code = run_cli(monkeypatch, "predict", *(a.format(tmp=tmp_path) for a in args))
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_batch_mode_writes_prediction_records(synth_pairs: Path, tmp_path, monkeypatch) -> None:
    out = tmp_path / "preds.jsonl"
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", out, "-q") == 0
    pairs = read_pairs(synth_pairs)
    preds = read_predictions(out)
    assert [p.id for p in preds] == [p.id for p in pairs]
    assert all(p.valid and p.score is not None for p in preds)
    assert not list(tmp_path.glob(".preds.jsonl.partial"))
    # the diff backend is not random: anomalous synthetic pairs are mostly found (a sanity floor)
    from differad_cli.core.boxes import iou

    hits = [iou(q.box, p.box) >= 0.3 for p, q in zip(pairs, preds, strict=True) if p.label]
    assert sum(hits) >= len(hits) // 2


def test_batch_mode_resumes_after_interruption(synth_pairs: Path, tmp_path, monkeypatch) -> None:
    from differad_cli.predict import run as P

    seen: list[str] = []

    class Flaky:
        def __init__(self, fail_after: int | None):
            self.fail_after = fail_after

        def predict(self, pairs):
            if self.fail_after is not None and len(seen) >= self.fail_after:
                raise KeyboardInterrupt
            seen.extend(p.id for p in pairs)
            return [Prediction(p.id, (0, 0, 0, 0), True, "ok") for p in pairs]

    out = tmp_path / "preds.jsonl"
    opts = P.PredictOptions()
    monkeypatch.setattr(P, "make_backend", lambda o: Flaky(fail_after=4))
    with pytest.raises(KeyboardInterrupt):
        P.predict_file(synth_pairs, out, opts, chunk=4)
    assert not out.exists() and P.partial_path(out).is_file() and len(seen) == 4
    monkeypatch.setattr(P, "make_backend", lambda o: Flaky(fail_after=None))
    preds = P.predict_file(synth_pairs, out, opts, chunk=4)
    ids = [p.id for p in read_pairs(synth_pairs)]
    assert [p.id for p in preds] == ids and len(seen) == len(ids)  # nothing predicted twice
    assert not P.partial_path(out).exists()
    # other options: the partial file is not trusted
    P.partial_path(out).write_text(json.dumps({P.RESUME_KEY: "other"}) + "\n")
    seen.clear()
    P.predict_file(synth_pairs, out, P.PredictOptions(threshold=5.0), chunk=4)
    assert len(seen) == len(ids)


def test_resume_survives_options_that_do_not_change_answers(synth_pairs: Path, tmp_path, monkeypatch) -> None:
    from differad_cli.predict import run as P

    seen: list[str] = []

    class Stop:
        def predict(self, pairs):
            if len(seen) >= 4:
                raise KeyboardInterrupt
            seen.extend(p.id for p in pairs)
            return [Prediction(p.id, (0, 0, 0, 0), True, "ok") for p in pairs]

    out = tmp_path / "preds.jsonl"
    monkeypatch.setattr(P, "make_backend", lambda o: Stop())
    with pytest.raises(KeyboardInterrupt):
        P.predict_file(synth_pairs, out, P.PredictOptions(), chunk=4)
    assert len(seen) == 4
    seen.clear()

    class All:
        def predict(self, pairs):
            seen.extend(p.id for p in pairs)
            return [Prediction(p.id, (0, 0, 0, 0), True, "ok") for p in pairs]

    monkeypatch.setattr(P, "make_backend", lambda o: All())
    other = P.PredictOptions(timeout=5.0, retries=0, device="cpu", concurrency=9, batch_size=2)
    preds = P.predict_file(synth_pairs, out, other, chunk=4)
    n = len(read_pairs(synth_pairs))
    assert len(preds) == n and len(seen) == n - 4  # the 4 finished predictions were kept


def _bad_out(monkeypatch, capsys, *args: object) -> str:
    code = run_cli(monkeypatch, "predict", *args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_batch_out_is_checked_before_any_work(synth_pairs: Path, tmp_path, monkeypatch, capsys) -> None:
    from differad_cli.predict import run as P

    monkeypatch.setattr(P, "make_backend", lambda o: pytest.fail("no prediction may run"))
    before = synth_pairs.read_bytes()
    assert "replace the input" in _bad_out(monkeypatch, capsys, "--pairs", synth_pairs, "--out", synth_pairs)
    assert synth_pairs.read_bytes() == before
    folder = tmp_path / "odir"
    folder.mkdir()
    assert "is a folder" in _bad_out(monkeypatch, capsys, "--pairs", synth_pairs, "--out", folder)
    assert list(tmp_path.glob(".odir*")) == [] and list(folder.iterdir()) == []
    (tmp_path / "afile").write_text("x")
    err = _bad_out(monkeypatch, capsys, "--pairs", synth_pairs, "--out", tmp_path / "afile" / "p.jsonl")
    assert "not a folder" in err
    assert "names an image" in _bad_out(
        monkeypatch, capsys, "--pairs", synth_pairs, "--out", tmp_path / "x.png"
    )


def test_explanation_and_human_line() -> None:
    from differad_cli.predict.run import explanation, human_line

    assert explanation("<think> a  scratch\nnear the edge </think><answer>(1,2),(3,4)</answer>") == (
        "a scratch near the edge"
    )
    assert explanation("blah <answer>(1,2),(3,4)</answer>") == "blah"
    res = {"valid": False, "label": 0, "box": [0, 0, 0, 0], "text": "garbage"}
    assert human_line(res).startswith("invalid:") and "garbage" in human_line(res)


# ---------------------------------------------------------------------------------------------- hf


def test_hf_backend_on_tiny_model_produces_records(tiny_model_dir: Path, synth_pairs: Path) -> None:
    from differad_cli.predict.backends.hf import HFBackend

    pairs = read_pairs(synth_pairs)[:5]
    backend = HFBackend.from_path(tiny_model_dir, max_new_tokens=12, batch_size=4, device="cpu")
    preds = backend.predict(pairs)
    assert [p.id for p in preds] == [p.id for p in pairs]
    for pair, pred in zip(pairs, preds, strict=True):
        assert isinstance(pred.text, str) and isinstance(pred.valid, bool)
        x1, y1, x2, y2 = pred.box
        assert 0 <= x1 <= x2 <= pair.width and 0 <= y1 <= y2 <= pair.height
    again = backend.predict(pairs)
    assert [p.text for p in again] == [p.text for p in preds]  # greedy and seeded: reproducible
    # batch composition does not change answers (left padding)
    single = HFBackend(backend.model, backend.processor, backend.family, max_new_tokens=12, batch_size=1)
    assert [p.text for p in single.predict(pairs[:2])] == [p.text for p in preds[:2]]


def test_hf_backend_qwen2_5_vl_uses_processor_resized_size(tiny_model_dir: Path) -> None:
    from differad_cli.core.coords import smart_resize
    from differad_cli.models.load import load_model_and_processor, resize_params
    from differad_cli.predict.backends.hf import HFBackend

    model, processor, _ = load_model_and_processor(tiny_model_dir, device="cpu")
    b = HFBackend(model, processor, "qwen2_5_vl", max_new_tokens=4)
    img = textured(1, 64)
    texts, grids = b.generate([img], [img[:, :60]])
    assert len(texts) == 1
    expected = smart_resize(64, 60, **resize_params(processor))
    assert b._resized_hw(grids, 0, 60, 64) == expected
    assert b._resized_hw(None, 0, 60, 64) == expected
    # a train-mode model comes back in train mode, with its tokenizer and RNG state untouched
    import torch

    model.train()
    processor.tokenizer.padding_side = "right"
    state = torch.random.get_rng_state()
    b.generate([img], [img])
    assert model.training and processor.tokenizer.padding_side == "right"
    assert torch.equal(state, torch.random.get_rng_state())


def test_hf_backend_through_cli_json(tiny_model_dir: Path, images, monkeypatch, capsys) -> None:
    args = [
        "predict",
        images["ref"],
        images["bad"],
        "--model",
        tiny_model_dir,
        "--json",
        "--max-new-tokens",
        8,
    ]
    assert run_cli(monkeypatch, *args) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["backend"] == "hf" and isinstance(obj["valid"], bool) and isinstance(obj["text"], str)


def test_predict_pairs_api_feeds_metrics(synth_pairs: Path) -> None:
    from differad_cli.eval.metrics import score
    from differad_cli.predict.run import PredictOptions, predict_pairs

    pairs = read_pairs(synth_pairs)
    preds = predict_pairs(pairs, PredictOptions(backend="diff"))
    assert [p.id for p in preds] == [p.id for p in pairs]
    # nothing passes: pixel seeds need 1100, window-mean seeds a quarter of it (> 255): all normal
    strict = predict_pairs(pairs, PredictOptions(threshold=1100.0))
    assert all(p.box == (0, 0, 0, 0) for p in strict)
    m = score(pairs, {p.id: p for p in preds})["overall"]
    m_strict = score(pairs, {p.id: p for p in strict})["overall"]
    assert m_strict["miou_ano"] == 0.0 and m["miou_ano"] > 0.3
