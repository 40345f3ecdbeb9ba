"""Bad input that used to exit 0 or 1: truncated PNGs, decompression bombs, deeply nested manifest lines,
non-numeric or NaN learning rates; EXIF orientation applied wherever an image is read."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import image_size, load_rgb, save_png


def _png(width: int, height: int, rows: int) -> bytes:
    """A PNG whose IHDR claims ``height`` rows but whose data holds only ``rows`` (then a proper IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + bytes([120]) * (width * 3) for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def good(tmp_path: Path) -> Path:
    save_png(tmp_path / "good.png", np.full((64, 64, 3), 120, np.uint8))
    return tmp_path / "good.png"


def test_truncated_png_is_refused_without_library_noise(good, tmp_path, monkeypatch, capfd) -> None:
    short = tmp_path / "short.png"
    short.write_bytes(_png(64, 64, 4))
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(short)
    assert run_cli(monkeypatch, "predict", good, short) == 2
    err = capfd.readouterr().err
    assert "short.png" in err and "Traceback" not in err
    assert not any(line.startswith("libpng") for line in err.splitlines())


def test_tiny_png_claiming_a_huge_size_is_refused_before_decoding(good, tmp_path, monkeypatch, capfd) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(9990, 9990, 1))
    assert bomb.stat().st_size < 200
    assert run_cli(monkeypatch, "predict", good, bomb) == 2
    err = capfd.readouterr().err
    assert "decompression bomb" in err and "DecompressionBombWarning" not in err


def test_deeply_nested_manifest_line_is_bad_input(tmp_path, monkeypatch, capsys) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("[" * 100_000 + "\n")
    assert run_cli(monkeypatch, "predict", "--pairs", pairs, "--out", tmp_path / "p.jsonl") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pairs.jsonl:1" in err[0]


@pytest.mark.parametrize("value", ["fast", "nan", float("nan"), -1.0])
def test_learning_rate_must_be_a_positive_number(tmp_path, value) -> None:
    from differad_cli.train.configs import build_configs

    recipe = tmp_path / "cold.yaml"
    recipe.write_text(f"learning_rate: {value!r}\n" if isinstance(value, str) else "max_steps: 1\n")
    cli = {} if isinstance(value, str) else {"learning_rate": value}
    with pytest.raises(BadInput, match="learning_rate"):
        build_configs("cold", recipe=recipe, cli=cli, output_dir=str(tmp_path / "run"))


def test_numeric_strings_from_yaml_still_work(tmp_path) -> None:
    from differad_cli.train.configs import build_configs

    recipe = tmp_path / "cold.yaml"
    recipe.write_text("learning_rate: 1e-5\n")  # YAML 1.1 reads this as a string
    _, trl = build_configs("cold", recipe=recipe, cli={}, output_dir=str(tmp_path / "run"))
    assert math.isclose(trl.learning_rate, 1e-5)


def _jpeg_with_orientation(path: Path, arr: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif)


def test_exif_orientation_gives_the_box_in_the_displayed_frame(tmp_path, monkeypatch, capsys) -> None:
    import json

    rng = np.random.default_rng(0)
    small = rng.integers(60, 180, (12, 16, 3)).astype(np.uint8)
    ref = np.kron(small, np.ones((8, 8, 1), np.uint8))  # stored 96 rows x 128 columns
    tgt = ref.copy()
    tgt[8:28, 10:40] = (255, 0, 255)  # a defect at the stored top-left
    _jpeg_with_orientation(tmp_path / "ref.jpg", ref, 6)
    _jpeg_with_orientation(tmp_path / "tgt.jpg", tgt, 6)
    assert image_size(tmp_path / "tgt.jpg") == (96, 128)  # displayed: rotated 90 degrees clockwise
    shown = np.asarray(Image.open(tmp_path / "tgt.jpg").transpose(Image.Transpose.ROTATE_270))
    got = load_rgb(tmp_path / "tgt.jpg")
    assert got.shape == shown.shape and np.abs(got.astype(int) - shown).mean() < 3
    assert run_cli(monkeypatch, "predict", tmp_path / "ref.jpg", tmp_path / "tgt.jpg", "--json") == 0
    x1, y1, x2, y2 = json.loads(capsys.readouterr().out)["box"]
    # stored rows 8-28 / columns 10-40 -> displayed columns 96-28..96-8 = 68..88, rows 10..40
    assert x1 > 48 and y2 < 64, (x1, y1, x2, y2)
