"""`--num-processes N`: the manifest sharded over N spawned processes, merged in input order, resumable
per shard (tested with 2 CPU processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli
from differad_cli.core.records import read_pairs, read_predictions
from differad_cli.predict import PredictOptions
from differad_cli.predict.run import _fingerprint, predict_file
from differad_cli.predict.shards import shard_path


def test_two_processes_give_the_single_process_answers_in_input_order(synth_pairs: Path, tmp_path) -> None:
    one = predict_file(synth_pairs, tmp_path / "one.jsonl", PredictOptions(backend="diff"))
    two = predict_file(synth_pairs, tmp_path / "two.jsonl", PredictOptions(backend="diff", num_processes=2))
    ids = [p.id for p in read_pairs(synth_pairs)]
    assert [p.id for p in two] == ids
    assert [p.to_dict() for p in two] == [p.to_dict() for p in one]
    assert [p.to_dict() for p in read_predictions(tmp_path / "two.jsonl")] == [p.to_dict() for p in one]
    assert not list(tmp_path.glob(".two.jsonl.shard-*")), "shard files are removed after the merge"


def test_a_finished_shard_is_reused_and_only_the_rest_runs(synth_pairs: Path, tmp_path, capsys) -> None:
    out = tmp_path / "pred.jsonl"
    opts = PredictOptions(backend="diff", num_processes=2)
    # an earlier run that finished shard 0 only (shard 1 was interrupted)
    fp = _fingerprint(opts, synth_pairs)
    first = predict_file(synth_pairs, shard_path(out, 0, 2, fp), opts, shard=(0, 2))
    capsys.readouterr()
    preds = predict_file(synth_pairs, out, opts)
    err = capsys.readouterr().err
    assert "shard 1/2 already done" in err and "shard 2/2 already done" not in err
    assert [p.to_dict() for p in preds[0::2]] == [p.to_dict() for p in first]


def test_a_shard_file_of_other_pairs_is_not_trusted(synth_pairs: Path, tmp_path, capsys) -> None:
    out = tmp_path / "pred.jsonl"
    opts = PredictOptions(backend="diff", num_processes=2)
    fp = _fingerprint(opts, synth_pairs)
    predict_file(synth_pairs, shard_path(out, 1, 2, fp), opts, shard=(1, 2))  # shard 1's pairs
    shard_path(out, 1, 2, fp).rename(shard_path(out, 0, 2, fp))  # ... under shard 0's name
    capsys.readouterr()
    preds = predict_file(synth_pairs, out, opts)
    assert "already done" not in capsys.readouterr().err
    assert [p.id for p in preds] == [p.id for p in read_pairs(synth_pairs)]


def test_a_shard_made_with_other_options_is_not_reused(synth_pairs: Path, tmp_path, capsys) -> None:
    out = tmp_path / "pred.jsonl"
    loose = PredictOptions(backend="diff", num_processes=2)
    predict_file(synth_pairs, shard_path(out, 0, 2, _fingerprint(loose, synth_pairs)), loose, shard=(0, 2))
    capsys.readouterr()
    # beyond both seed levels (pixels: the threshold; windows: a quarter of it): every pair normal
    strict = PredictOptions(backend="diff", threshold=1100.0, num_processes=2)
    preds = predict_file(synth_pairs, out, strict)
    assert "already done" not in capsys.readouterr().err
    assert not any(p.is_anomalous for p in preds)  # all computed at the strict threshold


def test_hf_backend_over_two_processes_matches_one(synth_pairs: Path, tiny_model_dir: Path, tmp_path) -> None:
    common = {"backend": "hf", "model": str(tiny_model_dir), "max_new_tokens": 12, "device": "cpu"}
    one = predict_file(synth_pairs, tmp_path / "one.jsonl", PredictOptions(**common))
    two = predict_file(synth_pairs, tmp_path / "two.jsonl", PredictOptions(**common, num_processes=2))
    assert [p.to_dict() for p in two] == [p.to_dict() for p in one]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-processes", "0"], "--num-processes must be at least 1"),
        (["--num-processes", "2", "--endpoint", "http://127.0.0.1:9/v1"], "--concurrency"),
    ],
)
def test_bad_process_counts_exit_2(synth_pairs: Path, tmp_path, monkeypatch, capsys, args, message) -> None:
    code = run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", tmp_path / "p.jsonl", *args)
    assert code == 2
    assert message in capsys.readouterr().err


def test_one_pair_mode_refuses_several_processes(synth_pairs: Path, monkeypatch, capsys) -> None:
    pair = read_pairs(synth_pairs)[0]
    assert run_cli(monkeypatch, "predict", pair.ref, pair.tgt, "--num-processes", "2") == 2
    assert "batch mode" in capsys.readouterr().err
