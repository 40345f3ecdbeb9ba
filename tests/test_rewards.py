from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from differad_cli.core.errors import BadInput
from differad_cli.train.rewards import (
    LOC_REWARDS,
    REWARDS,
    completion_text,
    consistency_only,
    dclr,
    dclr_released,
    difficulty_weight,
    format_reward,
    get_reward,
    iou_only,
    is_degenerate,
    staged_format_reward,
    staged_reward,
)

GT = (0, 0, 10, 10)
DIAG = math.sqrt(200)


def test_dclr_no_overlap_still_rewards_center_and_scale() -> None:
    # Same size, shifted 12 px right: IoU 0, centre distance 12, diagonals sqrt(200), areas equal.
    pred = (12, 0, 22, 10)
    s_center = 1 - 12 / (DIAG + 1e-6)
    expected = 0.0 + 1.0 * 0.3 * (0.6 * s_center + 0.4 * 1.0)
    assert dclr(pred, GT) == pytest.approx(expected, abs=1e-9)
    assert dclr(pred, GT) == pytest.approx(0.147265, abs=1e-6)
    assert iou_only(pred, GT) == 0.0
    # Far away and a different size: the consistency terms vanish too.
    assert dclr((50, 50, 51, 51), GT) == pytest.approx(0.3 * 0.4 * (1 - 99 / 100), abs=1e-6)


def test_dclr_below_tau_with_overlap() -> None:
    pred = (0, 0, 10, 2)  # IoU 0.2; centres (5,1)/(5,5): distance 4; areas 20 vs 100
    s_center, s_scale = 1 - 4 / (DIAG + 1e-6), 1 - 80 / (100 + 1e-6)
    cons = 0.6 * s_center + 0.4 * s_scale
    assert dclr(pred, GT) == pytest.approx(0.2 + 0.8 * 0.3 * cons, abs=1e-9)
    assert dclr(pred, GT) == pytest.approx(0.322471, abs=1e-6)
    assert consistency_only(pred, GT) == pytest.approx(cons, abs=1e-9)
    assert dclr_released(pred, GT) == pytest.approx(0.2 + 0.8 * cons, abs=1e-9)
    assert dclr(pred, GT, alpha=1.0, lam=1.0) == pytest.approx(0.2 + 0.8 * s_center, abs=1e-9)


def test_dclr_above_tau_is_iou_plus_delta() -> None:
    pred = (0, 0, 10, 5)  # IoU 0.5
    assert dclr(pred, GT) == pytest.approx(0.5)
    assert dclr(pred, GT, delta=0.1) == pytest.approx(0.6)
    assert dclr(pred, GT, tau=0.6) > 0.5  # below a higher tau the consistency bonus applies
    assert dclr(GT, GT) == pytest.approx(1.0)
    # The released formula has no tau branch: bonus even above 0.3.
    assert dclr_released(pred, GT) == pytest.approx(0.5 + 0.5 * (0.6 * (1 - 2.5 / (DIAG + 1e-6)) + 0.4 * 0.5))


@pytest.mark.parametrize("fn", [dclr, iou_only, consistency_only, dclr_released])
def test_zero_box_rules(fn) -> None:
    zero = (0, 0, 0, 0)
    assert fn(zero, zero) == 1.0
    assert fn((1, 1, 5, 5), zero) == 0.0
    assert fn(None, zero) == 0.0
    assert fn(zero, GT) == 0.0
    assert fn(None, GT) == 0.0


def test_format_reward() -> None:
    good = "<think>the target has a scratch</think>\n<answer>(1,2),(30,40)</answer>"
    assert format_reward(good) == 1.0
    assert format_reward("<think></think><answer>(0,0),(0,0)</answer>") == 1.0
    assert format_reward("<think>x</think><answer>[[1,2,30,40]]</answer>") == 1.0
    for bad in (
        "<answer>(1,2),(30,40)</answer>",  # no think
        "<think>x</think>",  # no answer
        "<answer>(1,2),(3,4)</answer><think>x</think>",  # wrong order
        "<think>x</think><answer>(1,2),(3,4) (5,6),(7,8)</answer>",  # two boxes
        "<think>x</think><answer>it is at (1,2),(3,4)</answer>",  # more than the box
        "<think>x</think><answer>(3,3),(3,9)</answer>",  # degenerate
        "<think>x</think><answer>(1,2),(3,4)</answer> trailing",
        "<think>x</think><think>y</think><answer>(1,2),(3,4)</answer>",
        "",
    ):
        assert format_reward(bad) == 0.0, bad


STAGED_ANO = (
    "<think><region>upper left</region><analysis>a dark scratch absent from the reference</analysis>"
    "<decision>anomalous</decision></think><answer>(0,0),(10,10)</answer>"
)
STAGED_NOR = (
    "<think><region>none</region><analysis>identical</analysis><decision>normal</decision></think>"
    "<answer>(0,0),(0,0)</answer>"
)


def test_staged_format_reward() -> None:
    assert staged_format_reward(STAGED_ANO) == 1.0
    assert staged_format_reward(STAGED_NOR) == 1.0
    # decision disagrees with the answer
    assert staged_format_reward(STAGED_NOR.replace("(0,0),(0,0)", "(1,1),(5,5)")) == 0.0
    # stages out of order / unknown decision word / plain DifferAD format
    assert staged_format_reward(STAGED_ANO.replace("<region>upper left</region>", "")) == 0.0
    assert staged_format_reward(STAGED_ANO.replace(">anomalous<", ">maybe<")) == 0.0
    assert staged_format_reward("<think>x</think><answer>(1,1),(5,5)</answer>") == 0.0


def test_staged_reward_values() -> None:
    assert staged_reward(STAGED_ANO, GT, 1) == 1.0  # right decision, perfect box
    half_box = STAGED_ANO.replace("(0,0),(10,10)", "(0,0),(10,5)")  # IoU 0.5 -> q = 0.5
    assert staged_reward(half_box, GT, 1) == pytest.approx(0.5 + 0.5 * 0.5)
    assert staged_reward(STAGED_NOR, GT, 1) == 0.0  # wrong decision
    assert staged_reward(STAGED_NOR, (0, 0, 0, 0), 0) == 1.0
    assert staged_reward(STAGED_ANO, (0, 0, 0, 0), 0) == 0.0
    # "normal" decision but a box: decision right (c = 1), localization wrong (q = 0).
    assert staged_reward(STAGED_NOR.replace("(0,0),(0,0)", "(1,1),(5,5)"), (0, 0, 0, 0), 0) == 0.5
    # Without a <decision> tag the answer decides: a non-zero box means "anomalous".
    assert staged_reward("<answer>(0,0),(10,10)</answer>", GT, 1) == 1.0
    assert staged_reward("garbage", GT, 1) == 0.0


def test_difficulty_weight_values() -> None:
    assert difficulty_weight([1, 1, 1, 1]) == pytest.approx(1.0)
    assert difficulty_weight([0.0, 0.0]) == pytest.approx(0.5 * (math.e + math.sqrt(2)))
    # mean 0.4, two of four below tau 0.3
    assert difficulty_weight([0.5, 0.1, 0.2, 0.8]) == pytest.approx(0.5 * (math.exp(0.6) + math.sqrt(1.5)))
    assert difficulty_weight([0.5, 0.1, 0.2, 0.8], tau=0.05) == pytest.approx(0.5 * (math.exp(0.6) + 1.0))
    assert difficulty_weight([]) == 1.0


def test_is_degenerate() -> None:
    assert is_degenerate([1.5, 1.5, 1.5])
    assert is_degenerate([1.0, 1.0 + 1e-9])
    assert not is_degenerate([1.0, 1.2, 1.0])
    assert is_degenerate([2.0])
    assert is_degenerate([])


def test_completion_text_forms() -> None:
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    conv = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(conv) == "ab"
    assert completion_text(None) == ""
    assert completion_text([{"role": "assistant", "content": [{"type": "image"}]}]) == ""


def test_registry_and_callables() -> None:
    assert {"format", "dclr", "iou", "consistency", "dclr_released", "staged"} <= set(REWARDS)
    assert {"dclr", "iou", "consistency", "dclr_released"} <= LOC_REWARDS and "format" not in LOC_REWARDS
    with pytest.raises(BadInput, match=r"unknown reward 'nope'.*dclr"):
        get_reward("nope")
    with pytest.raises(BadInput, match="unknown reward parameter"):
        get_reward("dclr", beta=1)
    fn = REWARDS["dclr"]
    assert fn.__name__ == "dclr_reward"
    comps = [
        "<think>a</think><answer>(0,0),(10,5)</answer>",
        [{"role": "assistant", "content": [{"type": "text", "text": "<answer>(0,0),(0,0)</answer>"}]}],
        "garbage",
        None,
    ]
    gts = [[0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 10, 10], [0, 0, 10, 10]]
    assert fn(comps, gt_box=gts, label=[1, 0, 1, 1], prompts=None) == pytest.approx([0.5, 1.0, 0.0, 0.0])
    # label missing: inferred from the box; a single box is broadcast.
    assert fn(comps[:1], gt_box=[0, 0, 10, 10]) == pytest.approx([0.5])
    # a label-0 row is normal whatever its box column says; garbage columns score 0
    assert fn(comps[:2], gt_box=[[0, 0, 10, 10], None], label=[0, 0]) == [0.0, 1.0]
    assert fn(comps[:2], gt_box=[["a", 1, 2, 3], [float("nan")] * 4], label=[1, 1]) == [0.0, 0.0]
    assert REWARDS["format"](comps) == [1.0, 0.0, 0.0, 0.0]
    assert REWARDS["staged"]([STAGED_ANO, STAGED_NOR], gt_box=[GT, GT], label=[1, 1]) == [1.0, 0.0]
    assert get_reward("dclr", delta=0.2)(comps[:1], gt_box=[GT]) == pytest.approx([0.7])


_pieces = st.sampled_from(
    ["<answer>", "</answer>", "<think>", "</think>", "<decision>", "</decision>", "<region>", "</region>",
     "<analysis>", "</analysis>", "normal", "anomalous", "(", ")", "[", "]", ",", " ", "-", "5", "0", "17",
     "1e999", "nan"]
)  # fmt: skip
_box = st.tuples(*[st.integers(0, 100)] * 4).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(st.text(max_size=80), st.lists(_pieces, max_size=30).map("".join)), min_size=1, max_size=4
    ),
    _box,
    st.sampled_from([0, 1]),
)
def test_callables_never_raise_and_stay_in_bounds(comps: list[str], gt: tuple, label: int) -> None:
    gt = gt if label else (0, 0, 0, 0)
    n = len(comps)
    for name, fn in REWARDS.items():
        out = fn(comps, gt_box=[list(gt)] * n, label=[label] * n)
        assert len(out) == n
        assert all(0.0 <= v <= 1.0 for v in out), (name, out)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_box, _box)
def test_loc_rewards_bounded_and_ordered(pred: tuple, gt: tuple) -> None:
    for fn in (dclr, iou_only, consistency_only, dclr_released):
        assert 0.0 <= fn(pred, gt) <= 1.0 + 1e-9
    assert dclr(pred, gt) >= iou_only(pred, gt) - 1e-12


def test_loc_rewards_clip_answers_to_the_model_frame_like_eval() -> None:
    from differad_cli.train.rewards import get_reward

    dclr_fn = get_reward("dclr")
    overshoot = "<think>x</think><answer>(-100,-100),(1100,1100)</answer>"
    outside = "<think>x</think><answer>(-60,-60),(-20,-20)</answer>"
    gt = [[0, 0, 1000, 1000]] * 2
    clipped = dclr_fn([overshoot, outside], gt_box=gt, label=[1, 1], extent=[[1000, 1000]] * 2)
    assert clipped == [1.0, 0.0]  # eval clips the first to the whole image and finds the second invalid
    raw = dclr_fn([overshoot, outside], gt_box=gt, label=[1, 1])
    assert raw[0] < 1.0 and raw[1] > 0.0  # without the frame nothing is clipped (what the extent fixes)
    staged = get_reward("staged")
    text = "<think><region>r</region><analysis>a</analysis><decision>anomalous</decision></think>"
    assert staged(
        [text + "<answer>(-60,-60),(-20,-20)</answer>"], gt_box=gt[:1], label=[1], extent=[1000, 1000]
    ) == [0.5]


def test_decision_reward() -> None:
    """1 when zero box <=> normal label; unparseable answers earn nothing."""
    from differad_cli.train.rewards import get_reward

    fn = get_reward("decision")
    done = [
        "<think>x</think><answer>(0,0),(0,0)</answer>",
        "<think>x</think><answer>(1,1),(5,5)</answer>",
        "?",
    ]
    assert fn(done, gt_box=[[0, 0, 0, 0]] * 3, label=[0, 0, 0]) == [1.0, 0.0, 0.0]
    assert fn(done, gt_box=[[1, 1, 5, 5]] * 3, label=[1, 1, 1]) == [0.0, 1.0, 0.0]
