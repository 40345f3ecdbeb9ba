"""train-rl: GRPO with the DCLR reward, group-wise resampling and difficulty-aware weighting (paper III-B2).

``DifferadGRPOTrainer`` subclasses TRL's GRPOTrainer and overrides four methods, forking nothing:

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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from trl import GRPOTrainer

from differad_cli.core import console
from differad_cli.train.resampling import (
    batch_scores,
    group_weights,
    plan_resampling,
    resample_groups,
    signal_shares,
)
from differad_cli.train.rewards import LOC_REWARDS, completion_text


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

        self._last_texts = [completion_text(c) for c in completions]
        return rewards

    # -- weights and logging
    def _generate_and_score_completions(self, inputs):
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
        for k, v in signal_shares(
            self._last_texts,
            [x.get("gt_box") for x in inputs],
            [x.get("label", 1) for x in inputs],
            g,
            [x.get("extent") for x in inputs],
        ).items():
            if v == v:  # nan: no anomalous group in this batch
                metrics[k].append(v)
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
