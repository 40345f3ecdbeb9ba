"""`differad synth` end to end: determinism across workers, resume, real-image inputs, bad input (exit 2)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from differad_cli.core.boxes import mask_box
from differad_cli.core.errors import BadInput
from differad_cli.core.images import load_mask, load_rgb
from differad_cli.core.records import read_pairs
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.run import synthesize


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "differad_cli", "synth", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def _assert_bad_input(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("differad: error:"), res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------- determinism


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process run: n=10, 64 px, seed 5."""
    out = tmp_path_factory.mktemp("ref_run")
    synthesize(SynthConfig(out=out, n=10, size=64, seed=5, workers=1))
    return out


def test_byte_identical_across_workers_and_reruns(reference_run: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    summary = synthesize(SynthConfig(out=two, n=10, size=64, seed=5, workers=2))
    assert summary.written == summary.generated == 10
    assert _tree(two) == _tree(reference_run)
    again = tmp_path / "again"
    synthesize(SynthConfig(out=again, n=10, size=64, seed=5, workers=1))
    assert _tree(again) == _tree(reference_run)
    other = tmp_path / "other"
    synthesize(SynthConfig(out=other, n=10, size=64, seed=6, workers=1))
    assert _tree(other)["pairs.jsonl"] != _tree(reference_run)["pairs.jsonl"]


def test_resume_after_interruption_matches_an_uninterrupted_run(reference_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    synthesize(SynthConfig(out=out, n=6, size=64, seed=5, workers=1))
    manifest = out / "pairs.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    # Interrupted mid-write: four whole lines and half of the fifth; one finished sample lost a file.
    manifest.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    (out / "tgt" / "000002.png").unlink()
    (out / "tgt" / ".000003.png.abc.tmp").write_bytes(b"partial")
    kept = out / "ref" / "000000.png"
    before = kept.stat().st_mtime_ns
    summary = synthesize(SynthConfig(out=out, n=10, size=64, seed=5, workers=1, resume=True))
    assert summary.resumed == 3 and summary.generated == 7  # 0, 1, 3 kept; 2 and 4-9 made
    assert kept.stat().st_mtime_ns == before  # finished samples are not redone
    assert _tree(out) == _tree(reference_run)


def test_resume_refuses_changed_settings(tmp_path: Path) -> None:
    synthesize(SynthConfig(out=tmp_path, n=2, size=64, seed=1, workers=1))
    with pytest.raises(BadInput, match="different settings"):
        synthesize(SynthConfig(out=tmp_path, n=4, size=96, seed=1, workers=1, resume=True))


# ---------------------------------------------------------------------------------------------- real inputs


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid PNG header claiming side x side pixels (nothing big is ever allocated here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


@pytest.fixture(scope="module")
def normals_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Defect-free images in every awkward form, in two category subfolders, plus broken files."""
    root = tmp_path_factory.mktemp("normals")
    (root / "cap").mkdir()
    (root / "plate").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:80, :120]
    disk = ((yy - 40) ** 2 + (xx - 60) ** 2 < 25**2).astype(np.uint8)
    gray = (30 + 170 * disk + rng.integers(0, 10, disk.shape)).astype(np.uint8)
    cv2.imwrite(str(root / "cap" / "gray.png"), gray)  # 120 x 80 grayscale
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    cv2.imwrite(str(root / "cap" / "rgba.png"), rgba)
    cv2.imwrite(str(root / "plate" / "deep.png"), (gray.astype(np.uint16) * 257))  # 16-bit
    cv2.imwrite(str(root / "plate" / "photo.jpg"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (root / "plate" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    good = cv2.imencode(".png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    (root / "plate" / "truncated.png").write_bytes(good[: len(good) // 2])  # header fine, data cut
    _png_bomb(root / "plate" / "bomb.png")
    return root


def test_real_normals_in_any_format_with_bad_files_skipped(normals_dir: Path, tmp_path: Path, capfd) -> None:
    out = tmp_path / "out"
    summary = synthesize(SynthConfig(out=out, normals=normals_dir, n=12, size=64, seed=0, workers=1))
    err = capfd.readouterr().err
    assert "decompression bomb" in err and "bomb.png" in err
    assert "corrupt.png" in err and "truncated.png" in err
    skipped = {Path(p).name for p in summary.skipped}
    assert skipped == {"bomb.png", "corrupt.png", "truncated.png"}
    pairs = read_pairs(out / "pairs.jsonl")
    assert len(pairs) == 12 and summary.written == 12
    assert {p.category for p in pairs} == {"cap", "plate"}
    sources = {p.extra["synth"]["source"] for p in pairs}
    assert sources == {"cap/gray.png", "cap/rgba.png", "plate/deep.png", "plate/photo.jpg"}
    for p in pairs:
        src = p.extra["synth"]["source"]
        # aspect kept: 120x80 sources become 64x43, the square jpg 64x64
        assert (p.width, p.height) == ((64, 64) if src.endswith(".jpg") else (64, 43))
        assert load_rgb(p.tgt).shape == (p.height, p.width, 3)
        if p.label:
            assert p.box == mask_box(load_mask(p.mask))


def test_real_normals_byte_identical_across_workers(normals_dir: Path, tmp_path: Path) -> None:
    runs = []
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        synthesize(SynthConfig(out=out, normals=normals_dir, n=10, size=48, seed=3, workers=w))
        runs.append(_tree(out))
    assert runs[0] == runs[1]


def test_unguarded_caller_script_with_workers_finishes(tmp_path: Path) -> None:
    """A script without `if __name__ == '__main__'` must not hang or recurse when workers start."""
    script = tmp_path / "gen.py"
    script.write_text(
        "import sys\n"
        "from differad_cli.synth import SynthConfig, synthesize\n"
        "print(synthesize(SynthConfig(out=sys.argv[1], n=6, size=48, workers=2)).written)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "6"


def test_texture_folder_is_used_and_bad_textures_skipped(normals_dir: Path, tmp_path: Path) -> None:
    tex = tmp_path / "dtd" / "banded"
    tex.mkdir(parents=True)
    rng = np.random.default_rng(1)
    cv2.imwrite(str(tex / "a.jpg"), rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(tex / "b.png"), rng.integers(0, 256, (40, 50), dtype=np.uint8))
    (tex / "c.png").write_bytes(b"not a png")
    cfg = SynthConfig(out=tmp_path / "o", textures=tmp_path / "dtd", n=12, size=48, p_normal=0.0, workers=1)
    summary = synthesize(cfg)
    assert [Path(p).name for p in summary.skipped] == ["c.png"]
    used = {p.extra["synth"]["texture"] for p in read_pairs(tmp_path / "o" / "pairs.jsonl") if p.label}
    assert used and used <= {"banded/a.jpg", "banded/b.png"}


def test_square_resize_and_fg_none(normals_dir: Path, tmp_path: Path) -> None:
    cfg = SynthConfig(out=tmp_path, normals=normals_dir, n=4, size=48, resize="square", fg="none", workers=1)
    synthesize(cfg)
    assert {(p.width, p.height) for p in read_pairs(tmp_path / "pairs.jsonl")} == {(48, 48)}


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_writes_pairs_and_a_json_summary(tmp_path: Path) -> None:
    res = _cli("--out", tmp_path / "o", "--n", "3", "--size", "48", "--json", "--workers", "1")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["written"] == 3 and summary["skipped"] == []
    assert "pairs/s" in res.stderr
    assert len(read_pairs(tmp_path / "o" / "pairs.jsonl")) == 3


def test_cli_refuses_an_existing_manifest_without_resume(tmp_path: Path) -> None:
    synthesize(SynthConfig(out=tmp_path, n=2, size=48, workers=1))
    before = _tree(tmp_path)
    _assert_bad_input(_cli("--out", tmp_path, "--n", "2", "--size", "48"), "--resume")
    assert _tree(tmp_path) == before  # nothing touched


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--size", "16"], ["--size"]),
        (["--size", "5000"], ["--size"]),
        (["--p-normal", "1.5"], ["--p-normal"]),
        (["--fg", "otsu"], ["--fg"]),
        (["--normals", "MISSING"], ["not found"]),
        (["--normals", "EMPTY"], ["no images"]),
        (["--normals", "BROKEN"], ["could be read"]),
        (["--textures", "EMPTY"], ["no images"]),
        (["--surfaces", "plain"], ["--surfaces", "blank"]),
        (["--surfaces", "blank", "--normals", "EMPTY"], ["--surfaces blank", "--normals"]),
        (["--surfaces", "blank", "--textures", "EMPTY"], ["--surfaces blank", "--textures"]),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, extra: list[str], words: list[str]) -> None:
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "EMPTY" / "notes.txt").write_text("no images here")
    (tmp_path / "BROKEN").mkdir()
    (tmp_path / "BROKEN" / "a.png").write_bytes(b"garbage")
    extra = [str(tmp_path / e) if e in ("MISSING", "EMPTY", "BROKEN") else e for e in extra]
    _assert_bad_input(_cli("--out", tmp_path / "out", "--n", "2", *extra), *words)


def test_cli_unwritable_output_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _assert_bad_input(_cli("--out", blocker / "sub", "--n", "1"), "cannot write")
    _assert_bad_input(_cli("--out", blocker, "--n", "1"), "folder")
