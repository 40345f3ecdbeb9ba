"""Fuzz of the one JSONL reader (core/records): hostile and random lines are either valid records (that can be
written back and read again) or a BadInput with a one-line message of bounded length; never another
exception. The random part is seeded (reproducible); hypothesis adds arbitrary bytes, derandomized."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from differad_cli.core.errors import BadInput
from differad_cli.core.records import (
    MAX_COORD,
    Pair,
    Prediction,
    read_pairs,
    read_predictions,
    write_pairs,
    write_predictions,
)

MAX_MESSAGE = 4000  # ten reported errors at most, each with a path:line and shortened values

VALID = {"id": "a", "ref": "r.png", "tgt": "t.png", "box": [1, 2, 5, 6], "label": 1, "width": 9, "height": 9}


def _check_pairs(pairs: list[Pair], tmp: Path) -> None:
    for p in pairs:
        assert isinstance(p.id, str) and p.id
        assert p.label in (0, 1) and all(isinstance(v, int) for v in p.box)
        assert 0 < p.width <= MAX_COORD and 0 < p.height <= MAX_COORD
        x1, y1, x2, y2 = p.box
        assert p.box == (0, 0, 0, 0) or (0 <= x1 < x2 <= p.width and 0 <= y1 < y2 <= p.height)
    write_pairs(tmp / "copy.jsonl", pairs)  # a record read is a record that can be written
    assert [q.id for q in read_pairs(tmp / "copy.jsonl", allow_empty=True)] == [p.id for p in pairs]


def _check_predictions(preds: list[Prediction], tmp: Path) -> None:
    for p in preds:
        assert isinstance(p.id, str) and isinstance(p.valid, bool) and all(isinstance(v, int) for v in p.box)
        assert p.score is None or isinstance(p.score, float)
    write_predictions(tmp / "copy.jsonl", preds)
    assert [(q.id, q.box) for q in read_predictions(tmp / "copy.jsonl")] == [(p.id, p.box) for p in preds]


def check_contract(data: bytes, tmp: Path) -> None:
    """Both readers on a file holding ``data``: valid records, or BadInput with one short line."""
    path = tmp / "pairs.jsonl"
    path.write_bytes(data)
    for read, check in ((read_pairs, _check_pairs), (read_predictions, _check_predictions)):
        try:
            records = read(path)
        except BadInput as e:
            msg = str(e)
            assert msg and "\n" not in msg and "\r" not in msg and "\x00" not in msg, msg[:300]
            assert len(msg) < MAX_MESSAGE, msg[:300]
            continue
        check(records, tmp)  # type: ignore[operator]


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


HOSTILE: dict[str, bytes] = {
    "nested 100,000 [": b"[" * 100_000 + b"\n",
    "nested 100,000 {": b'{"a":' * 100_000 + b"\n",
    "nested under the limit": _line({**VALID, "extra": json.loads("[" * 900 + "]" * 900)}),
    "a 5000-digit number": _line(VALID)[:-2] + b', "n": ' + b"9" * 5000 + b"}\n",
    "a 5000-digit box": b'{"id": "a", "ref": "r", "tgt": "t", "box": [0, 0, 1, ' + b"9" * 5000 + b"]}\n",
    "huge float box": _line({**VALID, "box": [0, 0, 1e308, 1e308]}),
    "huge int size": _line({**VALID, "width": 10**400}),
    "huge score": _line({"id": "a", "box": [0, 0, 1, 1], "valid": True, "score": 10**400}),
    "NaN box": _line({**VALID, "box": [float("nan"), 0, 1, 1]}),
    "Infinity size": _line({**VALID, "width": float("inf")}),
    "NaN score": _line({"id": "a", "box": [0, 0, 1, 1], "valid": True, "score": float("nan")}),
    "wrong types": _line({"id": [], "ref": 1, "tgt": {}, "box": "x", "label": "1", "width": "9"}),
    "bool box": _line({**VALID, "box": [True, 0, 1, 1]}),
    "missing keys": _line({"id": "a"}),
    "reversed box": _line({**VALID, "box": [5, 5, 1, 1]}),
    "box out of range": _line({**VALID, "box": [0, 0, 100, 100]}),
    "negative box": _line({**VALID, "box": [-4, -4, 2, 2]}),
    "not UTF-8": b'{"id": "\xff\xfe"}\n',
    "CESU surrogate bytes": b'{"id": "\xed\xa0\x80"}\n',
    "unpaired surrogate escape": _line({**VALID, "id": "\ud800"}),
    "paired surrogate escapes": _line({**VALID, "id": "\U0001f600"}),
    "raw NUL": b'{"id": "a"\x00}\n',
    "NUL in a path": _line({**VALID, "tgt": "t\x00.png"}),
    "newline in a path": _line({**VALID, "ref": "r\n.png", "tgt": "t\n.png"}),
    "path too long": _line({**VALID, "tgt": "t/" * 5000}),
    "path too long, no size": _line({"id": "a", "ref": "r", "tgt": "t/" * 5000, "box": [0, 0, 0, 0]}),
    "newline in a path, no size": _line({"id": "a", "ref": "r", "tgt": "t\n.png", "box": [0, 0, 0, 0]}),
    "a 5 MB id": _line({**VALID, "id": "a" * 5_000_000}),
    "a 5 MB box value": _line({**VALID, "box": ["x" * 5_000_000, 0, 1, 1]}),
    "duplicate 1 MB ids": _line({**VALID, "id": "b" * 1_000_000}) * 2,
    "a JSON array": b"[1, 2]\n",
    "a JSON string": b'"x"\n',
    "BOM": b"\xef\xbb\xbf" + _line(VALID),
    "CRLF": _line(VALID)[:-1] + b"\r\n",
    "CR inside a line": _line(VALID).replace(b", ", b",\r", 1),
    "torn last line": _line(VALID) + _line({**VALID, "id": "b"})[:20],
    "no width, device target": _line({"id": "a", "ref": "r", "tgt": "/dev/zero", "box": [0, 0, 0, 0]}),
    "no width, folder target": _line({"id": "a", "ref": "r", "tgt": "/", "box": [0, 0, 0, 0]}),
    "empty": b"",
    "blank lines": b"\n \n\t\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_lines(name: str, tmp_path: Path) -> None:
    check_contract(HOSTILE[name], tmp_path)


VALUES: list[object] = [
    None, True, False, 0, -1, 1, 1.5, -0.0, 1e308, -1e308, float("nan"), float("inf"), 10**400, 2**31,
    "", "x" * 10_000, "a\nb", "\x00", "\ud800", "../../x.png", "/dev/zero", [], {}, [0, 0, 0, 0],
    [5, 5, 1, 1], [0, 0, 1e9, 1e9], [-1, -1, 2, 2], [1, 2, 3], ["a", "b", "c", "d"], [[[]]],
    [0.4, 0.4, 3.6, 3.6], {"id": "nested"},
]  # fmt: skip
KEYS = [*VALID, "mask", "refs", "category", "subset", "description", "valid", "score", "text", "extra"]


def _mutant(rng: random.Random) -> bytes:
    obj: dict[str, object] = dict(VALID)
    obj["id"] = f"s{rng.randrange(4)}"  # duplicates happen
    for _ in range(rng.randrange(4)):
        key = rng.choice(KEYS)
        if rng.random() < 0.3:
            obj.pop(key, None)
        else:
            obj[key] = rng.choice(VALUES)
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(rng.choice((0, 0, 1, 3))):  # byte-level damage
        op, i = rng.randrange(4), rng.randrange(len(raw) + 1)
        if op == 0:
            raw[i:i] = bytes([rng.randrange(256)])
        elif op == 1 and i < len(raw):
            raw[i] = rng.randrange(256)
        elif op == 2:
            del raw[i:]
        else:
            raw[0:0] = b"[" * rng.choice((1, 999, 1001, 100_000))
    return bytes(raw) + (b"\n" if rng.random() < 0.9 else b"")


def test_seeded_random_manifests(tmp_path: Path) -> None:
    rng = random.Random(12)
    for _ in range(400):
        check_contract(b"".join(_mutant(rng) for _ in range(rng.randrange(1, 4))), tmp_path)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_arbitrary_bytes(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check_contract(b"\n".join(lines), Path(tmp))


def test_an_error_naming_a_file_with_a_newline_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from cli_helpers import run_cli

    odd = tmp_path / "x\ny"
    odd.write_text("a file where a folder should be")
    assert run_cli(monkeypatch, "synth", "--out", odd, "--n", "1") == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "x\\ny" in lines[0], lines
