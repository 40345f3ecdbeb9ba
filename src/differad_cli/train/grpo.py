"""train-rl: GRPO with the DCLR reward, group-wise resampling and difficulty-aware weighting (paper III-B2).

``DifferadGRPOTrainer`` subclasses TRL's GRPOTrainer at three hooks and forks nothing:

- ``_generate``: after a generation, score it, regenerate only the degenerate groups (reward std < eps
  and not all-perfect) up to ``max_resample`` rounds. The decision comes from the *gathered* rewards, so
  every rank regenerates the same groups; every rank generates the same number of rows per round (ranks
  with fewer rows of those groups pad with throw-away rows), keeping collective calls in step.
- ``_calculate_rewards``: reuses the rewards of the last resampling round (no second scoring) and keeps
  them for the weights below.
- ``_generate_and_score_completions``: attaches each completion's difficulty weight w (Eq. 9-11) to the
  batch, where TRL's shuffling and splitting carry it to the loss; logs batch IoU / Acc@0.3 and the
  resampling figures.
- ``_compute_loss``: multiplies each completion's loss by its w. With beta = 0 scaling the advantage by
  w >= 0 scales the clipped policy term exactly; with beta > 0 the KL term of that completion is scaled by
  w as well, so the whole per-token loss (policy + beta * KL) of the completion is multiplied by w
  (Eq. 12). An entropy bonus (off by default) is not scaled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from differad_cli.core import console
from differad_cli.core.records import Pair
from differad_cli.train.configs import RLConfig
from differad_cli.train.rewards import LOC_REWARDS, difficulty_weight, is_degenerate

PERFECT_TOL = 1e-6


# ---------------------------------------------------------------------------------------------- pure logic


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
    """Per-sample SPEC score on the model's coordinates: IoU for anomalous rows, 1/0 for normal rows."""
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


class _RowBeta(float):
    """beta multiplying the per-token KL by each completion's weight (shape (B, 1)); compares as a float."""

    w: Any

    def __new__(cls, value: float, w: Any) -> _RowBeta:
        obj = super().__new__(cls, value)
        obj.w = w
        return obj

    def __mul__(self, other: Any) -> Any:  # type: ignore[override]
        return other * (self.w * float(self))

    __rmul__ = __mul__  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------- trainer


def _trainer_class() -> type:
    from trl import GRPOTrainer

    class DifferadGRPOTrainer(GRPOTrainer):
        """GRPOTrainer + group-wise resampling + difficulty-aware weighting (see the module docstring)."""

        def __init__(
            self,
            *args: Any,
            max_resample: int = 2,
            resample_eps: float = 1e-6,
            difficulty_weighting: bool = True,
            tau: float = 0.3,
            loc_rewards: Sequence[str] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.max_resample = max_resample
            self.resample_eps = resample_eps
            self.difficulty_weighting = difficulty_weighting
            self.tau = tau
            names = [n.removesuffix("_reward") for n in self.reward_func_names]
            loc = set(LOC_REWARDS if loc_rewards is None else loc_rewards)
            self.loc_indices = [i for i, n in enumerate(names) if n in loc]
            self.reward_maxima = [float(getattr(f, "max_value", 1.0)) for f in self.reward_funcs]
            self._pending_inputs: list[dict] | None = None
            self._cached: tuple[Any, Any] | None = None
            self._last_rewards: Any = None
            self._last_texts: list[str] = []
            self._resample_stats: dict[str, float] | None = None

        # -- generation + resampling
        def _generate(self, prompts: list):
            out = super()._generate(prompts)
            inputs = self._pending_inputs
            if inputs is None or not self.model.training or self.max_resample <= 0:
                return out
            prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images = out
            if tool_mask is not None or extra or any(tool_images or []):
                console.warn("resampling is skipped for tool-calling or custom rollouts")
                return out
            completion_ids, completions = list(completion_ids), list(completions)
            logprobs = None if logprobs is None else list(logprobs)
            weights = self.reward_weights.tolist()

            def score(c: list, ids: list) -> np.ndarray:
                self._cached = None
                return self._calculate_rewards(inputs, prompts, c, ids).float().cpu().numpy()

            def generate(sub: list) -> tuple[list, list, list | None]:
                r = super(DifferadGRPOTrainer, self)._generate(sub)
                return r[3], r[1], r[4]

            offset = self.accelerator.process_index * len(prompts)
            rewards, stats = resample_groups(
                prompts,
                completions,
                completion_ids,
                logprobs,
                score=score,
                generate=generate,
                weights=weights,
                group_size=self.num_generations,
                offset=offset,
                max_resample=self.max_resample,
                eps=self.resample_eps,
                maxima=self.reward_maxima,
            )
            self._resample_stats = stats
            device = self.accelerator.device
            import torch

            self._cached = (completions, torch.as_tensor(rewards, dtype=torch.float32, device=device))
            return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            if self._cached is not None and self._cached[0] is completions:
                rewards = self._cached[1]
            else:
                rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._last_rewards = rewards
            from differad_cli.train.rewards import completion_text

            self._last_texts = [completion_text(c) for c in completions]
            return rewards

        # -- weights and logging
        def _generate_and_score_completions(self, inputs):
            import torch

            mode = "train" if self.model.training else "eval"
            self._pending_inputs = inputs
            self._resample_stats = None
            try:
                output = super()._generate_and_score_completions(inputs)
            finally:
                self._pending_inputs, self._cached = None, None
            if mode != "train":
                return output
            device = self.accelerator.device
            rewards = self._last_rewards.float().cpu().numpy()
            n_local = len(inputs)
            start = self.accelerator.process_index * n_local
            g = self.num_generations
            if self.difficulty_weighting and self.loc_indices:
                r_loc = np.nan_to_num(rewards[:, self.loc_indices].sum(axis=1), nan=0.0)
                w_all = group_weights(r_loc, g, tau=self.tau)
            else:
                w_all = np.ones(rewards.shape[0])
            output["difficulty_weight"] = torch.as_tensor(
                w_all[start : start + n_local], dtype=torch.float32, device=device
            )
            metrics = self._metrics[mode]
            metrics["difficulty/weight_mean"].append(float(w_all.mean()))
            stats = self._resample_stats
            if stats is None:  # resampling off: still report how many groups carried no signal
                share = plan_resampling(
                    rewards, self.reward_weights.tolist(), g, eps=self.resample_eps, maxima=self.reward_maxima
                )
                stats = {
                    "resample/degenerate_before": share.degenerate_share,
                    "resample/degenerate_after": share.degenerate_share,
                    "resample/rounds": 0.0,
                }
            for k, v in stats.items():
                metrics[k].append(v)
            local = batch_scores(
                self._last_texts,
                [x.get("gt_box") for x in inputs],
                [x.get("label", 1) for x in inputs],
                [x.get("extent") for x in inputs],
            )
            scores = self.accelerator.gather(torch.as_tensor(local, dtype=torch.float32, device=device))
            metrics["batch/iou"].append(float(scores.mean()))
            metrics["batch/acc@0.3"].append(float((scores >= 0.3).float().mean()))
            return output

        def _compute_loss(self, model, inputs):
            w = inputs.get("difficulty_weight")
            if w is None:
                return super()._compute_loss(model, inputs)
            inputs = {**inputs, "advantages": inputs["advantages"] * w}
            if self.beta == 0.0:
                return super()._compute_loss(model, inputs)
            beta = self.beta
            self.beta = _RowBeta(beta, w.unsqueeze(1))
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self.beta = beta

    return DifferadGRPOTrainer


def __getattr__(name: str) -> Any:
    """``DifferadGRPOTrainer`` is built on first use, so importing this module does not import TRL."""
    if name == "DifferadGRPOTrainer":
        cls = _trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------ data + command


def rl_dataset(pairs: list[Pair], cfg: RLConfig, family: str, resize: dict[str, int], seed: int) -> Any:
    """Lazy GRPO rows: prompt (seeded paraphrase), [reference, target], gt_box in model coordinates."""
    from differad_cli.protocol.prompts import build_messages
    from differad_cli.train.common import lazy_dataset, model_box, model_extent, pair_images, prompt_rng

    def row(i: int) -> dict[str, Any]:
        pair = pairs[i]
        rng = prompt_rng(seed, i) if cfg.paraphrase else None
        return {
            "prompt": build_messages(cfg.template, rng=rng),
            "images": pair_images(pair),
            "gt_box": list(model_box(pair, family, resize)),
            "extent": model_extent(pair, family, resize),
            "label": pair.label,
            "id": pair.id,
        }

    return lazy_dataset(len(pairs), row)


def train_rl(
    *,
    output_dir: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    trainer_hook: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run GRPO; returns the train summary. ``options`` override the recipe (CLI values)."""
    from differad_cli.models.load import resize_params
    from differad_cli.train.common import left_padding, setup, suppress_vision_tokens, train_and_save
    from differad_cli.train.rewards import get_reward

    reward_funcs: list[Any] = []

    def rewards(cfg: Any) -> None:  # unknown reward names fail before the model loads
        params = {"alpha": cfg.alpha, "lam": cfg.lam, "tau": cfg.tau, "delta": cfg.delta}
        reward_funcs.extend(get_reward(name, **params) for name in cfg.rewards)

    run = setup("rl", output_dir=output_dir, recipe=recipe, options=options, check=rewards)
    cfg, args = run.cfg, run.args
    assert isinstance(cfg, RLConfig)
    suppress_vision_tokens(args, run.model)
    left_padding(run.processor)
    dataset = rl_dataset(run.pairs, cfg, run.family, resize_params(run.processor), args.seed)
    trainer = _trainer_class()(
        model=run.model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=run.processor,
        peft_config=run.peft_config,
        callbacks=run.callbacks,
        max_resample=cfg.max_resample,
        resample_eps=cfg.resample_eps,
        difficulty_weighting=cfg.difficulty_weighting,
        tau=cfg.tau,
    )
    if trainer_hook is not None:
        trainer_hook(trainer)
    banner = (
        f"train-rl: {len(run.pairs)} pairs, family {run.family}, G={args.num_generations}, rewards "
        f"{'+'.join(cfg.rewards)}, max_resample {cfg.max_resample}, output {output_dir}"
    )
    return train_and_save(trainer, run, output_dir, banner)
