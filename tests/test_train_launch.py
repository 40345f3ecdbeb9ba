"""Multi-process launches check every input before relaunching and say why they relaunch; bad input in the
workers is one line and exit 2; training output folders follow the ownership rule of every output."""

from __future__ import annotations

import io
import os
import sys
import textwrap
from pathlib import Path

import pytest

from cli_helpers import run_cli
from differad_cli.core.errors import BadInput
from differad_cli.train import launch

# ---------------------------------------------------------------------------------------------- relaunch


@pytest.fixture
def exec_spy(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records every exec of a launcher instead of running it (nothing is ever launched)."""
    calls: list[list[str]] = []

    def fake_exec(path: str, argv: list[str], env: dict) -> None:
        calls.append(list(argv))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execvpe", fake_exec)
    monkeypatch.delenv(launch.ENV_GUARD, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return calls


def _recipe(tmp_path: Path, text: str = "num_processes: 4\n") -> Path:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    return recipe


def test_a_recipe_asking_for_4_processes_with_a_missing_pairs_file_never_relaunches(
    tmp_path, tiny_model_dir, exec_spy, monkeypatch, capsys
) -> None:
    missing = tmp_path / "missing.jsonl"
    args = ["--recipe", _recipe(tmp_path), "--pairs", missing, "--model", tiny_model_dir]
    for command in ("train-cold", "train-rl"):
        assert run_cli(monkeypatch, command, *args, "--output-dir", tmp_path / "o") == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("differad: error:") and str(missing) in lines[0], lines
    assert exec_spy == []


@pytest.mark.parametrize("bad", ["model", "output-dir"])
def test_other_bad_input_is_found_before_relaunching(
    bad, synth_pairs, tiny_model_dir, tmp_path, exec_spy, monkeypatch, capsys
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    model = tmp_path / "no-model" if bad == "model" else tiny_model_dir
    output = out if bad == "output-dir" else tmp_path / "fresh"
    args = ["--recipe", _recipe(tmp_path), "--pairs", synth_pairs, "--model", model, "--output-dir", output]
    assert run_cli(monkeypatch, "train-cold", *args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(model if bad == "model" else out) in lines[0], lines
    assert exec_spy == [] and (out / "notes.txt").read_text() == "mine"


def test_good_input_relaunches_once_and_says_why(
    synth_pairs, tiny_model_dir, tmp_path, exec_spy, monkeypatch, capsys
) -> None:
    recipe = _recipe(tmp_path)
    args = [
        "--recipe",
        recipe,
        "--pairs",
        synth_pairs,
        "--model",
        tiny_model_dir,
        "--output-dir",
        tmp_path / "o",
    ]
    assert run_cli(monkeypatch, "train-cold", *args) == 0
    assert f"recipe {recipe} asks for 4 processes; relaunching via accelerate" in capsys.readouterr().err
    assert len(exec_spy) == 1
    relay = exec_spy[0]
    assert relay[1:3] == ["-m", "differad_cli.train.launch"]
    assert relay[3:6] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert relay[relay.index("--num_processes") + 1] == "4" and "train-cold" in relay
    # the command line overrides the recipe, and says so
    assert run_cli(monkeypatch, "train-cold", *args, "--num-processes", "2") == 0
    assert "the command line asks for 2 processes" in capsys.readouterr().err


def test_launch_request_checks_the_recipe_values(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(launch.ENV_GUARD, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert launch.launch_request(_recipe(tmp_path, "num_processes: 1\n"), {}) is None
    with pytest.raises(BadInput, match="num_processes must be a whole number"):
        launch.launch_request(_recipe(tmp_path, "num_processes: four\n"), {})
    monkeypatch.setenv("LOCAL_RANK", "0")  # already inside a launcher (a user's own `accelerate launch`)
    assert launch.launch_request(_recipe(tmp_path), {}) is None


# ---------------------------------------------------------------------------------------------- the relay


def _fake_launcher(tmp_path: Path, body: str, rc: int) -> list[str]:
    script = tmp_path / "launcher.py"
    script.write_text(
        "import sys\nw = sys.stderr.write\n"
        + textwrap.dedent(body)
        + f"\nsys.stderr.flush()\nsys.exit({rc})\n"
    )
    return [sys.executable, str(script)]


API = "torch/distributed/elastic/multiprocessing/api.py:1]"
ELASTIC = f"""
w("W0101 00:00:00.000 1 {API} Sending process 2 closing signal SIGTERM\\n")
w("E0101 00:00:00.000 1 {API} failed (exitcode: 2) local_rank: 0\\n")
w("Traceback (most recent call last):\\n  File 'run.py', line 1, in <module>\\n")
w("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \\n=====\\n")
w("Root Cause (first observed failure):\\n")
"""


def test_the_relay_turns_bad_input_in_the_workers_into_one_line(tmp_path, capfd) -> None:
    body = 'w("loading\\n")\nw("step 1\\rstep 2\\r")\n'
    body += 'w("differad: error: pairs file not found: p.jsonl\\n")\n' * 3
    body += 'w("[rank3]: differad: error: pairs file not found: p.jsonl\\n")\n' + ELASTIC
    assert launch.relay(_fake_launcher(tmp_path, body, 1)) == 2
    err = capfd.readouterr().err
    assert err == "loading\nstep 1\rstep 2\rdifferad: error: pairs file not found: p.jsonl\n", err


def test_the_relay_shows_everything_when_the_run_fails_otherwise(tmp_path, capfd) -> None:
    body = 'w("differad: failed: RuntimeError: boom (run with -v for the traceback)\\n")\n' + ELASTIC
    assert launch.relay(_fake_launcher(tmp_path, body, 1)) == 1
    err = capfd.readouterr().err
    assert "RuntimeError: boom" in err and "ChildFailedError" in err and "Root Cause" in err
    assert launch.relay(_fake_launcher(tmp_path, 'w("done\\n")', 0)) == 0
    assert capfd.readouterr().err == "done\n"


def test_stderr_filter_holds_partial_lines_until_they_end() -> None:
    out = io.BytesIO()
    f = launch.StderrFilter(out)  # type: ignore[arg-type]
    for chunk in (b"diff", b"erad: err", b"or: bad\r\n", b"[rank1]: differad: error: bad\n", b"tail"):
        f.feed(chunk)
    f.close()
    assert f.errors == ["bad"] and out.getvalue() == b"" and f.held == [b"tail"]


# ---------------------------------------------------------------------------------------------- output dirs


def _check(tmp_path: Path, synth_pairs: Path, model: Path, out: Path, **options: object) -> None:
    from differad_cli.train.common import check_inputs

    opts = {"pairs": str(synth_pairs), "model": str(model), **options}
    check_inputs("cold", output_dir=out, recipe=None, options=opts)


def test_a_folder_that_is_not_a_training_run_is_refused(synth_pairs, tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "model"}')
    with pytest.raises(BadInput, match=f"--output-dir {out} holds .*config.json.*--force") as e:
        _check(tmp_path, synth_pairs, tiny_model_dir, out)
    assert "\n" not in str(e.value)
    _check(tmp_path, synth_pairs, tiny_model_dir, out, force=True)  # the user says so
    _check(tmp_path, synth_pairs, tiny_model_dir, out, resume=True)
    assert (out / "config.json").read_text() == '{"my": "model"}'


@pytest.mark.parametrize("content", ["empty", "hidden only", "train_log.jsonl", "train_summary.json"])
def test_an_empty_folder_or_a_run_of_ours_is_fine(synth_pairs, tiny_model_dir, tmp_path, content) -> None:
    out = tmp_path / "run"
    out.mkdir()
    if content == "hidden only":
        (out / ".gitkeep").write_text("")
    elif content != "empty":
        (out / content).write_text("{}\n")
        (out / "config.json").write_text("{}")  # the final model a finished run wrote
    _check(tmp_path, synth_pairs, tiny_model_dir, out)


def test_the_cli_refuses_a_foreign_output_dir(
    synth_pairs, tiny_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["--pairs", synth_pairs, "--model", tiny_model_dir, "--output-dir", out, "--max-steps", "1"]
    assert run_cli(monkeypatch, "train-cold", *args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(out / "notes.txt") in lines[0] and "--force" in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
