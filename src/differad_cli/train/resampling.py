"""Group-wise resampling and difficulty-aware weighting as pure functions over reward matrices (paper III-B2).

Kept apart from the trainer so they are tested without TRL, and so every rank computes the same plan from the
same gathered rewards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from differad_cli.train.rewards import difficulty_weight, is_degenerate

PERFECT_TOL = 1e-6


@dataclass
class ResamplePlan:
    """Which groups are degenerate, which are all-perfect, and which to regenerate (group indices)."""

    n_groups: int
    degenerate: list[int]
    perfect: list[int]
    resample: list[int]

    @property
    def degenerate_share(self) -> float:
        return len(self.degenerate) / self.n_groups if self.n_groups else 0.0


def plan_resampling(
    rewards_per_func: np.ndarray,
    weights: Sequence[float],
    group_size: int,
    *,
    eps: float = 1e-6,
    maxima: Sequence[float] | None = None,
) -> ResamplePlan:
    """Decide from the gathered (N, F) reward matrix which groups of ``group_size`` consecutive rows to redo.

    A group is degenerate when the std of its total rewards is < eps; it is all-perfect when every reward of
    every completion reached its maximum (``maxima`` per reward function, 1 by default; DCLR with a bonus
    delta tops out at 1 + delta). Degenerate groups that are not all-perfect are resampled.
    """
    r = np.nan_to_num(np.asarray(rewards_per_func, dtype=np.float64), nan=0.0)
    top = np.ones(r.shape[1]) if maxima is None else np.asarray(maxima, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] % group_size:
        raise ValueError(f"reward matrix {r.shape} does not split into groups of {group_size}")
    total = r @ np.asarray(weights, dtype=np.float64)
    n_groups = r.shape[0] // group_size
    degenerate, perfect = [], []
    for g in range(n_groups):
        rows = slice(g * group_size, (g + 1) * group_size)
        if is_degenerate(total[rows], eps=eps):
            degenerate.append(g)
        if bool(np.all(r[rows] >= top - PERFECT_TOL)):
            perfect.append(g)
    keep = set(perfect)
    return ResamplePlan(n_groups, degenerate, perfect, [g for g in degenerate if g not in keep])


def group_weights(r_loc: np.ndarray, group_size: int, *, tau: float = 0.3) -> np.ndarray:
    """Per-completion difficulty weight: each group's w (rewards.difficulty_weight) repeated over its rows."""
    r = np.asarray(r_loc, dtype=np.float64).reshape(-1, group_size)
    return np.repeat([difficulty_weight(g, tau=tau) for g in r], group_size)


def resample_groups(
    prompts: list[Any],
    completions: list[Any],
    completion_ids: list[Any],
    logprobs: list[Any] | None,
    *,
    score: Callable[[list[Any], list[Any]], np.ndarray],
    generate: Callable[[list[Any]], tuple[list[Any], list[Any], list[Any] | None]],
    weights: Sequence[float],
    group_size: int,
    offset: int,
    max_resample: int,
    eps: float = 1e-6,
    maxima: Sequence[float] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Regenerate this rank's rows of degenerate groups in place; returns (final gathered rewards, stats).

    ``score(completions, completion_ids)`` returns the gathered (N, F) rewards; ``generate(prompts)`` returns
    (completions, completion_ids, logprobs) for the given local prompts. ``offset`` is this rank's first
    global row; all ranks hold ``len(prompts)`` rows. Rows of groups that are not regenerated are never
    touched.
    """
    rounds = 0
    before = 0.0
    for rnd in range(max_resample + 1):
        rewards = score(completions, completion_ids)
        plan = plan_resampling(rewards, weights, group_size, eps=eps, maxima=maxima)
        if rnd == 0:
            before = plan.degenerate_share
        if not plan.resample or rnd == max_resample:
            break
        rounds += 1
        redo = set(plan.resample)
        n = len(prompts)
        local = [i for i in range(n) if (offset + i) // group_size in redo]
        # Every rank generates the same number of rows (collectives inside generation need equal shapes):
        # the largest per-rank share of redo rows, padded with throw-away copies of a local prompt.
        per_rank = np.bincount(
            np.arange(rewards.shape[0]) // n,
            weights=[(r // group_size) in redo for r in range(rewards.shape[0])],
        )
        k = int(per_rank.max())
        fill = prompts[local[0]] if local else prompts[0]
        new_c, new_ids, new_lp = generate([prompts[i] for i in local] + [fill] * (k - len(local)))
        for j, i in enumerate(local):
            completions[i], completion_ids[i] = new_c[j], new_ids[j]
            if logprobs is not None and new_lp is not None:
                logprobs[i] = new_lp[j]
    stats = {
        "resample/degenerate_before": before,
        "resample/degenerate_after": plan.degenerate_share,
        "resample/rounds": float(rounds),
        "resample/perfect_groups": len(plan.perfect) / max(plan.n_groups, 1),
    }
    return rewards, stats


def batch_scores(
    texts: Sequence[str],
    gt_boxes: Sequence[Any],
    labels: Sequence[Any],
    extents: Sequence[Any] | None = None,
) -> np.ndarray:
    """Per-sample score (the paper's metric) in the model's coordinates: IoU for anomalous rows, 1/0 for
    normal rows."""
    from differad_cli.core.boxes import iou, is_zero
    from differad_cli.protocol.parsing import clip_to_extent, parse_answer

    extents = extents if extents is not None else [None] * len(texts)
    out = np.zeros(len(texts), dtype=np.float64)
    for i, (text, gt, label, ext) in enumerate(zip(texts, gt_boxes, labels, extents, strict=True)):
        pred = clip_to_extent(parse_answer(text), ext)
        if int(label) == 0:
            out[i] = 1.0 if pred is not None and is_zero(pred) else 0.0
        elif pred is not None and not is_zero(pred):
            out[i] = iou(pred, gt)
    return out


def signal_shares(
    texts: Sequence[str],
    gt_boxes: Sequence[Any],
    labels: Sequence[Any],
    group_size: int,
    extents: Sequence[Any] | None = None,
    *,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Over the anomalous groups: the share whose completions all have IoU 0 (``iou_flat``: an IoU reward
    gives them no gradient), and the share of those where DCLR still varies (``iou_flat_dclr_varies``: the
    signal the consistency term adds, paper III-B1)."""
    from differad_cli.protocol.parsing import clip_to_extent, parse_answer
    from differad_cli.train.rewards import dclr, iou_only

    extents = extents if extents is not None else [None] * len(texts)
    n_groups = flat = varies = 0
    for s in range(0, len(texts) - group_size + 1, group_size):
        if int(labels[s]) == 0 or gt_boxes[s] is None:
            continue
        n_groups += 1
        preds = [clip_to_extent(parse_answer(t), extents[s]) for t in texts[s : s + group_size]]
        gt = tuple(float(v) for v in gt_boxes[s])
        if all(iou_only(p, gt) <= eps for p in preds):
            flat += 1
            if float(np.std([dclr(p, gt) for p in preds])) > eps:
                varies += 1
    return {
        "signal/iou_flat": flat / n_groups if n_groups else float("nan"),
        "signal/iou_flat_dclr_varies": varies / n_groups if n_groups else float("nan"),
    }
