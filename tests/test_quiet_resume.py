"""A resumed training run says "resumed from checkpoint-N" (not transformers' key lists); a demo re-run
keeps the timings of the run that did the work in demo.json."""

from __future__ import annotations

from pathlib import Path

import pytest

COLD = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "report_to": [],
}


def test_resume_prints_one_line_not_the_key_lists(
    synth_pairs: Path, tiny_model_dir: Path, tmp_path, capfd
) -> None:
    from differad_cli.train.sft import train_cold

    base = {"pairs": str(synth_pairs), "model": str(tiny_model_dir), "save_steps": 1, **COLD}
    train_cold(output_dir=tmp_path / "run", options={**base, "max_steps": 1})
    capfd.readouterr()
    train_cold(output_dir=tmp_path / "run", options={**base, "max_steps": 2, "resume": True})
    err = capfd.readouterr().err
    assert "resumed from checkpoint-1" in err
    assert "missing keys" not in err and "unexpected keys" not in err, err[:500]


@pytest.mark.parametrize("previous", ['{"timings_s": {"train-rl": 42.0, "synth": 3.0}}', "not json"])
def test_skipped_stages_keep_the_timings_of_the_real_run(tmp_path: Path, previous: str) -> None:
    from differad_cli.demo import Timings

    summary = tmp_path / "demo.json"
    summary.write_text(previous + "\n")
    timings = Timings()
    timings.update({"train-rl": 0.01, "synth": 0.02})
    timings.skipped.add("train-rl")
    kept = timings.for_summary(summary)
    assert kept == ({"train-rl": 42.0, "synth": 0.02} if previous.startswith("{") else dict(timings))
