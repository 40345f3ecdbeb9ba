"""`predict --backend diff --maps DIR` (each pair's anomaly map as DIR/<id>.npy, read back by `eval --maps`)
and `--threshold auto` (each pair's own seed threshold from its noise)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import load_pair_images
from differad_cli.core.records import read_pairs, write_pairs
from differad_cli.predict.backends.diff import DiffConfig, localize
from differad_cli.predict.backends.diff.maps import MARKER


def nested(synth_pairs: Path, tmp_path: Path) -> Path:
    """The shared synthetic set with ids holding '/' (as `differad pair` writes them): maps in sub-folders."""
    pairs = read_pairs(synth_pairs)
    for p in pairs:
        p.id = f"{p.category}/test/{p.id}"
    out = tmp_path / "pairs.jsonl"
    write_pairs(out, pairs)
    return out


def predict(monkeypatch, pairs: Path, out: Path, *args: object) -> int:
    return run_cli(monkeypatch, "predict", "--pairs", pairs, "--out", out, "--backend", "diff", *args)


def test_maps_round_trip_through_eval(synth_pairs, tmp_path, monkeypatch) -> None:
    pairs_path = nested(synth_pairs, tmp_path)
    maps = tmp_path / "maps"
    assert predict(monkeypatch, pairs_path, tmp_path / "pred.jsonl", "--maps", maps) == 0
    pairs = read_pairs(pairs_path)
    for p in pairs:
        m = np.load(maps / f"{p.id}.npy", allow_pickle=False)
        assert m.dtype == np.float32 and m.ndim == 2 and np.isfinite(m).all() and m.min() >= 0
    # the file is the backend's own map for the pair, unchanged
    p = pairs[0]
    ref, tgt = load_pair_images(p.ref, p.tgt)
    want = localize(ref, tgt, DiffConfig(), keep_map=True).diff_map
    np.testing.assert_array_equal(np.load(maps / f"{p.id}.npy"), want)
    # an anomalous pair's map peaks inside its ground-truth box (map -> target pixels by eval's resize)
    ano = next(q for q in pairs if q.label == 1)
    amap = np.load(maps / f"{ano.id}.npy")
    y, x = np.unravel_index(int(np.argmax(amap)), amap.shape)
    sx, sy = ano.width / amap.shape[1], ano.height / amap.shape[0]
    assert ano.box[0] - 2 <= x * sx <= ano.box[2] + 2 and ano.box[1] - 2 <= y * sy <= ano.box[3] + 2
    ev = tmp_path / "eval"
    assert run_cli(monkeypatch, "eval", "--pairs", pairs_path, "--maps", maps, "--out", ev) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["calibration"]["n_cal"] + m["calibration"]["n_eval"] == len(pairs)
    assert m["overall"]["miou_ano"] is not None and m["overall"]["miou_ano"] > 0.3  # the maps carry signal


def test_maps_folder_rules(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    foreign = maps / "synth-000000.npy"
    np.save(foreign, np.zeros((2, 2), np.float32))  # not ours: refused before any work, kept
    assert predict(monkeypatch, synth_pairs, tmp_path / "p.jsonl", "--maps", maps) == 2
    assert "--maps" in capsys.readouterr().err and np.load(foreign).shape == (2, 2)
    assert not (tmp_path / "p.jsonl").exists()
    assert predict(monkeypatch, synth_pairs, tmp_path / "p.jsonl", "--maps", maps, "--force") == 0
    assert (maps / MARKER).is_file() and np.load(foreign).ndim == 2 and np.load(foreign).shape != (2, 2)
    # a folder of ours is replaced by a new run without --force
    assert predict(monkeypatch, synth_pairs, tmp_path / "q.jsonl", "--maps", maps, "--threshold", "40") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pairs", "{tmp}/p.jsonl", "--out", "{tmp}/o.jsonl", "--backend", "hf", "--model", "{tmp}"], "hf"),
        (["{tmp}/a.png", "{tmp}/b.png"], "--maps goes with batch mode"),
    ],
)
def test_maps_refused_where_there_is_no_map_or_no_id(tmp_path, monkeypatch, capsys, args, message) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    assert run_cli(monkeypatch, "predict", *args, "--maps", tmp_path / "m") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "m").exists()
    assert "--maps" in err


def test_an_id_leaving_the_maps_folder_is_refused(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    pairs = read_pairs(synth_pairs)
    pairs[3].id = "../../escape"
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    code = predict(monkeypatch, tmp_path / "pairs.jsonl", tmp_path / "p.jsonl", "--maps", tmp_path / "m")
    assert code == 2 and "'../../escape' cannot name a file" in capsys.readouterr().err
    assert not (tmp_path / "escape.npy").exists() and not tmp_path.parent.joinpath("escape.npy").exists()


def test_threshold_auto_is_per_pair_and_bad_values_exit_2(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    from differad_cli.predict.backends.diff.localize import AUTO_K, AUTO_MIN, auto_threshold

    assert auto_threshold(0.1) == AUTO_MIN  # a clean pair: the floor
    assert auto_threshold(10.0) == pytest.approx(AUTO_K * 10.0) and AUTO_K * 10.0 > AUTO_MIN  # a noisy one
    assert predict(monkeypatch, synth_pairs, tmp_path / "a.jsonl", "--threshold", "auto") == 0
    texts = [json.loads(x)["text"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    used = {t.split("threshold ")[1].rstrip(")") for t in texts}
    assert len(used) > 1  # the pairs' own thresholds, not one number
    assert predict(monkeypatch, synth_pairs, tmp_path / "b.jsonl", "--threshold", "high") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--threshold must be a number (0-255 units) or auto, got 'high'" in err[-1]
