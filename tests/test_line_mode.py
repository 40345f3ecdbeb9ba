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
from typing import Any

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


def _lines(stream) -> Any:
    """A queue fed with ``stream``'s lines by a reader thread (so a test can wait with a timeout)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(stream.readline, "")], daemon=True).start()
    return lines


def _next_line(lines: Any, timeout: float, holding: str = "") -> str:
    """The next line holding ``holding`` within ``timeout`` seconds (others are skipped), else fail."""
    import queue

    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line with {holding!r} within {timeout:.0f} s") from None
        if holding in line:
            return line


def test_watch_answers_new_files_as_they_arrive_and_ctrl_c_ends_cleanly(line, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    save_png(watched / "old.png", _line(5))  # present before the start: not answered
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = ["predict", "--ref", str(line["golden"]), "--watch", str(watched)]
    # SIGINT back to its default in the child: a suite started in the background (`make test &`) ignores it,
    # and an ignored SIGINT is inherited, so Python would never turn Ctrl-C into KeyboardInterrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "differad_cli", *cmd],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    out, err = _lines(proc.stdout), _lines(proc.stderr)
    try:
        _next_line(
            err, 120.0, "watching"
        )  # the folder's present files are noted: a start that load can't race
        partial = watched / "new.png"
        data = (line["dir"] / "t1.png").read_bytes()
        partial.write_bytes(data[: len(data) // 2])  # a file still being written
        time.sleep(0.6)
        partial.write_bytes(data)
        first = json.loads(_next_line(out, 120.0))
        assert Path(first["tgt"]).name == "new.png" and first["label"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130
    time.sleep(0.5)  # the reader thread drains what the process wrote before it ended
    rest = []
    while not out.empty():
        rest.append(out.get())
    assert not any("old.png" in x for x in rest)


# ------------------------------------------------------------------------------------- --ref-map


@pytest.fixture
def mixed(tmp_path: Path) -> dict[str, Path]:
    """A mixed line: line/a/ and line/b/ hold targets of two products (a clean copy and a defective one of
    each), line/c/ a clean copy of a third product; golden images of the three under goldens/."""
    (tmp_path / "goldens").mkdir()
    paths = {"line": tmp_path / "line"}
    for seed, cat in enumerate("abc", start=11):
        golden = _line(seed)
        paths[cat] = tmp_path / "goldens" / f"{cat}.png"
        save_png(paths[cat], golden)
        (paths["line"] / cat).mkdir(parents=True)
        save_png(paths["line"] / cat / f"{cat}-ok.png", golden)
        if cat != "c":
            bad = golden.copy()
            bad[30:55, 20:50] = (255, 0, 255)
            save_png(paths["line"] / cat / f"{cat}-bad.png", bad)
    return paths


def _decodes(monkeypatch) -> dict[str, int]:
    """How often each file is decoded."""
    import differad_cli.core.images as images

    counts: dict[str, int] = {}
    decode = images._decode

    def counted(p):
        counts[Path(p).name] = counts.get(Path(p).name, 0) + 1
        return decode(p)

    monkeypatch.setattr(images, "_decode", counted)
    return counts


def test_ref_map_picks_each_targets_reference_by_folder(mixed, monkeypatch, capsys) -> None:
    from differad_cli.predict.backends.diff import DiffBackend

    counts = _decodes(monkeypatch)
    prepared: list[Path] = []
    with_reference = DiffBackend.with_reference

    def spy(self, ref, image=None):
        prepared.append(Path(ref))
        return with_reference(self, ref, image)

    monkeypatch.setattr(DiffBackend, "with_reference", spy)
    args = ["--ref-map", f"a={mixed['a']}", "--ref-map", f"b={mixed['b']}", "--targets", mixed["line"]]
    assert run_cli(monkeypatch, "predict", *args) == 0
    cap = capsys.readouterr()
    got = {Path(a["tgt"]).name: a for a in _answers(cap.out)}
    assert sorted(got) == ["a-bad.png", "a-ok.png", "b-bad.png", "b-ok.png"]
    for name, answer in got.items():
        assert answer["ref"] == str(mixed[name[0]])  # a clean copy is normal only against its own golden
        assert answer["label"] == (1 if "bad" in name else 0), name
    assert "skipping" in cap.err and "category 'c'" in cap.err and "1 skipped" in cap.err
    assert counts["a.png"] == counts["b.png"] == 1 and "c.png" not in counts  # each reference read once
    assert sorted(p.name for p in prepared) == ["a.png", "b.png"]  # and prepared once


def test_ref_map_yaml_with_ref_as_the_default(mixed, monkeypatch, capsys, tmp_path: Path) -> None:
    counts = _decodes(monkeypatch)
    (tmp_path / "refs.yaml").write_text("a: goldens/a.png\n'b': goldens/b.png\nalias: goldens/a.png\n")
    monkeypatch.chdir(mixed["line"])  # YAML paths are relative to the YAML file, not to the working folder
    ok = [mixed["line"] / c / f"{c}-ok.png" for c in "abc"]
    args = ["predict", "--ref-map", tmp_path / "refs.yaml", "--ref", mixed["c"], *ok]
    assert run_cli(monkeypatch, *args) == 0
    got = _answers(capsys.readouterr().out)
    assert [Path(a["ref"]).name for a in got] == ["a.png", "b.png", "c.png"]
    assert [a["label"] for a in got] == [0, 0, 0]
    assert counts["a.png"] == 1  # two categories, one file: decoded once


def test_watch_sees_new_images_in_subfolders(tmp_path: Path) -> None:
    from differad_cli.predict.line import watch_folder
    from differad_cli.predict.refmap import References

    (tmp_path / "a").mkdir()
    save_png(tmp_path / "a" / "old.png", _line(1))
    stream = watch_folder(tmp_path, poll_s=0.05)
    (tmp_path / ".partial").mkdir()
    save_png(tmp_path / ".partial" / "x.png", _line(2))  # hidden: a writer's temporary name
    (tmp_path / "b").mkdir()
    save_png(tmp_path / "b" / "new.png", _line(3))
    new = next(stream)
    assert new == tmp_path / "b" / "new.png" and References.category(new) == "b"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref-map", "a=missing.png", "{t}"], "--ref-map a=missing.png"),
        (["--ref-map", "a={golden}", "--ref-map", "b={broken}", "{t}"], "--ref-map b="),
        (["--ref-map", "a={golden}", "--ref-map", "a={broken}", "{t}"], "two references"),
        (["--ref-map", "a", "{t}"], "expected CATEGORY=PATH or a YAML file"),
        (["--ref-map", "={golden}", "{t}"], "not a category"),
        (["--ref-map", "a=", "{t}"], "the path is missing"),
        (["--ref-map", "nothere.yaml", "{t}"], "no such YAML file"),
        (["--ref-map", "numeric.yaml", "{t}"], "quote it"),
        (["--ref-map", "list.yaml", "{t}"], "expected a mapping"),
        (["--ref-map", "a={golden}"], "--ref-map needs targets"),
        (["--ref-map", "a={golden}", "{t}", "--out", "p.jsonl"], "do not apply to line mode (--ref-map)"),
        (["--targets", "{t}"], "or --ref-map"),
    ],
)
def test_bad_ref_map_exits_2_before_any_answer(line, monkeypatch, capsys, tmp_path, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "numeric.yaml").write_text(f"01: {line['golden']}\n")
    (tmp_path / "list.yaml").write_text(f"- {line['golden']}\n")
    args = [a.format(golden=line["golden"], broken="broken.png", t=line["dir"] / "t0.png") for a in args]
    assert run_cli(monkeypatch, "predict", *args) == 2
    cap = capsys.readouterr()
    assert message in cap.err and cap.out == ""
    assert "Traceback" not in cap.err and len(cap.err.strip().splitlines()) == 1
