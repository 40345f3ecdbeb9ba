"""Group-wise resampling under TRL's two vLLM modes, against fakes that generate the way each mode does.

- colocate: one completion per row (``n=1``), so any subset of rows can be regenerated;
- server: TRL gathers the rows, keeps every G-th one (``prompts[::G]``) and asks the server for G completions
  per kept prompt, so a regenerated subset must be made of whole, aligned groups.

The fakes tag each completion with the prompt it was generated for: a regenerated row carrying another row's
prompt means the layout was broken. With several training processes the server mode cannot keep that layout
(ranks pad to equal counts), and the combination is refused before any model loads.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from differad_cli.core.errors import BadInput
from differad_cli.train.configs import build_configs
from differad_cli.train.resampling import resample_groups

G = 4


class FakeVLLM:
    """Records every request; answers like TRL's colocate or server path of ``VLLMGeneration.generate``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[list[str]] = []
        self.counter = itertools.count()

    def generate(self, prompts: list[str]) -> tuple[list[str], list[list[int]], None]:
        self.requests.append(list(prompts))
        if self.mode == "server":
            unique = prompts[::G]  # what TRL sends to the server, n = G each
            texts = [f"{p}|{next(self.counter)}" for p in unique for _ in range(G)]
        else:
            texts = [f"{p}|{next(self.counter)}" for p in prompts]
        return texts, [[1] for _ in texts], None


def _run(mode: str, degenerate_groups: set[int], n_groups: int = 4) -> tuple[FakeVLLM, list[str], list[str]]:
    prompts = [f"prompt{g}" for g in range(n_groups) for _ in range(G)]
    fake = FakeVLLM(mode)
    completions, ids, _ = fake.generate(prompts)

    def score(comps: list[str], _ids: list) -> np.ndarray:
        # a row of a "degenerate" group scores 0 until it is regenerated once; other groups vary
        out = []
        for i, c in enumerate(comps):
            g = i // G
            first = int(c.rsplit("|", 1)[1]) < n_groups * G
            out.append(0.0 if g in degenerate_groups and first else float(i % G))
        return np.array(out, dtype=np.float64)[:, None]

    resample_groups(
        prompts, completions, ids, None, score=score, generate=fake.generate, weights=[1.0],
        group_size=G, offset=0, max_resample=2,
    )  # fmt: skip
    return fake, prompts, completions


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_regenerated_rows_belong_to_their_own_prompts(mode: str) -> None:
    fake, prompts, completions = _run(mode, degenerate_groups={1, 3})
    assert len(fake.requests) == 2  # the first generation, then one resampling round
    redo = fake.requests[1]
    assert len(redo) % G == 0 and redo == [p for p in prompts if p in ("prompt1", "prompt3")]
    for prompt, completion in zip(prompts, completions, strict=True):
        assert completion.split("|")[0] == prompt
    regenerated = [i for i, c in enumerate(completions) if int(c.rsplit("|", 1)[1]) >= len(prompts)]
    assert regenerated == [i for i in range(len(prompts)) if i // G in (1, 3)]


def test_server_fake_catches_a_broken_layout() -> None:
    """The check has teeth: a subset that is not whole groups comes back with other prompts' completions."""
    fake = FakeVLLM("server")
    texts, _, _ = fake.generate(["a", "a", "b", "b", "b", "b", "c", "c"])
    assert [t.split("|")[0] for t in texts] != ["a", "a", "b", "b", "b", "b", "c", "c"]


def test_server_mode_with_resampling_and_several_processes_is_refused(tmp_path: Path, monkeypatch) -> None:
    opts = {"use_vllm": True, "vllm_mode": "server", "model": "m", "pairs": "p"}
    with pytest.raises(BadInput, match="needs one training process"):
        build_configs("rl", recipe=None, cli={**opts, "num_processes": 2}, output_dir=str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "4")  # under accelerate launch
    with pytest.raises(BadInput, match="needs one training process"):
        build_configs("rl", recipe=None, cli=opts, output_dir=str(tmp_path))
    monkeypatch.delenv("WORLD_SIZE")
    cfg, args = build_configs("rl", recipe=None, cli={**opts, "max_resample": 0}, output_dir=str(tmp_path))
    assert args.vllm_mode == "server" and cfg.max_resample == 0
    cfg, args = build_configs("rl", recipe=None, cli=opts, output_dir=str(tmp_path))
    assert args.use_vllm and cfg.max_resample == 2  # one process: the layout holds (tested above)
    cfg, args = build_configs(
        "rl", recipe=None, cli={**opts, "vllm_mode": "colocate", "num_processes": 2}, output_dir=str(tmp_path)
    )
    assert args.vllm_mode == "colocate"
