"""Every `differad ...` example in README.md runs as written, in document order, after the walkthrough.

The walkthrough block itself runs in the session fixture `readme_walkthrough` (conftest.py) and is checked by
tests/test_e2e.py; here its folder is copied and the README's other examples run in it, each as a fresh
`differad` process. The paths the README says stand for the user's own data (`mvtec_ad/`, `good/`,
`patchcore_maps/`, ...) are built here as tiny trees with exactly those names and the datasets' real layouts.
A block marked `<!-- needs: ... -->` (a GPU, a server, a checkpoint this machine cannot have) is parsed
against the real CLI with every command callback replaced: each option must exist and each value convert.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import build_tiny_clip, pattern
from readme_helpers import REPO, Block, commands, differad, readme_blocks
from test_layouts import make_realiad, make_visa

NOT_RUN = {
    "make demo",
    "make test",
}  # the quick start: the demo and this very suite (test_demo covers the demo)


def save(path: Path, img: np.ndarray) -> None:
    from differad_cli.core.images import save_png

    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, img)


def box_mask(box: tuple[int, int, int, int], size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = 255
    return m


def user_data(root: Path) -> None:
    """The user's own data the README's examples name, tiny, under exactly those names."""
    kinds = ("hstripes", "vstripes", "checker", "dark")
    for i, kind in enumerate(kinds):  # synth --normals good/ --textures dtd/images (DTD: images/<class>/)
        save(root / "good" / f"{i:03d}.png", pattern(kind, seed=i, size=64))
    save(root / "dtd/images/banded/banded_0001.png", pattern("hstripes", seed=7))
    save(root / "dtd/images/chequered/chequered_0001.png", pattern("checker", seed=8))
    for cat in ("bottle", "screw"):  # MVTec AD: 9 normals per category, so --k 8 has 8 to give
        top = root / "mvtec_ad" / cat
        for i in range(9):
            save(top / "train/good" / f"{i:03d}.png", pattern(kinds[i % 4], seed=i))
        save(top / "test/good/000.png", pattern("vstripes", seed=20))
        img = pattern("hstripes", seed=21)
        img[8:20, 10:24] = 255
        save(top / "test/broken_large/000.png", img)
        save(top / "ground_truth/broken_large/000_mask.png", box_mask((10, 8, 24, 20)))
    make_visa(root)
    build_tiny_clip(root / "models" / "clip")
    make_realiad(root)
    for name, kind in (("a", "checker"), ("b", "hstripes")):  # triplets: ref/ tgt/ mask/ by name
        save(root / "coco_inpainted/ref" / f"{name}.png", pattern(kind, seed=30))
        tgt = pattern(kind, seed=30)
        tgt[4:12, 6:16] = 0
        save(root / "coco_inpainted/tgt" / f"{name}.png", tgt)
        save(root / "coco_inpainted/mask" / f"{name}.png", box_mask((6, 4, 16, 12)))
    rng = np.random.default_rng(0)  # anomaly maps of the held-out pairs, named by pair id (PatchCore-like)
    for line in (root / "data/test/pairs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        amap = rng.uniform(0, 0.3, (rec["height"], rec["width"])).astype(np.float32)
        x1, y1, x2, y2 = rec["box"]
        amap[y1:y2, x1:x2] += 0.6
        (root / "patchcore_maps").mkdir(exist_ok=True)
        np.save(root / "patchcore_maps" / f"{rec['id']}.npy", amap)


def parse_only(args: list[str]) -> dict:
    """`differad ARGS` through the real CLI's parser with every command callback replaced: an unknown option,
    a missing value or one of the wrong type raises; nothing runs. The parsed values."""
    import typer.main

    from differad_cli.cli.app import app

    group = typer.main.get_command(app)  # a fresh click group: patching it touches nothing else
    seen: list[dict] = []
    for command in group.commands.values():
        command.callback = lambda **kw: seen.append(kw)
    group.main(args=list(args), prog_name="differad", standalone_mode=False)
    assert len(seen) == 1, f"differad {' '.join(args)} ran no command"
    return seen[0]


def example_blocks() -> list[Block]:
    """The README's code blocks after the walkthrough's, checked to hold nothing the test would miss."""
    out = []
    for block in readme_blocks():
        cmds = commands(block.code)
        if block.walkthrough or block.lang == "json" or (block.lang != "bash" and not cmds):
            continue
        assert block.lang == "bash", f"README.md:{block.line}: differad examples belong in ```bash blocks"
        if block.needs is None:  # it runs: every line is a differad command (or the quick start)
            for line in block.code.replace("\\\n", " ").splitlines():
                text = line.split("#")[0].strip()
                assert not text or text.startswith("differad ") or text in NOT_RUN, (
                    f"README.md:{block.line}: {text!r}: neither a differad example nor in a marked block"
                )
        out.append(block)
    return out


@pytest.mark.slow
def test_every_readme_example_runs_as_written_after_the_walkthrough(
    readme_walkthrough: tuple[Path, list], tmp_path: Path
) -> None:
    walked, _ = readme_walkthrough
    user = tmp_path / "user"
    shutil.copytree(walked, user, symlinks=True)
    user_data(user)

    ran, parsed, failures, times = 0, 0, [], []
    for block in example_blocks():
        for args in commands(block.code):
            if block.needs:
                opts = parse_only(args)
                for value in map(str, opts.values()):
                    if value.startswith("recipes/"):  # a file of this repository must exist, GPU or not
                        assert (REPO / value).is_file(), f"README.md:{block.line}: no {value}"
                parsed += 1
                continue
            t0 = time.perf_counter()
            proc = differad(args, user, check=False)
            times.append((round(time.perf_counter() - t0, 1), " ".join(args[:3])))
            ran += 1
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                where = f"README.md:{block.line}: differad {' '.join(args)}"
                failures.append(f"{where} (exit {proc.returncode}):\n{proc.stderr[-1500:]}")
    print("README examples, seconds each:", times)
    assert not failures, "\n\n".join(failures)
    assert ran >= 25 and parsed >= 4, (ran, parsed)  # the README lost examples (or marked runnable ones)

    # What the prose around the examples says they do
    mvtec = [json.loads(line) for line in (user / "pairs/mvtec_test.jsonl").read_text().splitlines()]
    assert {r["category"] for r in mvtec} == {"bottle", "screw"} and len(mvtec) == 4
    assert all(len(r["refs"]) == 8 and {"n_components", "ref_similarity"} <= set(r) for r in mvtec)
    assert len((user / "data/synth/pairs.jsonl").read_text().splitlines()) > 64  # --resume extended the run
    rl = json.loads((user / "runs/rl-synth/train_summary.json").read_text())
    assert rl["global_step"] > 2  # the --resume example went on from the first run's checkpoint
    assert (user / "runs/cold-lora/merged/config.json").is_file()  # --merge-lora
    assert "acc_0.5" in json.loads((user / "runs/eval-05/metrics.json").read_text())["overall"]
    assert "calibration" in json.loads((user / "runs/patchcore/metrics.json").read_text())


def test_parse_only_rejects_what_the_cli_rejects() -> None:
    """The check applied to marked blocks can fail: unknown options and badly typed values are refused
    (typer's own click exceptions: UsageError and its BadParameter)."""
    assert parse_only(["synth", "--out", "x", "--n", "3"])["n"] == 3
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        parse_only(["synth", "--out", "x", "--no-such-option"])
    with pytest.raises(Exception, match="valid integer"):
        parse_only(["synth", "--out", "x", "--n", "many"])
    with pytest.raises(Exception, match="No such command"):
        parse_only(["no-such-command"])


# ------------------------------------------------------------------------------------- JSON examples


def json_examples(path: Path) -> list[tuple[str, dict]]:
    """Every JSON object in the ```json blocks of a Markdown file, with where it is; `{...}` (an elided
    object) reads as {}."""
    from readme_helpers import blocks

    out, decoder = [], json.JSONDecoder()
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang != "json":
            continue
        text, pos = block.code.replace("{...}", "{}"), 0
        while text[pos:].strip():
            obj, end = decoder.raw_decode(text, pos + len(text[pos:]) - len(text[pos:].lstrip()))
            out.append((f"{path.name}:{block.line}", obj))
            pos = end
    return out


@pytest.mark.slow
def test_json_examples_in_the_docs_have_the_keys_the_commands_write(
    readme_walkthrough: tuple[Path, list],
) -> None:
    walked, _ = readme_walkthrough
    lines = lambda p: [json.loads(line) for line in (walked / p).read_text().splitlines()]  # noqa: E731
    pairs = {rec["label"]: rec for rec in lines("data/train/pairs.jsonl")}  # one anomalous, one normal
    preds = {"diff": lines("runs/pred-diff.jsonl")[0], "hf": lines("runs/eval-rl/predictions.jsonl")[0]}
    metrics = json.loads((walked / "runs/eval-diff/metrics.json").read_text())

    def keys(d: dict) -> set[str]:
        return set(d)

    examples = json_examples(REPO / "README.md") + json_examples(REPO / "docs" / "formats.md")
    kinds = set()
    for where, ex in examples:
        if "synth" in ex:  # a synth pair record: the same keys, and the same `synth` keys, as synth writes
            real = pairs[ex["label"]]
            assert keys(ex) == keys(real), (where, keys(ex) ^ keys(real))
            assert keys(ex["synth"]) == keys(real["synth"]), (where, keys(ex["synth"]) ^ keys(real["synth"]))
            kinds.add(f"pair{ex['label']}")
        elif "valid" in ex:  # a prediction record: as some backend writes it (score: only where it has one)
            assert keys(ex) in [keys(p) for p in preds.values()], (
                where,
                keys(ex),
                [keys(p) for p in preds.values()],
            )
            kinds.add("diff" if "score" in ex else "hf")
        elif "overall" in ex:  # metrics.json: its top-level keys and every overall metric
            assert keys(ex) == keys(metrics), (where, keys(ex) ^ keys(metrics))
            assert keys(ex["overall"]) == keys(metrics["overall"]), (
                where,
                keys(ex["overall"]) ^ keys(metrics["overall"]),
            )
            kinds.add("metrics")
        else:
            raise AssertionError(f"{where}: a JSON example of no known record: {sorted(ex)}")
    assert kinds == {"pair0", "pair1", "diff", "hf", "metrics"}, kinds  # the docs lost an example


# ------------------------------------------------------------------------------------- figures


def figures_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_figures", REPO / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_test_count_is_what_pytest_collects() -> None:
    script = figures_script()
    figs = script.figures((REPO / "README.md").read_text(encoding="utf-8"))
    assert set(figs) <= set(script.NAMES), set(figs) - set(script.NAMES)  # a figure with no source
    assert figs.get("tests") and len(set(figs["tests"])) == 1, figs
    collected = script.count_tests()
    assert int(figs["tests"][0]) == collected, (
        f"README says {figs['tests'][0]} tests, pytest collects {collected}: run scripts/readme_figures.py"
    )


def test_readme_figures_come_from_a_demo_summary(tmp_path: Path) -> None:
    script = figures_script()
    (tmp_path / "runs" / "cold").mkdir(parents=True)
    (tmp_path / "runs" / "cold" / "train_summary.json").write_text('{"global_step": 300}')
    overall = {"n": 32, "invalid": 21}
    doc = {"paths": {"cold": "elsewhere/runs/cold"}, "metrics": {"learner-rl": {"overall": overall}},
           "timings_s": {"synth": 2.5, "train-cold": 40.2, "train-rl": 31.0}}  # fmt: skip
    (tmp_path / "demo.json").write_text(json.dumps(doc) + "\n")
    values = script.demo_figures(tmp_path / "demo.json")
    assert values == {"demo_time": "1 min 14 s", "demo_cold_steps": "300", "demo_valid": "34%"}
    doc["metrics"]["untrained"] = {"overall": {"n": 32, "invalid": 32}}  # demos since 2026-11-28
    doc["metrics"]["learner-rl"]["overall"]["acc_0.3"] = 0.6041
    doc["metrics"]["constant"] = {"overall": {"acc_0.3": 0.25}, "answer": "always normal"}
    (tmp_path / "runs" / "blank").mkdir()  # and since the blank stage
    (tmp_path / "runs" / "blank" / "train_summary.json").write_text('{"global_step": 120}')
    (tmp_path / "demo.json").write_text(json.dumps(doc) + "\n")
    values = script.demo_figures(tmp_path / "demo.json")
    assert values["demo_valid_untrained"] == "0%" and values["demo_blank_steps"] == "120"
    assert values["demo_acc_rl"] == "0.604" and values["demo_acc_constant"] == "0.250"
    assert "demo_acc_cold" not in values and "demo_acc_diff" not in values
    text = "in <!-- fig:demo_time -->53 s<!-- /fig --> or <!-- fig:demo_time -->x<!-- /fig -->"
    text += ", <!-- fig:tests -->1<!-- /fig -->"  # a figure without a value stays
    expected = text.replace("53 s", "1 min 14 s").replace("->x<", "->1 min 14 s<")
    assert script.replace(text, values) == expected
