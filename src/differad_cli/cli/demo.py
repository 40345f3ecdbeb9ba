"""`differad demo`: the whole pipeline at demo size on a CPU (what `make demo` runs)."""

from __future__ import annotations

from differad_cli.cli.options import Command, config_options
from differad_cli.demo import DemoConfig

HELP = """Run the whole pipeline at demo size, offline, on a CPU (~4 min on 2 cores): synthesize blank,
training and held-out pairs, build the demo's offline learner (Qwen3-VL, ~1.5M parameters), train-cold it
on the blank pairs then on the training pairs, train-rl it for a few steps, evaluate the best constant
answer, the training-free `diff` backend and the learner untrained, after the cold start and after RL on
the held-out pairs, and predict one pair with an overlay. Prints where everything is and the metric columns
side by side. Re-running resumes: stages whose outputs exist are skipped."""


@config_options(DemoConfig)
def demo_cmd(cfg: DemoConfig) -> None:
    from differad_cli.demo import describe, run_demo

    print(describe(run_demo(cfg)))


COMMANDS = (
    Command(
        "demo",
        demo_cmd,
        examples=(
            "differad demo --out demo",
            "differad -q demo --out /tmp/d",
        ),
        help=HELP,
    ),
)
