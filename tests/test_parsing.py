from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from differad_cli.protocol.parsing import is_box_only, parse_answer, parse_prediction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>I compare.</think><answer>(10,20),(30,40)</answer>", (10, 20, 30, 40)),
        ("<answer>( 10 , 20 ) , ( 30 , 40 )</answer>", (10, 20, 30, 40)),
        ("[10,20,30,40]", (10, 20, 30, 40)),
        ("[[10, 20, 30, 40]]", (10, 20, 30, 40)),
        ("<|box_start|>(10,20),(30,40)<|box_end|>", (10, 20, 30, 40)),
        ('{"bbox_2d": [10, 20, 30, 40], "label": "scratch"}', (10, 20, 30, 40)),
        ('```json\n[{"bbox_2d": [10, 20, 30, 40]}]\n```', (10, 20, 30, 40)),
        ("10 20 30 40", (10, 20, 30, 40)),
        ("<answer>10.5 20 3e1 40</answer>", (10.5, 20, 30, 40)),
        ("<ANSWER>[1,2,3,4]</ANSWER>", (1, 2, 3, 4)),
        ("<answer>(5,6),(7,8)", (5, 6, 7, 8)),  # unclosed tag: runs to the end
    ],
)
def test_accepted_forms(text: str, expected: tuple) -> None:
    assert parse_answer(text) == tuple(float(v) for v in expected)


def test_answer_tag_wins_over_think_numbers() -> None:
    text = "<think>maybe (1,1),(2,2) or 5 6 7 8</think><answer>[100,200,300,400]</answer>"
    assert parse_answer(text) == (100, 200, 300, 400)


def test_first_valid_box_and_reversed_corners() -> None:
    assert parse_answer("(30,40),(10,20) then (1,1),(2,2)") == (10, 20, 30, 40)
    # Non-finite and degenerate boxes are skipped; the next valid box is kept.
    assert parse_answer("(1e999,1),(2,3) and [5,5,5,9] and [1,1,4,4]") == (1, 1, 4, 4)


def test_zero_box_and_explicit_no_anomaly_words() -> None:
    assert parse_answer("<think>same</think><answer>(0,0),(0,0)</answer>") == (0, 0, 0, 0)
    assert parse_answer("<answer>[0, 0, 0, 0]</answer>") == (0, 0, 0, 0)
    for word in ("none", "No anomaly.", "no defect detected", "[]", "normal"):
        assert parse_answer(f"<answer>{word}</answer>") == (0, 0, 0, 0), word
    assert parse_answer("<answer>there might be none here</answer>") is None


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "(1,2),(3)", "[1,2,3]", "(3,3),(3,9)", "NaN NaN NaN NaN", "(nan,1),(2,3)",
     "12 13 14 15 16", "<answer></answer>", "<answer>the scratch on the left</answer>", "x1 y1 x2 y2"],
)  # fmt: skip
def test_garbage_is_none(text: str) -> None:
    assert parse_answer(text) is None


def test_non_strings_are_none() -> None:
    assert parse_answer(None) is None  # type: ignore[arg-type]
    assert parse_answer(123) is None  # type: ignore[arg-type]


def test_negative_kept_for_the_caller_to_clip() -> None:
    assert parse_answer("(-5,-5),(20,20)") == (-5, -5, 20, 20)


def test_parse_prediction_converts_and_clips() -> None:
    # qwen2_vl: 0-1000 -> pixels of a 200x100 target.
    assert parse_prediction("<answer>(50,200),(150,400)</answer>", "qwen2_vl", 200, 100) == (
        (10, 20, 30, 40),
        True,
    )
    assert parse_prediction("(-50,-50),(500,500)", "qwen2_vl", 64, 64) == ((0, 0, 32, 32), True)
    assert parse_prediction("(0,0),(0,0)", "qwen3_vl", 64, 64) == ((0, 0, 0, 0), True)
    assert parse_prediction("nothing", "qwen2_vl", 64, 64) == ((0, 0, 0, 0), False)
    # Entirely outside the image: nothing left after clipping -> invalid.
    assert parse_prediction("(1001,5),(1200,500)", "qwen2_vl", 64, 64) == ((0, 0, 0, 0), False)
    # qwen2_5_vl: pixels of the resized image (56x56 for a 64x64 target by default).
    assert parse_prediction("[7,7,28,28]", "qwen2_5_vl", 64, 64) == ((8, 8, 32, 32), True)
    assert parse_prediction("[7,7,28,28]", "qwen2_5_vl", 64, 64, resized_hw=(112, 112)) == (
        (4, 4, 16, 16),
        True,
    )


def test_is_box_only() -> None:
    for s in ("(1,2),(3,4)", " [1,2,3,4] ", "[[1,2,3,4]]", '{"bbox_2d": [1,2,3,4]}', "1 2 3 4",
              "<|box_start|>(1,2),(3,4)<|box_end|>"):  # fmt: skip
        assert is_box_only(s), s
    for s in ("box: (1,2),(3,4)", "(1,2),(3,4) (5,6),(7,8)", "[1,2,3,4][5,6,7,8]", "", "none"):
        assert not is_box_only(s), s


_pieces = st.sampled_from(
    ["<answer>", "</answer>", "<think>", "</think>", "(", ")", "[", "]", ",", " ", "-", ".", "e", "9", "0",
     "1e999", "nan", "inf", "<|box_start|>", '{"bbox_2d":', "}", "\n", "none"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=200), st.lists(_pieces, max_size=40).map("".join)))
def test_never_raises_and_result_is_valid(text: str) -> None:
    box = parse_answer(text)
    if box is not None:
        assert len(box) == 4
        if box != (0, 0, 0, 0):
            assert box[0] < box[2] and box[1] < box[3]
    px, valid = parse_prediction(text, "qwen2_vl", 64, 48)
    assert (px == (0, 0, 0, 0)) or (valid and 0 <= px[0] < px[2] <= 64 and 0 <= px[1] < px[3] <= 48)
