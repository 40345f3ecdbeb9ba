"""The one answer parser shared by rewards, eval and predict (docs/formats.md "Model-facing protocol").

Reads the first ``<answer>...</answer>`` (else the whole text) and keeps the first valid box written as
``(x1,y1),(x2,y2)``, ``[x1,y1,x2,y2]``, ``[[x1,y1,x2,y2]]``, ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``,
``{"bbox_2d": [...]}`` or ``x1 y1 x2 y2``. Reversed corners are swapped; non-finite or degenerate boxes are
skipped; negative coordinates are kept here and clipped by :func:`parse_prediction`, where the image extent is
known. Regexes only (no eval), compiled once: parsing runs on every completion of every GRPO group.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from differad_cli.core.boxes import ZERO_BOX, IntBox

Box4 = tuple[float, float, float, float]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_LIST = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
# Bare numbers must be exactly four: not glued to other words/numbers, not part of a longer run.
_BARE = (
    rf"(?<![\w.+\-])(?<![\d.][ \t])({_NUM})[ \t]+({_NUM})[ \t]+({_NUM})[ \t]+({_NUM})"
    r"(?![\w.]|[ \t]+[-+]?[\d.])"
)

# One alternation, scanned left to right: the first valid box in the text wins, whatever its form.
# The leading lookahead lets most positions (letters, spaces) fail on one character test.
BOX_RE = re.compile(rf"(?=[(\[\d.+\-])(?:{_PAIR}|{_LIST}|{_BARE})")
# Full-answer forms (used by the format reward: the answer must be exactly one box, nothing else).
BOX_ONLY_RE = re.compile(
    rf"""\s*(?:
        (?:<\|box_start\|>\s*)?{_PAIR}(?:\s*<\|box_end\|>)?
      | \[\s*{_LIST}\s*\]
      | {_LIST}
      | \{{\s*"bbox_2d"\s*:\s*(?:{_LIST}|\[\s*{_LIST}\s*\])\s*(?:,\s*"label"\s*:\s*"[^"]*"\s*)?\}}
      | {_BARE}
    )\s*""",
    re.X,
)
_ANSWER_OPEN = re.compile(r"<answer>", re.I)
_ANSWER_CLOSE = re.compile(r"</answer>", re.I)
# A whole answer that says "nothing here" in words (some baseline models do) counts as the zero box.
_NONE_RE = re.compile(
    r"\s*(?:none|null|normal|no|no (?:anomal(?:y|ies)|defects?|differences?|abnormal regions?)"
    r"(?: (?:found|detected))?|\[\s*\]|\{\s*\})\s*\.?\s*",
    re.I,
)


def answer_span(text: str) -> tuple[str, bool]:
    """(the text inside the first <answer>, whether a tag was found); an unclosed tag runs to the end."""
    m = _ANSWER_OPEN.search(text)
    if m is None:
        return text, False
    end = _ANSWER_CLOSE.search(text, m.end())
    return text[m.end() : end.start() if end else len(text)], True


def _valid(m: re.Match[str]) -> Box4 | None:
    # The alternative that matched ends at group ``lastindex``; its four numbers are the groups before it.
    last = m.lastindex or 0
    try:
        a, b, c, d = (float(v) for v in m.group(last - 3, last - 2, last - 1, last))
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c) and math.isfinite(d)):
        return None
    if a == 0 and b == 0 and c == 0 and d == 0:
        return (0.0, 0.0, 0.0, 0.0)
    x1, x2 = (a, c) if a <= c else (c, a)
    y1, y2 = (b, d) if b <= d else (d, b)
    if x2 <= x1 or y2 <= y1:
        return None  # degenerate: a line or a point locates nothing
    return (x1, y1, x2, y2)


def parse_answer(text: str) -> Box4 | None:
    """First valid box in model coordinates, (0,0,0,0) for an explicit no-anomaly answer, else None.

    Never raises, whatever the input.
    """
    try:
        if not isinstance(text, str):
            return None
        span, _ = answer_span(text)
        for m in BOX_RE.finditer(span):
            box = _valid(m)
            if box is not None:
                return box
        if _NONE_RE.fullmatch(span):
            return (0.0, 0.0, 0.0, 0.0)
        return None
    except Exception:  # a parser on model output must not take training or evaluation down
        return None


def count_boxes(span: str) -> int:
    """How many box-shaped matches a string holds (valid or not)."""
    return sum(1 for _ in BOX_RE.finditer(span))


def is_box_only(span: str) -> bool:
    """True when ``span`` is exactly one box in an accepted form (and nothing else but whitespace)."""
    return BOX_ONLY_RE.fullmatch(span) is not None and count_boxes(span) == 1


def clip_to_extent(
    box: tuple[float, float, float, float] | None, extent: Sequence[float] | None
) -> tuple[float, float, float, float] | None:
    """A parsed box clipped to the model's frame (width, height); None when clipping empties it.

    Rewards use this with the frame of the model's coordinates (1000 x 1000, or the resized image), so
    training scores an answer exactly as eval does after converting it to target pixels.
    """
    if box is None or extent is None or box == (0.0, 0.0, 0.0, 0.0):
        return box
    w, h = float(extent[0]), float(extent[1])
    x1, y1 = min(max(box[0], 0.0), w), min(max(box[1], 0.0), h)
    x2, y2 = min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2, y2)


def parse_prediction(
    text: str,
    family: str,
    width: int,
    height: int,
    resized_hw: tuple[int, int] | None = None,
) -> tuple[IntBox, bool]:
    """Text -> (target-pixel box, valid); out-of-image parts are clipped, an emptied box is invalid."""
    from differad_cli.core.coords import from_model

    box = parse_answer(text)
    if box is None:
        return ZERO_BOX, False
    if box == (0.0, 0.0, 0.0, 0.0):
        return ZERO_BOX, True
    px = from_model(box, family, width, height, resized_hw)
    if px[2] <= px[0] or px[3] <= px[1]:
        return ZERO_BOX, False  # entirely outside the image, or smaller than a pixel once converted
    return px, True
