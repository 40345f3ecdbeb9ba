"""`report.html`: one self-contained page per eval folder (no network, opens from disk).

Tables (overall, per category, per subset), the IoU histogram, a per-category bar chart, and a gallery of the
worst cases plus a sample of correct ones (reference | target with ground truth and prediction, the model's
explanation, the outcome), filterable by category and outcome. Pictures are embedded as data URIs; every
string that comes from a manifest or a model is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.errors import ImageError
from differad_cli.core.records import Pair, Prediction
from differad_cli.eval.metrics import SampleScores
from differad_cli.eval.report import _cell, _columns, _rows, outcome, worst_first, write_text

GALLERY_WORST = 12
GALLERY_CORRECT = 6

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right} th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2} .notes{color:#555;font-size:.9em}
.charts img{margin-right:16px;border:1px solid #ddd}
.gallery{display:flex;flex-wrap:wrap;gap:14px} .case{border:1px solid #ddd;padding:6px;width:380px}
.case img{width:100%} .case p{margin:4px 0;font-size:.85em;overflow-wrap:anywhere}
.bad{color:#b00} .good{color:#070} label{margin-right:16px}
"""

_SCRIPT = """
function filt(){var c=document.getElementById('cat').value,o=document.getElementById('out').value;
document.querySelectorAll('.case').forEach(function(e){
var ok=(c==='all'||e.dataset.cat===c)&&(o==='all'||e.dataset.out===o);e.style.display=ok?'':'none';});}
"""


def _img(arr: np.ndarray, fmt: str = ".png") -> str:
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, np.ascontiguousarray(arr[:, :, ::-1]), params)
    mime = "image/png" if fmt == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode()}" if ok else ""


def _tables(metrics: dict) -> list[str]:
    cols = _columns(metrics.get("iou_threshold", 0.3))
    out = []
    for title, rows in _rows(metrics):
        out.append(f"<h2>{html.escape(title)} (ratios in %)</h2><table><tr><th>name</th>")
        out.append("".join(f"<th>{html.escape(h)}</th>" for _, h in cols) + "</tr>")
        for name, block in rows:
            cells = "".join(f"<td>{html.escape(_cell(k, block))}</td>" for k, _ in cols)
            out.append(f"<tr><td>{html.escape(str(name))}</td>{cells}</tr>")
        out.append("</table>")
    return out


def _charts(metrics: dict, s: SampleScores) -> str:
    from differad_cli.core.overlays import bar_chart, iou_histogram

    hist = iou_histogram(s.iou[s.label], title="IoU of anomalous samples")
    parts = [f'<img alt="IoU histogram" src="{_img(hist)}">']
    per_cat = metrics.get("per_category") or {}
    if per_cat:
        names = sorted(per_cat)
        chart = bar_chart(
            [per_cat[n].get("miou") or 0.0 for n in names], names, title="mIoU per category",
            x_title="category", y_title="mIoU", y_max=1.0,
        )  # fmt: skip
        parts.append(f'<img alt="mIoU per category" src="{_img(chart)}">')
    return '<div class="charts">' + "".join(parts) + "</div>"


def _case(pair: Pair, i: int, s: SampleScores, text: str | None, t: float) -> str | None:
    from differad_cli.core.images import load_pair_images
    from differad_cli.core.overlays import draw_overlay

    pred = tuple(int(v) for v in s.pred_box[i]) if s.valid[i] else None
    what = outcome(bool(s.label[i]), bool(s.missing[i]), bool(s.valid[i]), float(s.iou[i]), pred)
    try:
        ref, tgt = load_pair_images(pair.ref, pair.tgt)
    except ImageError as e:
        console.warn(f"report.html: {pair.id} left out of the gallery: {e}")
        return None
    good = bool(s.score[i] >= t)
    picture = _img(draw_overlay(ref, tgt, pair.box, pred), ".jpg")
    why = html.escape(" ".join((text or "").split())[:600]) or "<i>no explanation</i>"
    cat = html.escape(str(pair.category), quote=True)
    return (
        f'<div class="case" data-cat="{cat}" data-out="{"correct" if good else "wrong"}">'
        f'<img alt="{html.escape(pair.id, quote=True)}" src="{picture}">'
        f"<p><b>{html.escape(pair.id)}</b> [{cat}]</p>"
        f'<p class="{"good" if good else "bad"}">{html.escape(what)}</p><p>{why}</p></div>'
    )


def _gallery(
    pairs: Sequence[Pair], s: SampleScores, texts: Mapping[str, str | None], n_worst: int, t: float
) -> str:
    order = worst_first(s)
    worst = order[:n_worst].tolist()
    correct = [i for i in order[::-1].tolist() if s.score[i] >= t and i not in worst][:GALLERY_CORRECT]
    cases = [c for i in worst + correct if (c := _case(pairs[i], i, s, texts.get(pairs[i].id), t))]
    cats = sorted({str(p.category) for p in pairs})
    options = "".join(f'<option value="{html.escape(c, quote=True)}">{html.escape(c)}</option>' for c in cats)
    controls = (
        f'<p><label>category <select id="cat" onchange="filt()"><option value="all">all</option>{options}'
        '</select></label><label>outcome <select id="out" onchange="filt()"><option value="all">all</option>'
        f'<option value="wrong">wrong (score &lt; {t:g})</option><option value="correct">correct</option>'
        "</select></label></p>"
    )
    head = f"<h2>Cases: the {len(worst)} worst and {len(correct)} correct ones</h2>"
    legend = "<p class='notes'>Green: ground truth; red: prediction (target pixels).</p>"
    return head + legend + controls + '<div class="gallery">' + "".join(cases) + "</div>"


def write_html(
    path: Path,
    metrics: dict,
    pairs: Sequence[Pair],
    s: SampleScores,
    preds: Mapping[str, Prediction],
    *,
    notes: Sequence[str] = (),
    n_worst: int = GALLERY_WORST,
) -> None:
    """Write the page for one eval to ``path``."""
    texts = {k: p.text for k, p in preds.items()}
    body = [
        "<h1>differad evaluation</h1>",
        "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        *_tables(metrics),
        "<p class='notes'>Definitions: the paper, section IV-A; invalid includes missing predictions.</p>",
        "<h2>Charts</h2>",
        _charts(metrics, s),
        _gallery(pairs, s, texts, max(n_worst, GALLERY_WORST), float(metrics.get("iou_threshold", 0.3))),
    ]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>differad evaluation</title>"
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>" + "\n".join(body) + "</body></html>"
    )
    write_text(path, page)
