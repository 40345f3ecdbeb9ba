"""`differad pair`: layouts, retrieval, mask boxes, component counts, bad layouts (built in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import pattern, run_cli
from differad_cli.core.images import save_png

SIZE = 32


def two_component_mask() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[4:8, 4:6] = 255  # small component (8 px)
    m[15:25, 18:30] = 255  # largest component (120 px)
    return m


def make_mvtec(root: Path) -> Path:
    cat = root / "widget"
    for i, kind in enumerate(("hstripes", "vstripes", "checker")):
        (cat / "train" / "good").mkdir(parents=True, exist_ok=True)
        save_png(cat / "train" / "good" / f"{i:03d}.png", pattern(kind, seed=i))
    (cat / "test" / "good").mkdir(parents=True)
    save_png(cat / "test" / "good" / "000.png", pattern("vstripes", seed=10))
    (cat / "test" / "crack").mkdir(parents=True)
    img = pattern("hstripes", seed=11)
    img[two_component_mask() > 0] = 255
    save_png(cat / "test" / "crack" / "000.png", img)
    save_png(cat / "test" / "crack" / "001.png", pattern("checker", seed=12))  # no mask: skipped + warned
    (cat / "ground_truth" / "crack").mkdir(parents=True)
    save_png(cat / "ground_truth" / "crack" / "000_mask.png", two_component_mask())
    save_png(cat / "ground_truth" / "crack" / "007_mask.png", two_component_mask())  # no image: warned
    return cat


def read(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_mvtec_retrieval_boxes_and_components(tmp_path, monkeypatch, capsys) -> None:
    make_mvtec(tmp_path / "data")
    out = tmp_path / "pairs.jsonl"
    assert (
        run_cli(monkeypatch, "pair", "--data", tmp_path / "data", "--layout", "mvtec", "--out", out, "--k", 2)
        == 0
    )
    err = capsys.readouterr().err
    assert "1 defect image(s) without a mask" in err and "test/crack/001.png" in err
    assert "1 mask(s) without an image" in err and "007_mask.png" in err
    assert "widget: 2 pair(s), 1 anomalous, 1 normal" in err
    recs = read(out)
    assert set(recs) == {"widget/test/crack/000", "widget/test/good/000"}
    crack = recs["widget/test/crack/000"]
    assert crack["ref"] == "data/widget/train/good/000.png"  # hstripes: relative to the manifest
    assert crack["box"] == [18, 15, 30, 25] and crack["label"] == 1
    assert crack["n_components"] == 2
    assert crack["subset"] == "crack" and crack["category"] == "widget"
    assert (crack["width"], crack["height"]) == (SIZE, SIZE)
    assert len(crack["refs"]) == 2 and crack["refs"][0] == crack["ref"]
    good = recs["widget/test/good/000"]
    assert good["box"] == [0, 0, 0, 0] and good["label"] == 0 and good["n_components"] == 0
    assert good["ref"].endswith("train/good/001.png")  # vstripes
    # read back through the contract
    from differad_cli.core.records import read_pairs

    pairs = read_pairs(out)
    assert all(p.ref.is_file() and p.tgt.is_file() for p in pairs)
    # the embedding cache was written next to the output and is used on a re-run
    assert list(out.parent.glob(".differad-embed-pixel-*.npz"))


def test_mvtec_single_category_root_and_train_split(tmp_path, monkeypatch) -> None:
    cat = make_mvtec(tmp_path / "data")
    from differad_cli.pair.build import PairConfig, build_pairs

    pairs = build_pairs(PairConfig(data=cat, out=tmp_path / "p.jsonl", split="train", k=8, cache=False))
    assert len(pairs) == 3
    for p in pairs:
        assert p.ref != p.tgt and p.tgt not in (p.refs or [])
        assert len(p.refs or []) == 2 and p.label == 0
    # single-category root for the test split too
    test_pairs = build_pairs(PairConfig(data=cat, out=tmp_path / "q.jsonl", k=1, cache=False))
    assert sorted(p.id for p in test_pairs) == ["widget/test/crack/000", "widget/test/good/000"]


def test_cache_reuses_and_invalidates(tmp_path) -> None:
    from differad_cli.pair.retrieval import EmbeddingCache, PixelEmbedder

    p = tmp_path / "a.png"
    save_png(p, pattern("checker"))
    calls = []

    class Counting(PixelEmbedder):
        def embed_paths(self, paths):
            calls.append(len(paths))
            return super().embed_paths(paths)

    c1 = EmbeddingCache(tmp_path, Counting())
    v1 = c1.embed([p])
    c1.save()
    c2 = EmbeddingCache(tmp_path, Counting())
    np.testing.assert_array_equal(c2.embed([p]), v1)
    assert calls == [1] and c2.hits == 1
    save_png(p, pattern("hstripes"))  # changed file: new key, recomputed
    import os

    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    v3 = c2.embed([p])
    assert calls == [1, 1] and not np.allclose(v3, v1)


def test_folder_layout_subsets_and_flat(tmp_path) -> None:
    from differad_cli.pair.build import PairConfig, build_pairs

    cat = tmp_path / "board"
    (cat / "normal").mkdir(parents=True)
    for i, kind in enumerate(("dark", "checker")):
        save_png(cat / "normal" / f"n{i}.png", pattern(kind, seed=i))
    (cat / "test" / "scratch").mkdir(parents=True)
    img = pattern("checker", seed=5)
    img[two_component_mask() > 0] = 0
    save_png(cat / "test" / "scratch" / "a.png", img)
    save_png(cat / "test" / "b.png", pattern("dark", seed=6))  # flat, no mask: normal
    (cat / "mask" / "scratch").mkdir(parents=True)
    save_png(cat / "mask" / "scratch" / "a.png", two_component_mask())
    pairs = {
        p.id: p for p in build_pairs(PairConfig(data=tmp_path, out=tmp_path / "o.jsonl", layout="folder"))
    }
    a, b = pairs["board/test/scratch/a"], pairs["board/test/b"]
    assert a.box == (18, 15, 30, 25) and a.subset == "scratch" and a.ref.name == "n1.png"
    assert a.extra["n_components"] == 2
    assert b.box == (0, 0, 0, 0) and b.label == 0 and b.subset is None and b.ref.name == "n0.png"


def test_triplets_layout(tmp_path, monkeypatch) -> None:
    root = tmp_path / "coco"
    for d in ("ref", "tgt", "mask"):
        (root / d).mkdir(parents=True)
    for name in ("x", "y"):
        save_png(root / "ref" / f"{name}.png", pattern("checker"))
        save_png(root / "tgt" / f"{name}.png", pattern("checker", seed=1))
    save_png(root / "mask" / "x.png", two_component_mask())
    save_png(root / "tgt" / "z.png", pattern("dark"))  # no reference: skipped with a warning
    out = tmp_path / "t.jsonl"
    assert run_cli(monkeypatch, "pair", "--data", root, "--layout", "triplets", "--out", out) == 0
    recs = read(out)
    assert set(recs) == {"coco/x", "coco/y"}
    assert recs["coco/x"]["box"] == [18, 15, 30, 25] and recs["coco/x"]["n_components"] == 2
    assert recs["coco/y"]["box"] == [0, 0, 0, 0] and recs["coco/y"]["mask"] is None
    assert recs["coco/x"]["ref"] == "coco/ref/x.png"


@pytest.mark.parametrize(
    ("layout", "expected"),
    [("mvtec", "train/good"), ("folder", "normal/"), ("triplets", "ref/")],
)
def test_bad_layouts_exit_2_saying_what_was_expected(tmp_path, monkeypatch, capsys, layout, expected) -> None:
    (tmp_path / "empty").mkdir()
    code = run_cli(
        monkeypatch, "pair", "--data", tmp_path / "empty", "--layout", layout, "--out", tmp_path / "o"
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "expected" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_layout_without_normals_and_bad_options(tmp_path, monkeypatch, capsys) -> None:
    cat = make_mvtec(tmp_path / "d")
    for p in (cat / "train" / "good").iterdir():
        p.unlink()
    assert run_cli(monkeypatch, "pair", "--data", cat, "--out", tmp_path / "o.jsonl") == 2
    assert "no usable images" in capsys.readouterr().err
    assert run_cli(monkeypatch, "pair", "--data", cat, "--layout", "coco", "--out", tmp_path / "o.jsonl") == 2
    assert "unknown layout 'coco'" in capsys.readouterr().err
    assert (
        run_cli(monkeypatch, "pair", "--data", cat, "--embedder", "clip", "--out", tmp_path / "o.jsonl") == 2
    )
    assert "--clip-model" in capsys.readouterr().err


def test_mask_component_box_largest_and_count() -> None:
    from differad_cli.pair.layouts.base import mask_component_box

    assert mask_component_box(np.zeros((5, 5), bool)) == ((0, 0, 0, 0), 0)
    m = two_component_mask() > 0
    m[0, 31] = True  # a third, one-pixel component
    assert mask_component_box(m) == ((18, 15, 30, 25), 3)


def test_out_that_would_destroy_an_input_or_is_a_folder_exits_2_before_any_work(
    tmp_path, monkeypatch, capsys
) -> None:
    cat = make_mvtec(tmp_path / "d")
    image = cat / "train" / "good" / "000.png"
    before = image.read_bytes()
    assert run_cli(monkeypatch, "pair", "--data", cat, "--out", image) == 2
    err = capsys.readouterr().err
    assert "names an image" in err and "Traceback" not in err
    assert image.read_bytes() == before
    assert run_cli(monkeypatch, "pair", "--data", cat, "--out", tmp_path / "d") == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert run_cli(monkeypatch, "pair", "--data", cat, "--out", tmp_path / "f" / "p.jsonl") == 2
    assert "not a folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob(".differad-embed-*"))  # nothing embedded or cached
