"""GRPO rewards (paper III-B2, Eq. 3-11; docs/training.md "Rewards") as plain functions and TRL reward
callables.

Plain functions take boxes in one coordinate system (the model's: ground truth reaches training as the
``gt_box`` column already converted by ``coords.to_model``). The registry's callables follow TRL's contract
``fn(completions, **columns) -> list[float]``: one float per completion, 0.0 for garbage, never an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from differad_cli.core.boxes import area, center, diag, is_zero
from differad_cli.core.boxes import iou as box_iou
from differad_cli.core.errors import BadInput
from differad_cli.protocol.parsing import clip_to_extent, is_box_only, parse_answer

BoxLike = Sequence[float]
RewardFn = Callable[..., list[float]]

# ---------------------------------------------------------------------------------------------- geometry


def s_center(pred: BoxLike, gt: BoxLike, *, eps: float = 1e-6) -> float:
    """Eq. 4: 1 - min(1, centre distance / (max(diag_p, diag_gt, 1) + eps))."""
    (px, py), (gx, gy) = center(pred), center(gt)
    dist = math.hypot(px - gx, py - gy)
    return 1.0 - min(1.0, dist / (max(diag(pred), diag(gt), 1.0) + eps))


def s_scale(pred: BoxLike, gt: BoxLike, *, eps: float = 1e-6) -> float:
    """Eq. 5: 1 - min(1, |A_p - A_gt| / (A_gt + eps))."""
    a_gt = area(gt)
    return 1.0 - min(1.0, abs(area(pred) - a_gt) / (a_gt + eps))


def s_cons(pred: BoxLike, gt: BoxLike, *, alpha: float = 0.6, eps: float = 1e-6) -> float:
    """Eq. 6: alpha * s_center + (1 - alpha) * s_scale."""
    return alpha * s_center(pred, gt, eps=eps) + (1.0 - alpha) * s_scale(pred, gt, eps=eps)


def _zero_rule(pred: BoxLike | None, gt: BoxLike) -> float | None:
    """The zero-box rules (docs/training.md "Rewards"); None when both boxes are real."""
    if is_zero(gt):
        return 1.0 if pred is not None and is_zero(pred) else 0.0
    if pred is None or is_zero(pred):
        return 0.0
    return None


def dclr(
    pred: BoxLike | None,
    gt: BoxLike,
    *,
    alpha: float = 0.6,
    lam: float = 0.3,
    tau: float = 0.3,
    delta: float = 0.0,
    eps: float = 1e-6,
) -> float:
    """Dual-Consistency Localization Reward (Eq. 7): IoU + delta above tau, else IoU + (1-IoU)*lam*S_cons.

    Below tau the consistency term keeps a signal when boxes do not overlap at all. Normal ground truth
    (zero box) scores 1 only for the zero box; anomalous ground truth with a zero/missing prediction scores 0.
    """
    fixed = _zero_rule(pred, gt)
    if fixed is not None:
        return fixed
    assert pred is not None
    v = box_iou(pred, gt)
    if v >= tau:
        return v + delta
    return v + (1.0 - v) * lam * s_cons(pred, gt, alpha=alpha, eps=eps)


def iou_only(pred: BoxLike | None, gt: BoxLike, **_: Any) -> float:
    """Ablation (Table VIII): the plain IoU reward, with the same zero-box rules."""
    fixed = _zero_rule(pred, gt)
    return fixed if fixed is not None else box_iou(pred, gt)  # type: ignore[arg-type]


def consistency_only(
    pred: BoxLike | None, gt: BoxLike, *, alpha: float = 0.6, eps: float = 1e-6, **_: Any
) -> float:
    """Ablation (Table VIII, "center-based"): S_cons alone, without the IoU term."""
    fixed = _zero_rule(pred, gt)
    return fixed if fixed is not None else s_cons(pred, gt, alpha=alpha, eps=eps)  # type: ignore[arg-type]


def dclr_released(pred: BoxLike | None, gt: BoxLike, *, eps: float = 1e-6, **_: Any) -> float:
    """The authors' released formula: IoU + (1 - IoU) * (0.6 s_center + 0.4 s_scale), no tau branch."""
    fixed = _zero_rule(pred, gt)
    if fixed is not None:
        return fixed
    assert pred is not None
    v = box_iou(pred, gt)
    return v + (1.0 - v) * (0.6 * s_center(pred, gt, eps=eps) + 0.4 * s_scale(pred, gt, eps=eps))


# ---------------------------------------------------------------------------------------------- format

_THINK_ANSWER = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_STAGES = re.compile(
    r"\s*<region>(.+?)</region>\s*<analysis>(.+?)</analysis>\s*<decision>\s*(\w+)\s*\.?\s*</decision>\s*",
    re.S,
)
_DECISION = re.compile(r"<decision>\s*(\w+)\s*\.?\s*</decision>", re.I)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _think_answer(text: str) -> tuple[str, str] | None:
    if not isinstance(text, str) or any(text.count(t) != 1 for t in _TAGS):
        return None
    m = _THINK_ANSWER.fullmatch(text)
    return (m.group(1), m.group(2)) if m else None


def format_reward(text: str) -> float:
    """R_fmt: 1 iff ``<think>...</think>`` then ``<answer>`` holding exactly one valid box, nothing else."""
    parts = _think_answer(text)
    if parts is None:
        return 0.0
    return 1.0 if is_box_only(parts[1]) and parse_answer(parts[1]) is not None else 0.0


def staged_format_reward(text: str) -> float:
    """Seed 002's format: R_fmt, with a think holding <region>, <analysis>, <decision> in order, the decision
    'anomalous' or 'normal' and agreeing with the answer (normal <=> the zero box)."""
    if format_reward(text) == 0.0:
        return 0.0
    think, answer = _think_answer(text)  # type: ignore[misc]
    m = _STAGES.fullmatch(think)
    if m is None:
        return 0.0
    decision = m.group(3).lower()
    if decision not in ("anomalous", "normal"):
        return 0.0
    return 1.0 if (decision == "normal") == is_zero(parse_answer(answer)) else 0.0


def decision_of(text: str) -> int | None:
    """1 anomalous / 0 normal from ``<decision>``, else from the answer (zero box = normal), else None."""
    m = _DECISION.search(text)
    if m is not None:
        word = m.group(1).lower()
        if word in ("anomalous", "abnormal", "defective", "anomaly", "yes"):
            return 1
        if word in ("normal", "good", "no"):
            return 0
    box = parse_answer(text)
    return None if box is None else int(not is_zero(box))


def staged_reward(
    text: str, gt: BoxLike, label: int, *, extent: Sequence[float] | None = None, **params: Any
) -> float:
    """Seed 002's continuous decision + localization reward, in [0, 1]:

        R = c * (1/2 + 1/2 * q)

    c = 1 when the decision (``decision_of``) equals the label, else 0 -- a wrong or missing decision
    earns nothing. q is the localization quality: for a normal target, 1 if the answer is the zero box
    else 0; for an anomalous target, min(1, DCLR(pred, gt)) (continuous even without overlap). A right
    decision with a poor box earns 1/2, so the reward separates real localization from a lucky "anomalous".
    """
    decision = decision_of(text)
    if decision is None or decision != int(label):
        return 0.0
    pred = clip_to_extent(parse_answer(text), extent)
    if int(label) == 0:
        q = 1.0 if pred is not None and is_zero(pred) else 0.0
    else:
        q = min(1.0, max(0.0, dclr(pred, gt, **params)))
    return 0.5 + 0.5 * q


# ---------------------------------------------------------------------------------------------- GRPO helpers


def difficulty_weight(r_loc: Sequence[float], *, tau: float = 0.3) -> float:
    """Eq. 9-11 for one group: w = 1/2 (exp(1 - mean R_loc) + sqrt(1 + share of R_loc < tau)).

    Hard groups (low quality, frequent misses) weigh up to (e + sqrt 2)/2 ~ 2.07; a perfect group weighs 1.
    """
    r = np.asarray(list(r_loc), dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return 1.0
    p_miss = float(np.mean(r < tau))
    return 0.5 * (math.exp(1.0 - float(r.mean())) + math.sqrt(1.0 + p_miss))


def is_degenerate(total_rewards: Sequence[float], *, eps: float = 1e-6) -> bool:
    """A group whose total rewards are (nearly) identical carries no GRPO signal (population std < eps)."""
    r = np.asarray(list(total_rewards), dtype=np.float64)
    r = r[np.isfinite(r)]
    return r.size < 2 or float(r.std()) < eps


# ---------------------------------------------------------------------------------------------- TRL callables


def completion_text(c: Any) -> str:
    """Plain text of a completion: a string, or TRL's conversational ``[{"role", "content"}]`` list."""
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        c = [c]
    if not isinstance(c, (list, tuple)):
        return ""
    parts: list[str] = []
    for msg in c:
        content = msg.get("content") if isinstance(msg, dict) else msg
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, (list, tuple)):
            parts.extend(
                p.get("text") or ""
                for p in content
                if isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str)
            )
    return "".join(parts)


def _column(value: Any, n: int, *, is_box: bool) -> list[Any]:
    """Per-row column values; a single value (one box, one label) is broadcast to every completion."""
    if value is None:
        return [None] * n
    # Per-row boxes are sequences; a flat run of four numbers can only be one box for all rows.
    flat = isinstance(value, (list, tuple)) and len(value) == 4
    if is_box and flat and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [value] * n
    if not is_box and not isinstance(value, (list, tuple)):
        return [value] * n
    try:
        rows = list(value)
    except TypeError:
        return [None] * n
    return rows[:n] + [None] * (n - len(rows))


def _gt(box: Any, label: Any) -> tuple[tuple[float, ...], int] | None:
    """One row's ground truth; no ``label``: from the box; no ``gt_box``: only normal rows can be scored."""
    gt: tuple[float, ...] | None = None
    if box is not None:
        try:
            vals = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            return None
        if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
            return None
        gt = vals
    lab: int | None = None
    if label is not None:
        try:
            lab = int(label)
        except (TypeError, ValueError):
            return None
    if gt is None:
        return ((0.0, 0.0, 0.0, 0.0), 0) if lab == 0 else None
    return gt, (int(not is_zero(gt)) if lab is None else lab)


def _safe(v: float) -> float:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0


def _extents(value: Any, n: int) -> list[Any]:
    """Per-row model frames (width, height); one pair of numbers is broadcast; None = do not clip."""
    if value is None:
        return [None] * n
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
    ):
        return [value] * n
    return _column(value, n, is_box=False)


def _named(name: str, reward: RewardFn) -> RewardFn:
    """TRL logs a reward under its function's name."""
    reward.__name__ = f"{name}_reward"
    reward.__qualname__ = reward.__name__
    return reward


def _guarded(score: Callable[[], float | None]) -> float:
    """A reward never raises: garbage completions and unreadable rows score 0."""
    try:
        value = score()
    except Exception:
        return 0.0
    return 0.0 if value is None else _safe(value)


def _text_callable(name: str, fn: Callable[[str], float]) -> RewardFn:
    def reward(completions: list[Any], **_: Any) -> list[float]:
        return [_guarded(lambda c=c: fn(completion_text(c))) for c in completions]

    return _named(name, reward)


def _row_callable(name: str, score: Callable[[str, tuple[float, ...], int, Any], float]) -> RewardFn:
    """A TRL reward over ground-truth columns: ``score(text, gt_box, label, extent)`` per completion.

    ``extent`` (the model frame per row) clips answers as eval does; without it nothing is clipped. Rows
    whose ground truth cannot be read score 0, like garbage completions.
    """

    def reward(
        completions: list[Any], gt_box: Any = None, label: Any = None, extent: Any = None, **_: Any
    ) -> list[float]:
        n = len(completions)
        boxes, labels = _column(gt_box, n, is_box=True), _column(label, n, is_box=False)

        def one(c: Any, b: Any, lab: Any, ext: Any) -> float | None:
            gt = _gt(b, lab)
            return None if gt is None else score(completion_text(c), gt[0], gt[1], ext)

        rows = zip(completions, boxes, labels, _extents(extent, n), strict=True)
        return [_guarded(lambda r=r: one(*r)) for r in rows]

    return _named(name, reward)


def _loc_callable(name: str, fn: Callable[..., float], params: dict[str, Any]) -> RewardFn:
    def score(text: str, box: tuple[float, ...], label: int, extent: Any) -> float:
        if label == 0:
            box = (0.0, 0.0, 0.0, 0.0)  # a normal row is normal whatever its box says
        return fn(clip_to_extent(parse_answer(text), extent), box, **params)

    return _row_callable(name, score)


def _decision_callable() -> RewardFn:
    """1 when the answer's decision (zero box = normal, any other box = anomalous) matches the label: a reward
    a small model can learn in tens of steps, so tests can check that GRPO learns (tests/test_learning.py)."""

    def score(text: str, box: tuple[float, ...], label: int, extent: Any) -> float:
        pred = parse_answer(text)
        return 0.0 if pred is None else float(int(not is_zero(pred)) == int(label))

    return _row_callable("decision", score)


def _staged_callable(params: dict[str, Any]) -> RewardFn:
    def score(text: str, box: tuple[float, ...], label: int, extent: Any) -> float:
        return staged_reward(text, box, label, extent=extent, **params)

    return _row_callable("staged", score)


_LOC_FNS: dict[str, Callable[..., float]] = {
    "dclr": dclr,
    "iou": iou_only,
    "consistency": consistency_only,
    "dclr_released": dclr_released,
}
LOC_REWARDS: frozenset[str] = frozenset({*_LOC_FNS, "staged"})
_PARAMS = ("alpha", "lam", "tau", "delta", "eps")


def get_reward(name: str, **params: Any) -> RewardFn:
    """A TRL reward callable by name; ``params`` (alpha, lam, tau, delta, eps) override the paper defaults."""
    bad = sorted(set(params) - set(_PARAMS))
    if bad:
        raise BadInput(f"unknown reward parameter(s) {', '.join(bad)} (allowed: {', '.join(_PARAMS)})")
    if name in _LOC_FNS:
        fn = _loc_callable(name, _LOC_FNS[name], params)
        # the best value a completion can earn (group resampling keeps groups that all reach it)
        fn.max_value = 1.0 + max(0.0, float(params.get("delta", 0.0))) if name == "dclr" else 1.0  # type: ignore[attr-defined]
        return fn
    if name == "format":
        fn = _text_callable("format", format_reward)
    elif name == "staged_format":
        fn = _text_callable("staged_format", staged_format_reward)
    elif name == "staged":
        fn = _staged_callable(params)
    elif name == "decision":
        fn = _decision_callable()
    else:
        raise BadInput(f"unknown reward '{name}' (choose from: {', '.join(REWARDS)})")
    fn.max_value = 1.0  # type: ignore[attr-defined]
    return fn


REWARDS: dict[str, RewardFn] = {}
REWARDS.update({n: get_reward(n) for n in ("format", *_LOC_FNS, "staged", "staged_format", "decision")})
