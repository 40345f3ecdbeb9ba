"""Output rules (core/io.py): stdout, special files written in place, files of the user never replaced."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import png_tag, save_png
from differad_cli.core.io import atomic_write
from differad_cli.core.records import read_predictions


def _pictures(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (48, 48, 3)).astype(np.uint8)
    tgt = ref.copy()
    tgt[10:20, 10:30] = 255
    save_png(tmp_path / "ref.png", ref)
    save_png(tmp_path / "tgt.png", tgt)
    return tmp_path / "ref.png", tmp_path / "tgt.png"


def test_out_dash_streams_records_to_stdout(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", "-", "-q") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and all("box" in json.loads(line) for line in lines)
    assert not (tmp_path / "-").exists() and not list(tmp_path.iterdir())


def test_fifo_is_written_in_place_never_renamed_over(synth_pairs, tmp_path, monkeypatch) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", fifo, "-q") == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert len(got[0].decode().splitlines()) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no resume file beside it


def test_atomic_write_into_a_special_file_keeps_it(tmp_path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic_write(fifo, ["a", "b"])
    reader.join(10)
    assert got == [b"a\nb\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_file_of_the_user_is_refused_unless_forced(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", notes) == 2
    err = capsys.readouterr().err
    assert str(notes) in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert notes.read_text() == "my own notes\n"
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", notes, "--force", "-q") == 0
    assert len(read_predictions(notes)) == 12
    # a prediction file of ours is replaced without --force
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", notes, "-q") == 0


def test_synth_keeps_a_folder_of_the_user(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "mine"
    (out / "ref").mkdir(parents=True)
    (out / "ref" / "000000.png").write_bytes(b"my picture")
    (out / "synth.json").write_text('{"mine": 1}')
    assert run_cli(monkeypatch, "synth", "--out", out, "--n", "2", "--size", "64") == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "ref" / "000000.png").read_bytes() == b"my picture"
    assert (out / "synth.json").read_text() == '{"mine": 1}'
    assert run_cli(monkeypatch, "synth", "--out", out, "--n", "2", "--size", "64", "--force", "-q") == 0


def test_eval_keeps_a_folder_of_the_user(synth_pairs, tmp_path, monkeypatch, capsys) -> None:
    pred = tmp_path / "pred.jsonl"
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", pred, "-q") == 0
    out = tmp_path / "ev"
    out.mkdir()
    (out / "report.md").write_text("my report")
    assert run_cli(monkeypatch, "eval", "--pairs", synth_pairs, "--pred", pred, "--out", out) == 2
    assert (out / "report.md").read_text() == "my report"
    capsys.readouterr()
    ev2 = tmp_path / "ev2"
    for _ in range(2):  # a folder of ours is rewritten
        assert run_cli(monkeypatch, "eval", "--pairs", synth_pairs, "--pred", pred, "--out", ev2, "-q") == 0


def test_overlay_rules(tmp_path, monkeypatch, capsys) -> None:
    ref, tgt = _pictures(tmp_path)
    assert run_cli(monkeypatch, "predict", ref, tgt, "--overlay", tmp_path) == 2  # a folder
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"holiday photo")
    assert run_cli(monkeypatch, "predict", ref, tgt, "--overlay", mine) == 2
    assert mine.read_bytes() == b"holiday photo"
    ours = tmp_path / "ov.png"
    for _ in range(2):  # our own overlay is replaced on a re-run
        assert run_cli(monkeypatch, "predict", ref, tgt, "--overlay", ours) == 0
    assert png_tag(ours) == "differad overlay"
    err = capsys.readouterr().err
    assert "Traceback" not in err


def _no_temp(*args: object, **kwargs: object) -> None:
    raise PermissionError(13, "Permission denied")


def test_read_only_folders_are_bad_input(tmp_path, monkeypatch, capsys) -> None:
    """Root ignores folder permissions, so the refusal of the file system is simulated."""
    ref, tgt = _pictures(tmp_path)
    monkeypatch.setattr(tempfile, "mkstemp", _no_temp)
    monkeypatch.setattr(tempfile, "mkdtemp", _no_temp)
    assert run_cli(monkeypatch, "predict", ref, tgt, "--overlay", tmp_path / "ro" / "ov.png") == 2
    assert run_cli(monkeypatch, "tiny-model", tmp_path / "model") == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and "Traceback" not in err


def test_a_character_device_is_never_replaced(synth_pairs, tmp_path, monkeypatch) -> None:
    """A private copy of /dev/null (never the real one: a regression would replace it)."""
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        dev.write_bytes(b"x")
    except OSError:
        pytest.skip("cannot create or write a device node here")
    assert run_cli(monkeypatch, "predict", "--pairs", synth_pairs, "--out", dev, "-q") == 0
    assert stat.S_ISCHR(os.stat(dev).st_mode)


def test_eval_scores_predictions_kept_inside_its_own_out_folder(tmp_path: Path, monkeypatch) -> None:
    """A predict-then-eval flow (the demo's) keeps predictions.jsonl in the eval folder: not a clash."""
    from differad_cli.eval import EvalConfig, run_eval
    from differad_cli.predict import PredictOptions, predict_file
    from differad_cli.synth import SynthConfig, synthesize

    synthesize(SynthConfig(out=tmp_path / "d", n=4, size=64, seed=0, workers=1))
    pred = tmp_path / "eval" / "predictions.jsonl"
    predict_file(tmp_path / "d" / "pairs.jsonl", pred, PredictOptions(backend="diff"))
    metrics = run_eval(EvalConfig(tmp_path / "d" / "pairs.jsonl", tmp_path / "eval", pred=pred))
    assert metrics["overall"]["n"] == 4


class _FullDisk:
    """A file object over a real descriptor whose writes fail as on a full disk."""

    def __init__(self, fd: int, *args: object, **kwargs: object) -> None:
        self._f = _real_fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


_real_fdopen = os.fdopen


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch) -> None:
    from differad_cli.core import io
    from differad_cli.core.errors import BadInput

    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    monkeypatch.setattr(io.os, "fdopen", _FullDisk)
    with pytest.raises(BadInput, match=f"^no space left on device writing {re.escape(str(target))}$"):
        atomic_write(target, ["new"])
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    log = tmp_path / "log.jsonl"
    with pytest.raises(BadInput, match=re.escape(f"writing {log}")), io.writing(log):  # the appenders
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError), io.writing(target):  # other errors are not disguised
        raise PermissionError(errno.EACCES, "Permission denied")


def test_a_full_disk_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    from differad_cli.core import io

    monkeypatch.setattr(io.os, "fdopen", _FullDisk)
    out = tmp_path / "o"
    assert run_cli(monkeypatch, "synth", "--out", out, "--n", "2", "--size", "48", "--workers", "1") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("differad: error: no space left on device writing ")
    assert str(out) in lines[0]
