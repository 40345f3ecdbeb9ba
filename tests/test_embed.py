"""Embedders (pixel default, a tiny random CLIP saved in tmp_path) and the blocked top-k search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cli_helpers import build_tiny_clip
from differad_cli.core.images import save_png
from differad_cli.pair.retrieval import PIXEL_DIM, pixel_embedding, topk_cosine, topk_naive


def img(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_pixel_embedding_is_unit_and_prefers_similar_images() -> None:
    a = img(0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(1).integers(-8, 9, a.shape), 0, 255).astype(
        np.uint8
    )
    other = img(2)
    ea, en, eo = (pixel_embedding(x) for x in (a, noisy, other))
    assert ea.shape == (PIXEL_DIM,) and ea.dtype == np.float32
    assert abs(float(np.linalg.norm(ea)) - 1.0) < 1e-5
    assert float(ea @ en) > float(ea @ eo)
    flat = np.full((20, 30, 3), 77, np.uint8)
    assert np.isfinite(pixel_embedding(flat)).all()
    assert float(pixel_embedding(flat) @ pixel_embedding(flat + 1)) > 0.99  # flat images match each other


@pytest.mark.parametrize(("n_ref", "k", "group"), [(1000, 8, 64), (37, 8, 16), (5, 8, 256), (300, 1, 7)])
def test_topk_matches_naive(n_ref: int, k: int, group: int) -> None:
    rng = np.random.default_rng(n_ref)
    q = rng.standard_normal((50, 16)).astype(np.float32)
    r = rng.standard_normal((n_ref, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    idx, sims = topk_cosine(q, r, k, block=16, group=group)
    ref = topk_naive(q, r, k)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(sims, np.take_along_axis(q @ r.T, ref, axis=1), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 1e-7)  # best first


def test_topk_exclude_never_returns_self() -> None:
    rng = np.random.default_rng(3)
    r = rng.standard_normal((200, 8)).astype(np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    idx, _ = topk_cosine(r, r, 8, exclude=np.arange(200), group=32)
    assert not np.any(idx == np.arange(200)[:, None])
    np.testing.assert_array_equal(idx, topk_naive(r, r, 8, exclude=np.arange(200)))
    one, _ = topk_cosine(r[:1], r[:1], 8, exclude=np.array([0]))
    assert one.shape == (1, 0)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def test_clip_embedder_on_tiny_random_clip(tiny_clip: Path, tmp_path: Path) -> None:
    from differad_cli.pair.retrieval import get_embedder

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        save_png(paths[-1], img(10 + i))
    emb = get_embedder("clip", clip_model=tiny_clip)
    vecs = emb.embed_paths(paths)
    assert vecs.shape == (3, 8) and emb.dim == 8
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    again = emb.embed_paths(paths[::-1])
    np.testing.assert_allclose(again[::-1], vecs, atol=1e-5)  # deterministic, order-independent


def test_pair_with_clip_embedder_picks_identical_reference(tiny_clip: Path, tmp_path: Path) -> None:
    from differad_cli.pair.build import PairConfig, build_pairs

    cat = tmp_path / "data" / "cat"
    (cat / "train" / "good").mkdir(parents=True)
    (cat / "test" / "good").mkdir(parents=True)
    for i in range(4):
        save_png(cat / "train" / "good" / f"{i}.png", img(20 + i, 32))
    save_png(cat / "test" / "good" / "q.png", img(22, 32))  # a copy of train/good/2.png
    pairs = build_pairs(PairConfig(data=tmp_path / "data", out=tmp_path / "p.jsonl", embedder="clip",
                                   clip_model=tiny_clip, k=3))  # fmt: skip
    assert len(pairs) == 1 and pairs[0].ref.name == "2.png" and len(pairs[0].refs or []) == 3
    assert list(tmp_path.glob(".differad-embed-clip-*.npz"))


def test_clip_folder_missing_is_bad_input(tmp_path: Path) -> None:
    from differad_cli.core.errors import BadInput
    from differad_cli.pair.retrieval import get_embedder

    with pytest.raises(BadInput, match=r"config\.json"):
        get_embedder("clip", clip_model=tmp_path)
    with pytest.raises(BadInput, match="unknown embedder"):
        get_embedder("dino")
