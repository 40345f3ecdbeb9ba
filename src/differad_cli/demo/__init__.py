"""The whole pipeline at demo size on a CPU, with no download and no input: the README's first command.

synth (blank pairs, training and held-out pairs of the learner's easy generator) -> the demo's learner
(`tiny-model --preset demo`) -> train-cold on the blank pairs, then on the textured ones (a two-stage
curriculum) -> train-rl -> eval the constant-answer baselines, the `diff` backend and the learner untrained,
after the cold start and after RL on the held-out pairs -> predict one pair with an overlay. Every stage goes
through the same importable functions the CLI uses, and each one is skipped when its outputs are already
there, so an interrupted demo resumes where it stopped.
"""

from differad_cli.demo.config import COLD_OPTIONS, RL_OPTIONS, DemoConfig, DemoResult
from differad_cli.demo.report import describe, side_by_side
from differad_cli.demo.run import Timings, run_demo

__all__ = [
    "COLD_OPTIONS", "RL_OPTIONS", "DemoConfig", "DemoResult", "Timings", "describe", "run_demo",
    "side_by_side",
]  # fmt: skip
