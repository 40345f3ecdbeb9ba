"""`differad synth --resume` trusts nothing it cannot verify: foreign manifest lines are refused (file:line,
nothing touched), damaged pictures of finished samples are redone, settings that cannot be verified refuse."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from differad_cli.core.errors import BadInput
from differad_cli.core.images import png_intact
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.run import synthesize


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run: n=8, 64 px, seed 3."""
    out = tmp_path_factory.mktemp("full")
    synthesize(SynthConfig(out=out, n=8, size=64, seed=3, workers=1))
    return out


@pytest.fixture
def part_run(full_run: Path, tmp_path: Path) -> Path:
    """The first 5 samples of ``full_run`` (an interrupted run, as it is left on disk)."""
    out = tmp_path / "run"
    shutil.copytree(full_run, out)
    lines = (out / "pairs.jsonl").read_text().splitlines(keepends=True)
    (out / "pairs.jsonl").write_text("".join(lines[:5]))
    for sub in ("ref", "tgt", "mask"):
        for p in (out / sub).glob("*.png"):
            if int(p.stem) >= 5:
                p.unlink()
    return out


def _resume(out: Path, **kw: object) -> object:
    opts: dict = {"out": out, "n": 8, "size": 64, "seed": 3, "workers": 1, "resume": True, **kw}
    return synthesize(SynthConfig(**opts))


def _bigger(line: str) -> str:
    return re.sub(r'"(width|height)": \d+', r'"\1": 128', line)


def _lines(out: Path) -> list[str]:
    return (out / "pairs.jsonl").read_text().splitlines(keepends=True)


FOREIGN = {
    "a line of the user": (3, lambda ls: [*ls[:2], '{"id": "mine", "ref": "a.png"}\n', *ls[2:]]),
    "not JSON": (2, lambda ls: [ls[0], "my notes\n", *ls[1:]]),
    "not UTF-8": (2, lambda ls: [ls[0], "\udcff\n", *ls[1:]]),
    "lines swapped": (2, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]]),
    "a line repeated": (4, lambda ls: [*ls[:3], ls[2], *ls[3:]]),
    "an extra field": (1, lambda ls: [ls[0].replace('{"id"', '{"note": 1, "id"'), *ls[1:]]),
    "another file name": (1, lambda ls: [ls[0].replace("tgt/000000.png", "tgt/x.png"), *ls[1:]]),
    "another size": (1, lambda ls: [_bigger(ls[0]), *ls[1:]]),
    "a last line of the user without newline": (6, lambda ls: [*ls, "my notes"]),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_a_foreign_line_is_refused_and_nothing_is_touched(part_run: Path, case: str) -> None:
    lineno, edit = FOREIGN[case]
    manifest = part_run / "pairs.jsonl"
    manifest.write_bytes("".join(edit(_lines(part_run))).encode("utf-8", "surrogateescape"))
    before = _tree(part_run)
    with pytest.raises(BadInput, match=re.escape(f"{manifest}:{lineno} ")) as e:
        _resume(part_run)
    assert "\n" not in str(e.value) and "--resume" in str(e.value)
    assert _tree(part_run) == before  # the manifest, the settings and every picture as they were


def test_a_torn_last_line_is_dropped_and_redone(part_run: Path, full_run: Path) -> None:
    lines = _lines(part_run)
    (part_run / "pairs.jsonl").write_text("".join(lines[:4]) + lines[4][:30])
    summary = _resume(part_run)
    assert summary.resumed == 4 and summary.generated == 4  # type: ignore[attr-defined]
    assert _tree(part_run) == _tree(full_run)


def test_damaged_pictures_of_finished_samples_are_redone(part_run: Path, full_run: Path) -> None:
    masked = sorted(int(p.stem) for p in (part_run / "mask").glob("*.png"))
    assert masked, "the run needs an anomalous sample among the first five"
    m = masked[0]
    bad = {1, 2, m}
    k = min({0, 3, 4} - bad)  # a sample left alone
    tgt = part_run / "tgt" / "000001.png"
    tgt.write_bytes(tgt.read_bytes()[:-40])  # truncated
    ref = part_run / "ref" / "000002.png"
    data = bytearray(ref.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    ref.write_bytes(bytes(data))
    (part_run / "mask" / f"{m:06d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a header only
    other = full_run / "ref" / "000007.png"  # intact and of our size, but not this sample's: kept
    shutil.copy(other, part_run / "ref" / f"{k:06d}.png")
    summary = _resume(part_run)
    assert summary.resumed == 5 - len(bad) and summary.generated == 3 + len(bad)  # type: ignore[attr-defined]
    want = _tree(full_run)
    want[f"ref/{k:06d}.png"] = other.read_bytes()
    assert _tree(part_run) == want


def test_png_intact() -> None:
    import numpy as np

    from differad_cli.core.images import encode_png

    png = encode_png(np.zeros((6, 9, 3), np.uint8))
    assert png_intact_bytes(png, (9, 6)) and png_intact_bytes(png, None)
    assert not png_intact_bytes(png, (6, 9))  # another size
    assert not png_intact_bytes(png[:-1], None) and not png_intact_bytes(png + b"x", None)
    assert not png_intact_bytes(b"", None) and not png_intact_bytes(b"GIF89a", None)


def png_intact_bytes(data: bytes, size: tuple[int, int] | None) -> bool:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(data)
        f.flush()
        return png_intact(f.name, size)


@pytest.mark.parametrize("damage", ["missing", "torn", "not UTF-8", "a list"])
@pytest.mark.parametrize("size", ["64", "128"])
def test_settings_that_cannot_be_verified_refuse(part_run, damage, size, monkeypatch, capsys) -> None:
    settings = part_run / "synth.json"
    if damage == "missing":
        settings.unlink()
    else:
        settings.write_bytes({"torn": b'{"size": 6', "not UTF-8": b"\xff\xfe", "a list": b"[]"}[damage])
    before = _tree(part_run)
    args = (
        "synth",
        "--out",
        part_run,
        "--n",
        "8",
        "--size",
        size,
        "--seed",
        "3",
        "--workers",
        "1",
        "--resume",
    )
    assert run_cli(monkeypatch, *args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cannot verify settings" in lines[0] and "new folder" in lines[0], lines
    assert str(settings) in lines[0]
    assert _tree(part_run) == before


def test_other_settings_still_refuse_and_the_same_resume(part_run: Path, full_run: Path) -> None:
    with pytest.raises(BadInput, match="different settings"):
        _resume(part_run, size=128)
    assert json.loads((part_run / "synth.json").read_text())["size"] == 64
    _resume(part_run)
    assert _tree(part_run) == _tree(full_run)


def test_a_run_from_before_surfaces_existed_resumes(part_run: Path, full_run: Path) -> None:
    """synth.json written before --surfaces existed lacks the key; textured was all there was, so such a run
    resumes (the user's interrupted run is not lost) and one with --surfaces blank still refuses."""
    settings = json.loads((part_run / "synth.json").read_text())
    del settings["surfaces"]
    (part_run / "synth.json").write_text(json.dumps(settings))
    with pytest.raises(BadInput, match=r"different settings \(surfaces\)"):
        _resume(part_run, surfaces="blank")
    _resume(part_run)
    assert _tree(part_run) == {**_tree(full_run), "synth.json": (part_run / "synth.json").read_bytes()}
    assert json.loads((part_run / "synth.json").read_text())["surfaces"] == "textured"
