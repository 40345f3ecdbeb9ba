"""The pieces the learning benchmark stands on: the learner preset's geometry, the short <think>, the
constant-answer baselines and the DCLR-vs-IoU signal measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from differad_cli.core.errors import BadInput
from differad_cli.core.records import Pair
from differad_cli.models.presets import FAMILY_PRESETS


def _pair(i: int, box: tuple[int, int, int, int], size: int = 200) -> Pair:
    label = int(box != (0, 0, 0, 0))
    return Pair(
        id=f"p{i}", ref=Path("r.png"), tgt=Path("t.png"), box=box, label=label, width=size, height=size
    )


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
def test_demo_preset_gives_16_image_tokens_and_is_told_apart(family: str, tmp_path: Path) -> None:
    """The demo learner: the learner's architecture at a 4x4 token grid, text weights drawn at std 0.08; a
    built folder is recognized as its preset (a resumed demo checks its learner with it), a tiny one too."""
    from PIL import Image

    from differad_cli.models.load import load_processor
    from differad_cli.models.tiny import build_tiny_model, preset_of

    out = build_tiny_model(tmp_path / "demo", family=family, preset_name="demo")
    grid = load_processor(out).image_processor(images=[Image.new("RGB", (224, 224))], return_tensors="np")
    assert int(np.prod(grid["image_grid_thw"][0])) // 4 == 16
    assert FAMILY_PRESETS[family]["demo"].text["initializer_range"] == 0.08
    assert preset_of(out, family) == "demo"
    tiny = build_tiny_model(tmp_path / "tiny", family=family, preset_name="tiny")
    assert preset_of(tiny, family) == "tiny" and preset_of(tmp_path / "missing", family) is None


@pytest.mark.parametrize("family", sorted(FAMILY_PRESETS))
def test_learner_preset_gives_64_image_tokens_and_separable_positions(family: str, tmp_path: Path) -> None:
    """A square image of any size becomes an 8x8 token grid; the rotary height/width frequencies are large
    enough to tell 8 positions apart (the probes' failure at rope_theta 1e4 / head_dim 32)."""
    from PIL import Image

    from differad_cli.models.load import load_processor
    from differad_cli.models.tiny import build_tiny_model

    out = build_tiny_model(tmp_path / "learner", family=family, preset_name="learner")
    proc = load_processor(out)
    tokens = {}
    for size in ((224, 224), (900, 900), (640, 480)):
        img = Image.new("RGB", size, (120, 30, 200))
        tokens[size] = int(
            np.prod(proc.image_processor(images=[img], return_tensors="np")["image_grid_thw"][0])
        )
    assert tokens[(224, 224)] // 4 == tokens[(900, 900)] // 4 == 64, tokens
    assert 48 <= tokens[(640, 480)] // 4 <= 64, tokens  # the aspect ratio is kept within the same budget
    rope = FAMILY_PRESETS[family]["learner"].text["rope_parameters"]
    head_dim = FAMILY_PRESETS[family]["learner"].text["head_dim"]
    assert sum(rope["mrope_section"]) == head_dim // 2
    inv = rope["rope_theta"] ** (-np.arange(0, head_dim, 2) / head_dim)
    assert inv.max() >= 0.5 and np.sort(inv)[len(inv) // 2] >= 0.05  # most frequencies separate 8 positions


def test_short_think_names_where_and_how_large() -> None:
    from differad_cli.train.sft import target_text

    resize = {"height": 224, "width": 224}
    ano = target_text(_pair(0, (0, 0, 80, 80)), "qwen2_vl", resize, think="short")
    assert ano.startswith("<think>A medium-sized region, upper left.</think><answer>("), ano
    nor = target_text(_pair(1, (0, 0, 0, 0)), "qwen2_vl", resize, think="short")
    assert nor == "<think>The images match.</think><answer>(0,0),(0,0)</answer>"
    assert target_text(_pair(1, (0, 0, 0, 0)), "qwen2_vl", resize, think="empty").startswith(
        "<think></think>"
    )


def test_grid_think_scans_rows_and_columns_and_snaps_the_box() -> None:
    """The grid <think>: one digit per row, then per column of an 8x8 grid (a cell counts when the box covers
    >= 30% of it; a sliver gets the cell holding its centre), and the answer is the box those cells make."""
    from differad_cli.protocol.descriptions import grid_scan
    from differad_cli.train.sft import target_text

    assert grid_scan(_pair(0, (0, 0, 80, 80))) == ("y 11100000 x 11100000", (0, 0, 75, 75))
    assert grid_scan(_pair(1, (10, 140, 190, 200))) == ("y 00000111 x 11111111", (0, 125, 200, 200))
    assert grid_scan(_pair(2, (100, 100, 103, 103))) == ("y 00001000 x 00001000", (100, 100, 125, 125))
    assert grid_scan(_pair(3, (0, 0, 0, 0))) == ("y 00000000 x 00000000", (0, 0, 0, 0))
    # cell edges round outward: a 1-px box on a cell boundary stays inside the snapped box (70 px: 8.75/cell)
    _, (x1, y1, x2, y2) = grid_scan(_pair(6, (17, 17, 18, 18), size=70))
    assert x1 <= 17 and x2 >= 18 and y1 <= 17 and y2 >= 18, (x1, y1, x2, y2)
    resize = {"min_pixels": 200 * 200, "max_pixels": 200 * 200, "factor": 28}
    text = target_text(_pair(4, (0, 0, 80, 80)), "qwen3_vl", resize, think="grid")
    assert text == "<think>y 11100000 x 11100000</think><answer>(0,0),(375,375)</answer>", text
    nor = target_text(_pair(5, (0, 0, 0, 0)), "qwen3_vl", resize, think="grid")
    assert nor == "<think>y 00000000 x 00000000</think><answer>(0,0),(0,0)</answer>"
    # the scan follows the model's image-token grid: 4x4 for a 128x128 learner (factor 32), capped at 8 a side
    # for a real model's larger grids, and rows and columns apart for a wide image
    small = {"min_pixels": 128 * 128, "max_pixels": 128 * 128, "factor": 32}
    text = target_text(_pair(7, (0, 0, 80, 80)), "qwen3_vl", small, think="grid")
    assert text == "<think>y 1100 x 1100</think><answer>(0,0),(500,500)</answer>", text
    real = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280, "factor": 28}
    assert target_text(_pair(8, (0, 0, 300, 300), size=800), "qwen2_vl", real, think="grid").startswith(
        "<think>y 11100000 x 11100000</think>"
    )
    assert grid_scan(_pair(9, (0, 0, 80, 80)), 2, 5) == ("y 10 x 11000", (0, 0, 80, 100))
    wide = Pair(
        id="w", ref=Path("r.png"), tgt=Path("t.png"), box=(0, 0, 56, 112), label=1, width=448, height=224
    )
    assert target_text(wide, "qwen3_vl", small, think="grid").startswith("<think>y 10 x 10000</think>")
    normal_wide = Pair(
        id="n", ref=Path("r.png"), tgt=Path("t.png"), box=(0, 0, 0, 0), label=0, width=448, height=224
    )
    assert target_text(normal_wide, "qwen3_vl", small, think="grid").startswith("<think>y 00 x 00000</think>")


def test_unknown_think_is_bad_input(tmp_path: Path) -> None:
    from differad_cli.train.configs import build_configs

    with pytest.raises(BadInput, match="unknown think 'long'"):
        build_configs("cold", recipe=None, cli={"think": "long"}, output_dir=str(tmp_path))


def test_constant_baselines_score_what_a_blind_answer_scores() -> None:
    from differad_cli.eval.baselines import best_constant, constant_baselines, median_box_fractions

    train = [_pair(0, (0, 0, 100, 100)), _pair(1, (20, 20, 120, 120)), _pair(2, (40, 40, 140, 140))]
    train.append(_pair(3, (0, 0, 0, 0)))
    assert median_box_fractions(train) == pytest.approx((0.1, 0.1, 0.6, 0.6))
    held = [_pair(10, (20, 20, 120, 120)), _pair(11, (150, 150, 200, 200)), _pair(12, (0, 0, 0, 0))]
    held.append(_pair(13, (0, 0, 0, 0), size=400))
    base = constant_baselines(train, held)
    assert base["always normal"]["acc_0.3"] == pytest.approx(0.5)  # the two normal pairs
    assert base["median training box"]["acc_0.3"] == pytest.approx(0.25)  # exactly pair 10's box
    assert base["whole image"]["image_recall"] == pytest.approx(1.0)
    assert best_constant(base, "acc_0.3") == ("always normal", pytest.approx(0.5))


def test_signal_shares_count_groups_where_only_dclr_varies() -> None:
    from differad_cli.train.resampling import signal_shares

    gt = [100.0, 100.0, 200.0, 200.0]
    near, far = "<answer>(210,210),(260,260)</answer>", "<answer>(700,700),(900,900)</answer>"
    hit = "<answer>(100,100),(200,200)</answer>"
    texts = [near, far, far, far, hit, far]
    out = signal_shares(texts, [gt] * 6, [1] * 6, group_size=2)
    # groups: (near, far) IoU flat, DCLR varies; (far, far) flat and constant; (hit, far) not flat
    assert out["signal/iou_flat"] == pytest.approx(2 / 3)
    assert out["signal/iou_flat_dclr_varies"] == pytest.approx(1 / 3)
    normal = signal_shares([near, far], [[0, 0, 0, 0]] * 2, [0, 0], group_size=2)
    assert np.isnan(normal["signal/iou_flat"])


def test_rl_warns_when_its_prompt_wording_is_new_to_the_checkpoint(tmp_path: Path, capsys) -> None:
    """A learner cold-started on the canonical prompt answered paraphrased RL prompts with garbage (every
    format reward 0): train-rl says so when the checkpoint's summary records paraphrase false."""
    import json
    from types import SimpleNamespace

    from differad_cli.train.common import check_prompt_wording

    (tmp_path / "train_summary.json").write_text(
        json.dumps({"prompt": {"template": "differad", "paraphrase": False}}), encoding="utf-8"
    )
    check_prompt_wording(SimpleNamespace(paraphrase=True, template="differad"), tmp_path)
    assert "--no-paraphrase" in capsys.readouterr().err
    check_prompt_wording(SimpleNamespace(paraphrase=False, template="differad"), tmp_path)
    check_prompt_wording(SimpleNamespace(paraphrase=True, template="differad"), tmp_path / "missing")
    assert capsys.readouterr().err == ""
    check_prompt_wording(SimpleNamespace(paraphrase=False, template="staged"), tmp_path)
    assert "template 'differad'" in capsys.readouterr().err
    (tmp_path / "checkpoint-200").mkdir()  # a checkpoint inside the run: the run's summary is read
    check_prompt_wording(SimpleNamespace(paraphrase=True, template="differad"), tmp_path / "checkpoint-200")
    assert "--no-paraphrase" in capsys.readouterr().err
    for odd in ('{"prompt": [1]}', '{"prompt": "x"}', "[1, 2]", '{"prompt": null}'):
        (tmp_path / "train_summary.json").write_text(odd, encoding="utf-8")
        check_prompt_wording(SimpleNamespace(paraphrase=True, template="differad"), tmp_path)
    assert capsys.readouterr().err == ""


def test_predict_prompts_a_checkpoint_with_the_template_it_was_trained_on(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A learner cold-started on the compact prompt answers the paper's with garbage: `predict --model` uses
    the template the checkpoint's run recorded unless --template says otherwise; without a record (a model
    differad did not train), the paper's."""
    import json

    from differad_cli.predict.backends import make_backend
    from differad_cli.predict.backends.hf import HFBackend
    from differad_cli.predict.config import PredictOptions

    used: list[str] = []
    monkeypatch.setattr(
        HFBackend, "from_path", classmethod(lambda cls, path, **kw: used.append(kw["template"]))
    )
    run = tmp_path / "run"
    (run / "checkpoint-50").mkdir(parents=True)
    (run / "train_summary.json").write_text(
        json.dumps({"prompt": {"template": "compact", "paraphrase": False}}), encoding="utf-8"
    )
    (run / "merged").mkdir()
    models = (
        (run, None),
        (run / "checkpoint-50", None),
        (run / "merged", None),
        (run, "staged"),
        (tmp_path, None),
    )
    for model, template in models:
        make_backend(PredictOptions(backend="hf", model=str(model), template=template))
    assert used == ["compact", "compact", "compact", "staged", "differad"]
    # a checkpoint of a run that has not finished: no record yet, the fallback is said
    live = tmp_path / "live"
    (live / "checkpoint-20").mkdir(parents=True)
    (live / "train_log.jsonl").write_text("{}\n", encoding="utf-8")
    make_backend(PredictOptions(backend="hf", model=str(live / "checkpoint-20")))
    assert used[-1] == "differad" and "has not finished" in capsys.readouterr().err
    (run / "train_summary.json").write_text(json.dumps({"prompt": {"template": "future"}}), encoding="utf-8")
    with pytest.raises(BadInput, match="records the template 'future'"):
        make_backend(PredictOptions(backend="hf", model=str(run)))
