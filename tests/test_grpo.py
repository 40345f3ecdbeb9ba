"""train-rl: resampling decisions, difficulty weights scaling each completion's loss exactly, 2-step runs,
resume, the staged task and periodic evaluation — all on the tiny offline model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from differad_cli.core.errors import BadInput
from differad_cli.train.resampling import batch_scores, group_weights, plan_resampling, resample_groups
from differad_cli.train.rewards import difficulty_weight

FAST = {
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 8,
    "precision": "fp32",
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "seed": 0,
}


# ---------------------------------------------------------------------------------------------- pure logic


def test_plan_resampling_decisions() -> None:
    r = np.array(
        [
            [0, 0],
            [0, 0],
            [0, 0],  # group 0: all zero -> degenerate, resample
            [1, 1],
            [1, 1],
            [1, 1],  # group 1: all perfect -> degenerate but kept
            [1, 0.2],
            [0, 0],
            [1, 0.9],  # group 2: signal
            [1, 0.5],
            [1, 0.5],
            [1, 0.5],
        ],  # group 3: identical, not perfect -> resample
        dtype=float,
    )
    plan = plan_resampling(r, [1.0, 1.0], 3)
    assert plan.n_groups == 4
    assert plan.degenerate == [0, 1, 3] and plan.perfect == [1] and plan.resample == [0, 3]
    assert plan.degenerate_share == 0.75
    # weights matter: with the second reward switched off, group 2 is still varied through the first one
    assert plan_resampling(r, [1.0, 0.0], 3).resample == [0, 3]
    # differences below eps do not count as signal
    tiny = np.array([[0.5], [0.5 + 1e-9]])
    assert plan_resampling(tiny, [1.0], 2).resample == [0]
    with pytest.raises(ValueError):
        plan_resampling(r, [1.0, 1.0], 5)


def test_group_weights_follow_rewards_difficulty_weight() -> None:
    r_loc = np.array([0.0, 0.0, 1.0, 1.0, 0.2, 0.8])
    w = group_weights(r_loc, 2, tau=0.3)
    expected = [difficulty_weight(r_loc[i : i + 2]) for i in (0, 2, 4)]
    assert np.allclose(w, np.repeat(expected, 2))
    assert w[2] == pytest.approx(1.0) and w[0] == pytest.approx(0.5 * (np.e + np.sqrt(2)))


class FakeRollouts:
    """Completions are strings; the reward of a completion is parsed from it ("g<group>:<reward>")."""

    def __init__(self, schedule: dict[int, list[list[float]]], group_size: int) -> None:
        self.schedule = schedule  # group -> reward lists for successive generations of that group
        self.g = group_size
        self.calls: list[list[int]] = []
        self.round = {k: 0 for k in schedule}

    def score(self, completions: list[str], ids: list[Any]) -> np.ndarray:
        return np.array([[float(c.split(":")[1])] for c in completions])

    def generate(self, prompts: list[int]) -> tuple[list[str], list[list[int]], None]:
        self.calls.append(list(prompts))
        out = []
        bumped: set[int] = set()
        for p in prompts:
            g = p // self.g
            if g not in bumped:
                self.round[g] += 1
                bumped.add(g)
            out.append(f"g{g}:{self.schedule[g][self.round[g]][p % self.g]}")
        return out, [[p] for p in prompts], None


def test_resample_groups_replaces_only_degenerate_groups_and_stops() -> None:
    g = 2
    schedule = {
        0: [[0, 0], [0, 1]],  # degenerate, fixed by the first regeneration
        1: [[1, 1]],  # all perfect: kept
        2: [[0, 1]],  # has signal: untouched
        3: [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],  # stays degenerate: stops after max_resample
    }
    fake = FakeRollouts(schedule, g)
    prompts = list(range(8))  # global row i belongs to group i // 2 (one rank holding all rows)
    completions = [f"g{p // g}:{schedule[p // g][0][p % g]}" for p in prompts]
    original = list(completions)
    ids = [[p] for p in prompts]
    rewards, stats = resample_groups(
        prompts,
        completions,
        ids,
        None,
        score=fake.score,
        generate=fake.generate,
        weights=[1.0],
        group_size=g,
        offset=0,
        max_resample=2,
    )
    assert fake.calls == [[0, 1, 6, 7], [6, 7]]  # round 1: groups 0 and 3; round 2: group 3 only
    assert completions[2:6] == original[2:6]  # perfect and informative groups never touched
    assert completions[0:2] == ["g0:0", "g0:1"]
    assert stats == {
        "resample/degenerate_before": 0.75,
        "resample/degenerate_after": 0.5,
        "resample/rounds": 2.0,
        "resample/perfect_groups": 0.25,
    }
    assert rewards[:, 0].tolist() == [0, 1, 1, 1, 0, 1, 0.5, 0.5]


def test_resample_groups_rank_without_degenerate_rows_still_joins_each_round() -> None:
    # Two ranks of 2 rows each, G = 2: rank 1 (offset 2) holds group 1, which is informative; the gathered
    # rewards show group 0 (on rank 0) degenerate, so rank 1 must join the round with throw-away rows.
    gathered = np.array([[0.0], [0.0], [0.0], [1.0]])
    calls: list[list[str]] = []

    def generate(p: list[str]) -> tuple[list[str], list[list[int]], None]:
        calls.append(p)
        return ["new"] * len(p), [[9]] * len(p), None

    completions = ["a", "b"]
    _, stats = resample_groups(
        ["p2", "p3"],
        completions,
        [[2], [3]],
        None,
        score=lambda c, i: gathered,
        generate=generate,
        weights=[1.0],
        group_size=2,
        offset=2,
        max_resample=1,
    )
    # rank 0 redoes 2 rows, so rank 1 generates 2 throw-away rows: equal shapes in every collective
    assert calls == [["p2", "p2"]] and completions == ["a", "b"] and stats["resample/rounds"] == 1.0


def test_batch_scores_match_the_metric_definition() -> None:
    texts = ["<answer>(0,0),(10,10)</answer>", "<answer>(0,0),(0,0)</answer>", "garbage", "(0,0),(0,0)"]
    gts = [[0, 0, 10, 20], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]]
    assert batch_scores(texts, gts, [1, 1, 1, 0]).tolist() == [0.5, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------- trainer


def _trainer(
    model_dir: Path, pairs: Path, out: Path, *, reward_funcs: list | None = None, **over: Any
) -> Any:
    from differad_cli.core.records import read_pairs
    from differad_cli.models.load import resize_params
    from differad_cli.train.configs import build_configs
    from differad_cli.train.grpo import rl_dataset
    from differad_cli.train.grpo_trainer import DifferadGRPOTrainer
    from differad_cli.train.model import left_padding, load_trainable, suppress_vision_tokens
    from differad_cli.train.rewards import get_reward

    cfg, args = build_configs("rl", recipe=None, cli={**FAST, **over}, output_dir=str(out))
    model, proc = load_trainable(model_dir, cfg, args)
    suppress_vision_tokens(args, model)
    left_padding(proc)
    ds = rl_dataset(read_pairs(pairs), cfg, "qwen2_vl", resize_params(proc), args.seed)
    return DifferadGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs or [get_reward(n) for n in cfg.rewards],
        args=args,
        train_dataset=ds,
        processing_class=proc,
        max_resample=cfg.max_resample,
        tau=cfg.tau,
    )


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_difficulty_weight_scales_each_completion_loss_exactly(
    beta: float, synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from trl import GRPOTrainer

    trainer = _trainer(tiny_model_dir, synth_pairs, tmp_path, beta=beta, max_resample=0)
    trainer.model.train()
    batch = [trainer.train_dataset[i] for i in (0, 0, 0, 0, 2, 2, 2, 2)]
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.training_step during real training
    inputs = trainer._generate_and_score_completions(batch)
    n = inputs["completion_ids"].shape[0]
    gen = torch.Generator().manual_seed(0)
    inputs["advantages"] = torch.randn(n, generator=gen)  # random signal (the tiny model earns no reward)
    if beta:
        inputs["ref_per_token_logps"] = inputs["ref_per_token_logps"] + 0.3 * torch.randn(
            inputs["ref_per_token_logps"].shape, generator=gen
        )  # a reference that differs from the policy, so the KL term is not zero
    w = torch.linspace(0.5, 2.0, n)
    with torch.no_grad():
        weighted = trainer._compute_loss(trainer.model, {**inputs, "difficulty_weight": w})
        plain = []
        for i in range(n):  # the plain TRL loss of completion i alone (other rows masked, same normalizer)
            mask = torch.zeros_like(inputs["completion_mask"])
            mask[i] = inputs["completion_mask"][i]
            row = {k: v for k, v in inputs.items() if k != "difficulty_weight"}
            plain.append(GRPOTrainer._compute_loss(trainer, trainer.model, {**row, "completion_mask": mask}))
        total = GRPOTrainer._compute_loss(
            trainer, trainer.model, {k: v for k, v in inputs.items() if k != "difficulty_weight"}
        )
    plain_t = torch.stack(plain)
    assert float(total) == pytest.approx(float(plain_t.sum()), rel=1e-5, abs=1e-7)
    assert abs(float(weighted)) > 1e-6
    assert float(weighted) == pytest.approx(float((w * plain_t).sum()), rel=1e-5, abs=1e-7)
    assert trainer.beta == beta and type(trainer.beta) is float  # restored after the loss


def test_trainer_hook_regenerates_degenerate_groups_with_fake_reward(
    synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def fake_reward(completions: list, **_: Any) -> list[float]:
        calls["n"] += 1  # 1st scoring: every group degenerate; afterwards varied
        return (
            [0.0] * len(completions) if calls["n"] == 1 else [float(i % 2) for i in range(len(completions))]
        )

    trainer = _trainer(tiny_model_dir, synth_pairs, tmp_path, reward_funcs=[fake_reward], max_resample=2)
    trainer.model.train()
    batch = [trainer.train_dataset[i] for i in (1, 1, 1, 1)]
    out = trainer._generate_and_score_completions(batch)
    m = trainer._metrics["train"]
    assert m["resample/degenerate_before"][-1] == 1.0 and m["resample/degenerate_after"][-1] == 0.0
    assert m["resample/rounds"][-1] == 1.0
    assert calls["n"] == 2  # the last round's rewards are reused: no third scoring by TRL
    assert out["advantages"].abs().sum() > 0
    assert out["difficulty_weight"].tolist() == [1.0] * 4  # no localization reward -> weight 1


def test_train_rl_two_steps_logs_and_checkpoint_generates(
    synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from differad_cli.core.records import read_pairs
    from differad_cli.predict.backends.hf import HFBackend
    from differad_cli.train.grpo import train_rl

    out = tmp_path / "rl"
    result = train_rl(
        output_dir=out,
        options={
            **FAST,
            "pairs": str(synth_pairs),
            "model": str(tiny_model_dir),
            "max_steps": 2,
            "save_steps": 2,
            # two groups per step: prompts of different lengths (paraphrases) share a left-padded batch
            "per_device_train_batch_size": 8,
        },
    )
    assert result["global_step"] == 2
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "loss" in h]
    assert len(logged) == 2
    for key in (
        "rewards/format_reward/mean",
        "rewards/dclr_reward/mean",
        "batch/iou",
        "batch/acc@0.3",
        "resample/degenerate_before",
        "resample/degenerate_after",
        "resample/rounds",
        "difficulty/weight_mean",
    ):
        assert key in logged[0], key
    # a random model earns nothing: every group is degenerate, so both rounds run and w is the maximum
    assert logged[0]["resample/rounds"] == 2.0
    assert logged[0]["difficulty/weight_mean"] == pytest.approx(0.5 * (np.e + np.sqrt(2)), rel=1e-4)
    backend = HFBackend.from_path(out, device="cpu", max_new_tokens=4)
    assert len(backend.predict(read_pairs(synth_pairs)[:2])) == 2


def test_train_rl_resumes_from_checkpoint(synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    from differad_cli.train.grpo import train_rl

    out = tmp_path / "rl"
    base = {
        "pairs": str(synth_pairs),
        "model": str(tiny_model_dir),
        "save_steps": 1,
        "max_resample": 0,
        **FAST,
    }
    train_rl(output_dir=out, options={**base, "max_steps": 2})
    assert (out / "checkpoint-2").is_dir()
    with pytest.raises(BadInput, match="--resume"):
        train_rl(output_dir=out, options={**base, "max_steps": 3})

    steps: list[int] = []

    class Count(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            steps.append(state.global_step)

    result = train_rl(
        output_dir=out,
        options={**base, "max_steps": 3, "resume": True},
        trainer_hook=lambda t: t.add_callback(Count()),
    )
    assert result["global_step"] == 3 and steps == [3]  # only the missing step ran
    first = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    resumed = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert resumed[:2] == first[:2]  # the history of steps 1-2 came from the checkpoint


def test_staged_task_and_periodic_eval(synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from differad_cli.train.grpo import train_rl

    out = tmp_path / "staged"
    train_rl(
        output_dir=out,
        options={
            "pairs": str(synth_pairs),
            "model": str(tiny_model_dir),
            "max_steps": 1,
            "task": "staged",
            "eval_pairs": str(synth_pairs),
            "eval_steps": 1,
            "eval_max_new_tokens": 4,
            "max_resample": 0,
            **FAST,
        },
    )
    summary = json.loads((out / "train_summary.json").read_text())["last"]
    assert "rewards/staged_reward/mean" in summary and "rewards/staged_format_reward/mean" in summary
    assert "eval/miou" in summary and "eval/acc_0.3" in summary
    result = json.loads((out / "eval" / "step-1.json").read_text())
    assert result["overall"]["n"] == 12


def test_unknown_reward_and_bad_weights_are_bad_input(synth_pairs: Path, tmp_path: Path) -> None:
    from differad_cli.train.grpo import train_rl

    opts = {"pairs": str(synth_pairs), "model": str(tmp_path / "none")}
    with pytest.raises(BadInput, match="unknown reward 'nope'"):
        train_rl(output_dir=tmp_path / "o", options={**opts, "rewards": ["format", "nope"]})
    with pytest.raises(BadInput, match="1 reward weights for 2 rewards"):
        train_rl(output_dir=tmp_path / "o", options={**opts, "reward_weights": [1.0]})
    with pytest.raises(BadInput, match="unknown task"):
        train_rl(output_dir=tmp_path / "o", options={**opts, "task": "other"})


def test_an_unknown_reward_is_named_before_the_weight_count(
    synth_pairs, tmp_path, monkeypatch, capsys
) -> None:
    from cli_helpers import run_cli

    args = ["train-rl", "--pairs", synth_pairs, "--model", tmp_path / "none", "--output-dir", tmp_path / "o"]
    assert run_cli(monkeypatch, *args, "--rewards", "foo", "--reward-weights", "1,1") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown reward 'foo' (choose from: format, dclr" in lines[0], lines
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rewards: format,dclr\nreward_weights: [1, 2]\n")  # a comma string is a list
    from differad_cli.train.configs import build_configs

    cfg, _ = build_configs("rl", recipe=recipe, cli={}, output_dir=str(tmp_path / "o"))
    assert cfg.rewards == ["format", "dclr"]
