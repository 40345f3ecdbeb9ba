"""What the demo prints: where everything is and the metric columns side by side."""

from __future__ import annotations

from typing import Any

from differad_cli.demo.config import DemoResult

METRIC_ROWS = (
    ("Acc@0.3", "acc_0.3"),
    ("F1@0.3", "f1_0.3"),
    ("mIoU", "miou"),
    ("mIoU (anomalous)", "miou_ano"),
    ("mIoU (normal)", "miou_nor"),
    ("image precision", "image_precision"),
    ("image recall", "image_recall"),
    ("image F1", "image_f1"),
    ("invalid answers", "invalid"),
)


def side_by_side(metrics: dict[str, dict[str, Any]]) -> str:
    """The overall metrics of each run as columns of one table (`differad compare` prints runs as rows)."""
    names = list(metrics)
    width = max(len(label) for label, _ in METRIC_ROWS)
    col = max(10, *(len(n) for n in names))
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)]
    lines.append("-" * len(lines[0]))
    n = metrics[names[0]]["overall"]
    for label, key in METRIC_ROWS:
        cells = []
        for name in names:
            v = metrics[name]["overall"].get(key)
            text = "-" if v is None else f"{v:d}" if isinstance(v, int) else f"{100 * v:.2f}"
            cells.append(f"{text:>{col}}")
        lines.append(f"{label:<{width}}  " + "  ".join(cells))
    lines.append(
        f"(ratios in %, as in every differad table; {n['n']} held-out pairs: {n['n_ano']} anomalous, "
        f"{n['n_nor']} normal)"
    )
    return "\n".join(lines)


def _overall(metrics: dict[str, dict[str, Any]], key: str, *runs: str) -> list[Any]:
    """``key`` of each run's overall metrics (None where the run or the key is missing)."""
    return [metrics.get(run, {}).get("overall", {}).get(key) for run in runs]


def _protocol_sentence(metrics: dict[str, dict[str, Any]]) -> str:
    """What the run's invalid-answer counts say (not a fixed claim: a short run may not get there)."""
    counts = _overall(metrics, "invalid", "untrained", "learner-rl")
    if None in counts:
        return "see the invalid answers row"
    return f"invalid answers {counts[0]} untrained -> {counts[1]} after RL"


def _learning_sentence(metrics: dict[str, dict[str, Any]]) -> str:
    """The run's own Acc@0.3 figures, constant -> cold start -> RL (not a fixed claim)."""
    acc = _overall(metrics, "acc_0.3", "constant", "learner-cold", "learner-rl")
    if None in acc:
        return "see the Acc@0.3 row"
    return "Acc@0.3 {:.0%} for the best constant answer, {:.0%} after the cold start, {:.0%} after RL".format(
        *acc
    )


def describe(result: DemoResult) -> str:
    """Where everything is and the table; what it says about the runs follows what ran (a resumed older demo
    has no blank stage, `--preset learner` is the benchmark's 8x8 learner)."""
    p = result.paths
    total = sum(result.timings.values())
    two_stage = (p["blank"] / "config.json").is_file()
    data = [f"  blank pairs        {p['blank_pairs']}"] if p["blank_pairs"].is_file() else []
    cold = f"{p['blank']} (blank pairs), then {p['cold']}" if two_stage else str(p["cold"])
    how = "two-stage CPU cold start (blank pairs, then textured ones)" if two_stage else "CPU cold start"
    if result.preset == "demo":
        size = [
            f"{_protocol_sentence(result.metrics)}. These are demo-size numbers (16 image tokens per image,",
            "coarse 4x4 boxes); the full ones are the 8x8 learner's in bench/bench_learning.py (~27 min,",
            "docs/learning.md):",
        ]
    else:
        size = [f"{_protocol_sentence(result.metrics)} (bench/bench_learning.py, docs/learning.md):"]
    lines = [
        "",
        "differad demo: done in " + f"{total:.0f} s",
        *data,
        f"  training pairs     {p['train_pairs']}",
        f"  held-out pairs     {p['test_pairs']}",
        f"  learner model      {p['learner']}",
        f"  train-cold run{'s' if two_stage else ' '}    {cold}",
        f"  train-rl run       {p['rl']}  (final model in the folder root)",
        f"  eval: diff         {p['eval_diff']}/report.md",
        f"  eval: untrained    {p['eval_untrained']}/report.md",
        f"  eval: cold start   {p['eval_cold']}/report.md",
        f"  eval: after RL     {p['eval_rl']}/report.md",
        f"  predict overlay    {p['overlay']}",
        f"  summary            {p['summary']}",
        "",
        "Held-out metrics. constant = the best image-blind answer ("
        + str(result.metrics.get("constant", {}).get("answer", "-"))
        + "); diff = the training-free",
        "golden-template backend; untrained / learner-cold / learner-rl = the ~1.5M-parameter learner",
        f"before training, after the {how} and after",
        f"a few GRPO steps: {_learning_sentence(result.metrics)};",
        *size,
        "",
        side_by_side(result.metrics),
        "",
    ]
    return "\n".join(lines)
