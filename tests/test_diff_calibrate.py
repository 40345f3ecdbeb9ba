"""`--calibrate`: the diff threshold picked on normal pairs for a chosen false-alarm rate. The bisection
agrees with the full pipeline, the chosen threshold flags at most the asked share of the calibration pairs
when predicting with it, faint defects a fixed threshold misses are found after calibrating on clean normals,
and bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.errors import BadInput
from differad_cli.core.images import save_png
from differad_cli.core.records import Pair, write_pairs
from differad_cli.predict.backends.diff import DiffBackend, DiffConfig, localize
from differad_cli.predict.backends.diff.calibrate import (
    calibration_pairs,
    critical_threshold,
    pick_threshold,
)
from differad_cli.predict.backends.diff.localize import compare
from test_diffloc import scene


def _noisy(img: np.ndarray, seed: int, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_critical_threshold_is_where_the_pipeline_turns_normal() -> None:
    ref = scene(31)
    tgt = ref.copy()
    tgt[60:80, 90:120] = np.clip(tgt[60:80, 90:120].astype(int) + 40, 0, 255).astype(np.uint8)
    cfg = DiffConfig()
    crit = critical_threshold(compare(ref, tgt, cfg)[0], cfg)
    # a raised block stays flagged until its window mean (~40) is under threshold x area_ratio
    assert 40 < crit < 40 / cfg.area_ratio + 2, crit
    assert not localize(ref, tgt, DiffConfig(threshold=crit)).anomalous
    assert localize(ref, tgt, DiffConfig(threshold=crit - 0.5)).anomalous


def test_pick_threshold_flags_at_most_the_asked_share() -> None:
    crit = [5.0, 9.0, 12.0, 30.0, 7.0, 11.0, 8.0, 6.0, 10.0, 40.0]
    assert pick_threshold(crit, 0.0) == (40.0, 0)
    assert pick_threshold(crit, 0.1) == (30.0, 1)
    assert pick_threshold(crit, 0.25) == (12.0, 2)  # floor(2.5) = 2 allowed
    assert pick_threshold(crit, 0.99)[1] <= 9


def _line_set(root: Path, n_good: int, faint: int) -> tuple[Path, Path, list[Pair]]:
    """A golden image, good parts with harmless variation of growing strength (a soft blob +0..+38: the
    critical thresholds spread, so the chosen one depends on the rate) and targets with faint defects."""
    golden = scene(40)
    save_png(root / "golden.png", golden)
    (root / "good").mkdir()
    for i in range(n_good):
        img = _noisy(golden, 100 + i, 1.5).astype(float)
        y, x = 20 + (i * 37) % 120, 20 + (i * 53) % 120
        img[y : y + 30, x : x + 30] += 2.0 * i
        save_png(root / "good" / f"g{i:02d}.png", np.clip(img, 0, 255).astype(np.uint8))
    pairs = []
    for i in range(faint):
        img = _noisy(golden, 200 + i, 1.5).astype(int)
        y, x = 30 + 20 * (i % 5), 40 + 15 * (i % 4)
        img[y : y + 24, x : x + 30] += 14
        save_png(root / f"faint{i}.png", np.clip(img, 0, 255).astype(np.uint8))
        box = (x, y, x + 30, y + 24)
        pairs.append(Pair(f"f{i}", root / "golden.png", root / f"faint{i}.png", box, 1, 192, 192))
    return root / "golden.png", root / "good", pairs


def test_calibrated_threshold_holds_its_false_alarm_rate(tmp_path: Path) -> None:
    golden, good, _ = _line_set(tmp_path, 20, 0)
    pairs = calibration_pairs(good, golden)
    assert len(pairs) == 20 and all(p.ref == golden and p.label == 0 for p in pairs)
    chosen = {}
    for rate in (0.0, 0.1, 0.3):
        backend = DiffBackend()
        summary = backend.calibrate(pairs, rate)
        flagged = sum(p.box != (0, 0, 0, 0) for p in backend.predict(pairs))
        assert flagged == summary["flagged"] <= rate * len(pairs), (rate, summary)
        chosen[rate] = summary["threshold"]
    assert chosen[0.0] > chosen[0.1] > chosen[0.3], chosen  # the rate matters on spread-out parts
    assert DiffBackend().calibrate(pairs, 0.3)["flagged"] >= 1


def test_calibration_never_goes_below_the_quietest_noise_floor(tmp_path: Path) -> None:
    """Noisy good parts (sigma 6) stay normal at any threshold: the calibration saw nothing below their noise
    floors, so it keeps the quietest one's rather than the search's bottom (quiet parts later would be
    flagged at their own noise)."""
    golden = scene(43)
    save_png(tmp_path / "golden.png", golden)
    (tmp_path / "good").mkdir()
    for i in range(8):
        save_png(tmp_path / "good" / f"g{i}.png", _noisy(golden, 500 + i, 6.0))
    summary = DiffBackend().calibrate(calibration_pairs(tmp_path / "good", tmp_path / "golden.png"), 0.0)
    assert summary["threshold"] > 5.0 and summary["flagged"] == 0, summary


def test_the_target_is_never_its_own_reference(tmp_path: Path) -> None:
    """--refs pointing at the calibration folder: each good part would otherwise explain itself."""
    golden, good, _ = _line_set(tmp_path, 10, 0)
    pairs = calibration_pairs(good, golden)
    plain = DiffBackend().calibrate(pairs, 0.0)["threshold"]
    with_refs = DiffBackend(refs_dir=good).calibrate(pairs, 0.0)["threshold"]  # every good part a reference
    assert plain > 10.0 and with_refs > 0.5 * plain, (plain, with_refs)


def test_calibrating_on_quiet_normals_finds_faint_defects(tmp_path: Path) -> None:
    golden = scene(41)
    save_png(tmp_path / "golden.png", golden)
    (tmp_path / "good").mkdir()
    for i in range(12):
        save_png(tmp_path / "good" / f"g{i}.png", _noisy(golden, 300 + i, 1.0))
    targets = []
    for i in range(6):
        img = _noisy(golden, 400 + i, 1.0).astype(int)
        y, x = 30 + 20 * i, 50
        img[y : y + 24, x : x + 30] += 3  # below the default seed levels (16 a pixel, 4 a window)
        save_png(tmp_path / f"t{i}.png", np.clip(img, 0, 255).astype(np.uint8))
        targets.append(
            Pair(
                f"t{i}", tmp_path / "golden.png", tmp_path / f"t{i}.png", (x, y, x + 30, y + 24), 1, 192, 192
            )
        )
    found_default = sum(p.box != (0, 0, 0, 0) for p in DiffBackend().predict(targets))
    backend = DiffBackend()
    summary = backend.calibrate(calibration_pairs(tmp_path / "good", tmp_path / "golden.png"), 0.0)
    assert summary["threshold"] < 11
    found = sum(p.box != (0, 0, 0, 0) for p in backend.predict(targets))
    assert found_default <= 1 and found >= 5, (found_default, found, summary)


def test_calibration_pairs_sources(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    img = scene(42, 64)
    for i in range(5):
        save_png(tmp_path / "good" / f"g{i}.png", img)
    pairs = calibration_pairs(tmp_path / "good", seed=3)
    assert sorted(p.tgt.name for p in pairs) == [f"g{i}.png" for i in range(5)]
    assert all(p.ref != p.tgt for p in pairs)
    assert [p.ref for p in pairs] == [p.ref for p in calibration_pairs(tmp_path / "good", seed=3)]
    manifest = tmp_path / "pairs.jsonl"
    ref, tgt = tmp_path / "good" / "g0.png", tmp_path / "good" / "g1.png"
    write_pairs(
        manifest, [Pair("a", ref, tgt, (0, 0, 0, 0), 0, 64, 64), Pair("b", ref, tgt, (1, 1, 9, 9), 1, 64, 64)]
    )
    assert [p.id for p in calibration_pairs(manifest)] == ["a"]
    write_pairs(tmp_path / "anomalous.jsonl", [Pair("b", ref, tgt, (1, 1, 9, 9), 1, 64, 64)])
    for source in (tmp_path / "anomalous.jsonl", tmp_path / "missing", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(BadInput):
            calibration_pairs(source)
    (tmp_path / "one").mkdir()
    save_png(tmp_path / "one" / "g.png", img)
    with pytest.raises(BadInput, match="two images"):
        calibration_pairs(tmp_path / "one")


def test_cli_calibrate_and_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    golden, good, pairs = _line_set(tmp_path, 8, 2)
    code = run_cli(monkeypatch, "predict", "--ref", golden, *(p.tgt for p in pairs), "--calibrate", good,
                   "--false-alarm", "0.1", "--json")  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "calibrated threshold" in out.err and "on 8 normal pairs" in out.err
    answers = [json.loads(x) for x in out.out.splitlines() if x.startswith("{")]
    assert len(answers) == 2
    for bad in (
        ["--calibrate", good, "--threshold", "20"],
        ["--calibrate", good, "--threshold", "auto"],
        ["--calibrate", good, "--false-alarm", "1.5"],
        ["--calibrate", tmp_path / "nothing"],
        ["--calibrate", good, "--backend", "openai", "--endpoint", "http://127.0.0.1:9", "--model", "m"],
    ):
        assert run_cli(monkeypatch, "predict", "--ref", golden, pairs[0].tgt, *bad) == 2, bad
        assert "Traceback" not in capsys.readouterr().err


def test_diff_options_with_another_backend_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The diff backend's options given to another backend exit 2 naming the option, instead of being
    ignored without a word; --false-alarm needs --calibrate."""
    golden, _good, pairs = _line_set(tmp_path, 2, 1)
    openai = ["--backend", "openai", "--endpoint", "http://127.0.0.1:9", "--model", "m"]
    for extra, flag in (
        (["--illumination", "global"], "--illumination"),
        (["--threshold", "20"], "--threshold"),
        (["--min-area", "0.01"], "--min-area"),
        (["--n-refs", "3"], "--n-refs"),
        (["--refs", str(tmp_path / "good")], "--refs"),
    ):
        assert run_cli(monkeypatch, "predict", "--ref", golden, pairs[0].tgt, *openai, *extra) == 2, extra
        err = capsys.readouterr().err
        assert f"{flag} is an option of the diff backend" in err and "Traceback" not in err, err
    assert run_cli(monkeypatch, "predict", "--ref", golden, pairs[0].tgt, "--false-alarm", "0.1") == 2
    err = capsys.readouterr().err
    assert "--false-alarm" in err and "--calibrate" in err and "Traceback" not in err, err
