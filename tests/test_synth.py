"""Algorithm 1 building blocks and the properties of what `synthesize` writes (tiny images, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from differad_cli.core.boxes import ZERO_BOX, mask_box
from differad_cli.core.images import load_mask, load_rgb
from differad_cli.core.records import read_pairs
from differad_cli.synth.augment import OPS, apply_ops, augment
from differad_cli.synth.config import SynthConfig
from differad_cli.synth.geometry import (
    blend,
    foreground_mask,
    jitter_rotate,
    jitter_rotate_defect,
    n_components,
    one_component,
    rotate_mask,
)
from differad_cli.synth.perlin import perlin_mask, perlin_noise, sample_scale
from differad_cli.synth.procedural import SURFACES, TEXTURES
from differad_cli.synth.run import synthesize
from differad_cli.synth.sample import synthesize_pair


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _mean_abs_grad(a: np.ndarray, axis: int) -> float:
    return float(np.abs(np.diff(a, axis=axis)).mean())


# ---------------------------------------------------------------------------------------------- Perlin


def test_perlin_noise_any_shape_float32_bounded_and_seeded() -> None:
    a = perlin_noise((50, 70), (4, 2), _rng(1), angle=33.0)
    b = perlin_noise((50, 70), (4, 2), _rng(1), angle=33.0)
    assert a.shape == (50, 70) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert -1.5 < a.min() < 0 < a.max() < 1.5
    assert not np.array_equal(a, perlin_noise((50, 70), (4, 2), _rng(2), angle=33.0))


def test_perlin_scale_sets_frequency_per_axis() -> None:
    smooth = perlin_noise((128, 128), (1, 1), _rng(0))
    busy = perlin_noise((128, 128), (32, 32), _rng(0))
    assert _mean_abs_grad(busy, 1) > 5 * _mean_abs_grad(smooth, 1)
    aniso = perlin_noise((128, 128), (1, 32), _rng(0))  # 32 periods along x, 1 along y
    assert _mean_abs_grad(aniso, 1) > 5 * _mean_abs_grad(aniso, 0)


def test_perlin_rotation_turns_the_pattern() -> None:
    aniso = perlin_noise((128, 128), (1, 16), _rng(0), angle=90.0)  # stripes now vary along y
    assert _mean_abs_grad(aniso, 0) > 5 * _mean_abs_grad(aniso, 1)


def test_sample_scale_draws_powers_of_two_0_to_5_per_axis() -> None:
    rng = _rng(3)
    draws = [sample_scale(rng) for _ in range(600)]
    values = {v for d in draws for v in d}
    assert values == {1, 2, 4, 8, 16, 32}
    assert sum(ry != rx for ry, rx in draws) > 300  # axes drawn independently


def test_perlin_mask_binary_with_plausible_share() -> None:
    rng = _rng(4)
    masks = [perlin_mask((64, 64), rng) for _ in range(300)]
    assert all(m.dtype == bool and m.shape == (64, 64) for m in masks)
    shares = np.array([m.mean() for m in masks])
    assert 0.01 < shares.mean() < 0.2  # DRAEM's 0.5 threshold keeps a few percent of the image
    assert (shares == 0).mean() < 0.2
    lower = np.array([perlin_mask((64, 64), _rng(i), threshold=0.2).mean() for i in range(100)])
    same = np.array([perlin_mask((64, 64), _rng(i), threshold=0.5).mean() for i in range(100)])
    assert (lower >= same).all() and lower.mean() > same.mean() * 1.5


# ---------------------------------------------------------------------------------------------- masks


def test_one_component_keeps_one_piece_of_the_input() -> None:
    m = np.zeros((40, 40), dtype=bool)
    m[2:12, 2:12] = True  # 100 px
    m[30:33, 30:34] = True  # 12 px
    m[20, 20] = True  # 1 px, below min_area
    picks = []
    for seed in range(200):
        comp = one_component(m, _rng(seed), min_area=4)
        assert comp is not None and n_components(comp) == 1
        assert not (comp & ~m).any()
        assert comp.sum() in (100, 12)
        picks.append(int(comp.sum()))
    assert 0.75 < picks.count(100) / len(picks) < 0.98  # chosen in proportion to area (100 / 112)
    assert one_component(np.zeros((8, 8), bool), _rng(0), min_area=1) is None
    only_small = np.zeros((8, 8), bool)
    only_small[1, 1] = True
    assert one_component(only_small, _rng(0), min_area=2) is None


def _disk(size: int, fg: int, bg: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    img = np.where(disk[:, :, None], fg, bg).astype(np.uint8).repeat(3, axis=2)
    return img, disk


@pytest.mark.parametrize(("fg", "bg"), [(220, 30), (40, 200)])  # both polarities
def test_foreground_mask_finds_an_object_on_a_plain_background(fg: int, bg: int) -> None:
    img, disk = _disk(96, fg, bg)
    noisy = np.clip(img.astype(int) + _rng(0).integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    m = foreground_mask(noisy)
    assert m is not None
    inter, union = (m & disk).sum(), (m | disk).sum()
    assert inter / union > 0.9


def test_foreground_mask_gives_full_frame_for_textures_and_finds_the_molded_part() -> None:
    for name in ("brushed_metal", "woven_fabric", "tiles"):
        for seed in range(5):
            assert foreground_mask(SURFACES[name](64, 64, _rng(seed))) is None, name
    for seed in range(5):
        m = foreground_mask(SURFACES["molded_part"](64, 64, _rng(seed)))
        assert m is not None and 0.1 < m.mean() < 0.7
        assert not m[0].any() and not m[-1].any()


# ---------------------------------------------------------------------------------------------- blend, jitter


def test_blend_follows_the_paper_formula() -> None:
    rng = _rng(5)
    ref = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tex = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    m = np.zeros((32, 32), bool)
    m[5:15, 8:20] = True
    out = blend(ref, tex, m, 0.3)
    assert np.array_equal(out[~m], ref[~m])
    expect = np.rint(0.7 * tex[m].astype(float) + 0.3 * ref[m].astype(float))
    assert np.abs(out[m].astype(float) - expect).max() <= 1
    assert np.array_equal(blend(ref, tex, m, 0.0)[m], tex[m])
    assert np.array_equal(blend(ref, tex, m, 1.0), ref)


def test_jitter_rotate_moves_mask_with_image() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    m = np.zeros((64, 64), bool)
    m[10:20, 40:56] = True
    img[m] = 255
    same, same_m = jitter_rotate(img, m, 1.0, 0.0)
    assert np.array_equal(same, img) and same_m is m
    out, out_m = jitter_rotate(img, m, 1.0, 8.0)
    assert out_m is not None and out_m.any() and not np.array_equal(out_m, m)
    bright = out.max(axis=2) >= 128
    assert (bright & out_m).sum() / (bright | out_m).sum() > 0.9
    darker, _ = jitter_rotate(np.full((8, 8, 3), 100, np.uint8), None, 0.9, 0.0)
    assert (darker == 90).all()


def _changed_outside(tgt: np.ndarray, ref: np.ndarray, mask: np.ndarray, gain: float, angle: float) -> int:
    """Largest difference between ``tgt`` and the equally jittered ``ref`` more than 1 px from ``mask``."""
    import cv2

    base, _ = jitter_rotate(ref, None, gain, angle)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    diff = np.abs(tgt.astype(int) - base.astype(int)).max(axis=2)
    return int(diff[~near].max())


def test_defect_at_the_frame_edge_is_not_mirrored_into_the_rotated_border() -> None:
    ref = np.full((256, 256, 3), 128, np.uint8)
    m = np.zeros((256, 256), bool)
    m[2:20, 2:20] = True  # touches the corner region that a rotation fills by reflection
    blended = blend(ref, np.full_like(ref, 250), m, 0.0)
    for angle in (3.0, -3.0, 0.0):
        final = rotate_mask(m, angle)
        tgt = jitter_rotate_defect(ref, blended, mask_box(m), 1.1, angle, final)
        assert _changed_outside(tgt, ref, final, 1.1, angle) <= 1, angle
        assert (np.abs(tgt.astype(int) - 140)[final].max(axis=1) > 50).mean() > 0.9  # the defect is there
    # the old way (rotating the blended image with a reflected border) mirrors the defect outside the mask
    old, _ = jitter_rotate(blended, None, 1.1, 3.0)
    assert _changed_outside(old, ref, rotate_mask(m, 3.0), 1.1, 3.0) > 50


def test_no_changed_pixel_outside_the_final_mask_over_many_samples() -> None:
    cfg = SynthConfig(out=None, size=96, p_normal=0.0, rotation=5.0)  # type: ignore[arg-type]
    n = 0
    for i in range(120):
        rngs = [np.random.default_rng([i, k]) for k in range(4)]
        ref = SURFACES[sorted(SURFACES)[i % len(SURFACES)]](96, 96, rngs[0])
        tex = TEXTURES[sorted(TEXTURES)[i % len(TEXTURES)]]
        s = synthesize_pair(ref, tex, None, rngs[1], rngs[2], rngs[3], cfg)
        if s.mask is None:
            continue
        n += 1
        assert _changed_outside(s.tgt, s.ref, s.mask, s.meta["gain"], s.meta["angle"]) <= 1, i
    assert n > 100
    again = [np.random.default_rng([7, k]) for k in range(4)]
    ref = SURFACES[sorted(SURFACES)[0]](96, 96, again[0])
    a = synthesize_pair(ref, TEXTURES[sorted(TEXTURES)[0]], None, *again[1:], cfg)
    again = [np.random.default_rng([7, k]) for k in range(4)]
    ref = SURFACES[sorted(SURFACES)[0]](96, 96, again[0])
    b = synthesize_pair(ref, TEXTURES[sorted(TEXTURES)[0]], None, *again[1:], cfg)
    assert np.array_equal(a.tgt, b.tgt)  # deterministic


# ---------------------------------------------------------------------------------------------- augment


def test_lut_ops_match_pil() -> None:
    img = (_rng(6).random((48, 48, 3)) ** 2 * 255).astype(np.uint8)
    pil = Image.fromarray(img)
    assert np.array_equal(apply_ops(img, ["equalize"], _rng(0)), np.asarray(ImageOps.equalize(pil)))
    assert np.array_equal(apply_ops(img, ["invert"], _rng(0)), 255 - img)
    fused = apply_ops(img, ["invert", "equalize"], _rng(0))  # histogram pushed through the fused table
    assert np.array_equal(fused, np.asarray(ImageOps.equalize(ImageOps.invert(pil))))


def test_augment_picks_three_distinct_ops_and_is_seeded() -> None:
    img = _rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    seen = set()
    for seed in range(60):
        out, ops = augment(img, _rng(seed))
        again, ops2 = augment(img, _rng(seed))
        assert ops == ops2 and np.array_equal(out, again)
        assert len(set(ops)) == 3 and out.shape == img.shape and out.dtype == np.uint8
        seen.update(ops)
    assert seen == set(OPS)
    for op in OPS:  # every op runs on its own and changes something for some seed
        outs = [apply_ops(img, [op], _rng(s)) for s in range(4)]
        assert any(not np.array_equal(o, img) for o in outs), op


def test_procedural_makers_are_seeded_and_sized() -> None:
    for makers in (SURFACES, TEXTURES):
        for name, make in makers.items():
            a = make(40, 56, _rng(1))
            assert a.shape == (40, 56, 3) and a.dtype == np.uint8, name
            assert np.array_equal(a, make(40, 56, _rng(1))), name
            assert a.std() > 1.0, name


# ---------------------------------------------------------------------------------------------- one pair


def test_normal_share_and_anomalous_invariants_over_many_samples() -> None:
    cfg = SynthConfig(out=None, size=32)  # type: ignore[arg-type]
    normals = 0
    n = 800
    for i in range(n):
        rngs = [np.random.default_rng([i, k]) for k in range(4)]
        ref = rngs[0].integers(60, 200, (32, 32, 3), dtype=np.uint8)
        tex = rngs[0].integers(0, 256, (32, 32, 3), dtype=np.uint8)
        s = synthesize_pair(ref, tex, None, rngs[1], rngs[2], rngs[3], cfg)
        if s.mask is None:
            normals += 1
            assert s.box == ZERO_BOX
        else:
            assert s.box != ZERO_BOX and s.box == mask_box(s.mask)
            assert n_components(s.mask) == 1 and s.mask.sum() >= cfg.min_area
    assert abs(normals / n - 0.25) < 0.05


def test_p_normal_extremes() -> None:
    ref = np.full((32, 32, 3), 128, np.uint8)
    tex = np.zeros((32, 32, 3), np.uint8)
    for p, expect_normal in ((1.0, True), (0.0, False)):
        cfg = SynthConfig(out=None, size=32, p_normal=p)  # type: ignore[arg-type]
        for i in range(20):
            rngs = [np.random.default_rng([i, k]) for k in range(4)]
            s = synthesize_pair(ref, tex, None, rngs[1], rngs[2], rngs[3], cfg)
            assert (s.mask is None) == expect_normal


def test_region_stays_inside_the_foreground() -> None:
    cfg = SynthConfig(out=None, size=64, p_normal=0.0, rotation=0.0)  # type: ignore[arg-type]
    ref = np.full((64, 64, 3), 90, np.uint8)
    fg = np.zeros((64, 64), bool)
    fg[16:48, 16:48] = True
    for i in range(30):
        rngs = [np.random.default_rng([i, k]) for k in range(4)]
        s = synthesize_pair(ref, np.zeros_like(ref), fg, rngs[1], rngs[2], rngs[3], cfg)
        if not s.fallback:
            assert s.mask is not None and not (s.mask & ~fg).any()


# ---------------------------------------------------------------------------------------------- written pairs


def test_written_pairs_follow_the_contract(synth_pairs) -> None:
    pairs = read_pairs(synth_pairs)
    assert len(pairs) == 12
    assert {p.subset for p in pairs} == {"synthetic"}
    assert {p.category for p in pairs} <= set(SURFACES)
    for p in pairs:
        ref, tgt = load_rgb(p.ref), load_rgb(p.tgt)
        assert ref.shape == tgt.shape == (p.height, p.width, 3) == (64, 64, 3)
        if p.label == 1:
            assert p.mask is not None
            mask = load_mask(p.mask)
            assert mask.shape == (64, 64)
            assert p.box == mask_box(mask)  # the tight box of the written mask
            assert n_components(mask) == 1
            assert not np.array_equal(ref, tgt)
        else:
            assert p.mask is None and p.box == ZERO_BOX
    assert any(p.label == 1 for p in pairs)


def test_blank_surfaces_are_black_with_white_defects(tmp_path: Path) -> None:
    """--surfaces blank (a learner's first curriculum stage): every reference is black, every target black
    but for one white-ish region (the white material is pasted unaugmented, so never inverted into the
    background) whose tight box is the record's; normal targets stay black (the easy generator's settings:
    no rotation or brightness jitter)."""
    easy = {"beta_max": 0.3, "rotation": 0.0, "brightness": 0.0}
    cfg = SynthConfig(out=tmp_path / "blank", n=16, size=64, seed=1, workers=1, surfaces="blank", **easy)
    synthesize(cfg)
    pairs = read_pairs(tmp_path / "blank" / "pairs.jsonl")
    assert {p.category for p in pairs} == {"blank"} and any(p.label for p in pairs)
    for p in pairs:
        ref, tgt = load_rgb(p.ref), load_rgb(p.tgt)
        assert not ref.any()
        if p.label:
            mask = load_mask(p.mask) > 0
            assert p.box == mask_box(mask)
            assert not tgt[~mask].any() and tgt[mask].min() >= 255 * 0.7 - 1  # at most 30% black kept
        else:
            assert not tgt.any()
