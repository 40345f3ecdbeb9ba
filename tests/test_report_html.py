"""report.html: self-contained (no network), every table and chart present, the gallery filterable, and
model or manifest text escaped (structure checked without a browser)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from differad_cli.cli.app import app
from differad_cli.core.images import save_png
from differad_cli.core.records import write_jsonl

runner = CliRunner()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_report_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    pairs, preds = [], []
    for i in range(6):
        save_png(tmp_path / "img" / f"r{i}.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        save_png(tmp_path / "img" / f"t{i}.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        box = [5, 5, 20, 20] if i % 2 else [0, 0, 0, 0]
        cat = "cat<b>" if i < 3 else "two"
        pairs.append({"id": f"p{i}", "ref": f"img/r{i}.png", "tgt": f"img/t{i}.png", "box": box,
                      "label": i % 2, "width": 40, "height": 40, "category": cat})  # fmt: skip
        text = "<think><script>alert('x')</script> region</think><answer>(1,1),(2,2)</answer>"
        preds.append(
            {"id": f"p{i}", "box": [5, 5, 20, 20] if i < 4 else [0, 0, 0, 0], "valid": True, "text": text}
        )
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    write_jsonl(tmp_path / "pred.jsonl", preds)
    out = tmp_path / "eval"
    args = ["eval", "--pairs", str(tmp_path / "pairs.jsonl"), "--pred", str(tmp_path / "pred.jsonl")]
    res = runner.invoke(app, [*args, "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    page_text = (out / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(page_text)
    # nothing is fetched: every picture is a data URI, no external script, style or link
    srcs = [a.get("src", "") for t, a in page.tags if t in ("img", "script")]
    assert srcs and all(s.startswith("data:image/") for s in srcs if s)
    assert not [a for t, a in page.tags if t == "link"] and not re.search(
        r"(src|href)=['\"]?https?:", page_text
    )
    # model text is shown escaped, never run: the only script is ours
    assert "alert('x')" not in "".join(page.scripts)
    assert any("<script>alert('x')</script>" in d for d in page.text)
    assert "cat&lt;b&gt;" in page_text and "<b>cat" not in page_text.replace("<b>p", "")
    # tables, two charts, one case per pair (all six fit the gallery), filters for category and outcome
    assert sum(1 for t, _ in page.tags if t == "table") == 2  # overall, per category (no subsets here)
    assert {a.get("alt") for t, a in page.tags if t == "img"} >= {"IoU histogram", "mIoU per category"}
    cases = [a for t, a in page.tags if t == "div" and a.get("class") == "case"]
    assert len(cases) == 6 and {c["data-out"] for c in cases} == {"correct", "wrong"}
    selects = {a.get("id") for t, a in page.tags if t == "select"}
    assert selects == {"cat", "out"}
    options = [a.get("value") for t, a in page.tags if t == "option"]
    assert "cat<b>" in options and "two" in options
