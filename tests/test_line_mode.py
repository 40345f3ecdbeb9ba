"""Line mode: `predict --ref GOLDEN` answers a stream of targets (arguments, a folder, a glob, stdin, a
watched folder) with one flushed JSONL line each, the same answers as one-pair mode, skipping unreadable
targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from differad_cli.core.images import save_png


def _line(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    import cv2

    return cv2.resize(
        rng.integers(40, 200, (12, 12, 3)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
    )


@pytest.fixture
def line(tmp_path: Path) -> dict[str, Path]:
    golden = _line(0)
    save_png(tmp_path / "golden.png", golden)
    (tmp_path / "in").mkdir()
    for i in range(4):
        img = golden.copy()
        if i % 2:
            img[20 + 10 * i : 40 + 10 * i, 30:55] = (255, 0, 255)
        save_png(tmp_path / "in" / f"t{i}.png", img)
    return {"golden": tmp_path / "golden.png", "dir": tmp_path / "in"}


def _answers(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_targets_as_arguments_give_the_one_pair_answers(line, monkeypatch, capsys) -> None:
    targets = sorted(line["dir"].glob("*.png"))
    assert run_cli(monkeypatch, "predict", "--ref", line["golden"], *targets) == 0
    got = _answers(capsys.readouterr().out)
    assert [a["tgt"] for a in got] == [str(t) for t in targets]
    assert [a["label"] for a in got] == [0, 1, 0, 1]
    for t, a in zip(targets, got, strict=True):
        assert run_cli(monkeypatch, "predict", line["golden"], t, "--json") == 0
        one = json.loads(capsys.readouterr().out)
        assert (one["box"], one["label"], one["text"]) == (a["box"], a["label"], a["text"])


def test_folder_glob_and_stdin_sources(line, monkeypatch, capsys) -> None:
    assert run_cli(monkeypatch, "predict", "--ref", line["golden"], "--targets", line["dir"]) == 0
    assert len(_answers(capsys.readouterr().out)) == 4
    assert (
        run_cli(monkeypatch, "predict", "--ref", line["golden"], "--targets", str(line["dir"] / "t[13].png"))
        == 0
    )
    assert [Path(a["tgt"]).name for a in _answers(capsys.readouterr().out)] == ["t1.png", "t3.png"]
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{line['dir'] / 't2.png'}\n\n{line['dir'] / 't0.png'}\n"))
    assert run_cli(monkeypatch, "predict", "--ref", line["golden"], "--targets", "-") == 0
    assert [Path(a["tgt"]).name for a in _answers(capsys.readouterr().out)] == ["t2.png", "t0.png"]


def test_unreadable_target_is_skipped_and_the_stream_goes_on(line, monkeypatch, capsys) -> None:
    bad = line["dir"] / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    ok = line["dir"] / "t1.png"
    assert run_cli(monkeypatch, "predict", "--ref", line["golden"], bad, ok) == 0
    cap = capsys.readouterr()
    assert [Path(a["tgt"]).name for a in _answers(cap.out)] == ["t1.png"]
    assert "skipping" in cap.err and "1 skipped" in cap.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref", "missing.png", "x.png"], "--ref missing.png"),
        (["--targets", "somewhere"], "need --ref"),
        (["--ref", "GOLDEN"], "needs targets"),
        (["--ref", "GOLDEN", "x.png", "--out", "p.jsonl"], "do not apply to line mode"),
        (["--ref", "GOLDEN", "--targets", "nothing*.png"], "matches nothing"),
    ],
)
def test_bad_line_mode_input_exits_2(line, monkeypatch, capsys, tmp_path, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(line["golden"]) if a == "GOLDEN" else a for a in args]
    assert run_cli(monkeypatch, "predict", *args) == 2
    assert message in capsys.readouterr().err


def test_watch_answers_new_files_as_they_arrive_and_ctrl_c_ends_cleanly(line, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    save_png(watched / "old.png", _line(5))  # present before the start: not answered
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = ["predict", "--ref", str(line["golden"]), "--watch", str(watched)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "differad_cli", *cmd],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(3.0)  # imports
        partial = watched / "new.png"
        data = (line["dir"] / "t1.png").read_bytes()
        partial.write_bytes(data[: len(data) // 2])  # a file still being written
        time.sleep(0.6)
        partial.write_bytes(data)
        first = json.loads(proc.stdout.readline())
        assert Path(first["tgt"]).name == "new.png" and first["label"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "old.png" not in out
