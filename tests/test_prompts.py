from __future__ import annotations

import random

import pytest

from differad_cli.core.errors import BadInput
from differad_cli.protocol.prompts import TEMPLATES, build_messages, paraphrases, prompt_text


def test_templates_named() -> None:
    assert set(TEMPLATES) == {"differad", "baseline", "staged", "compact"}


def test_compact_is_one_short_question() -> None:
    """The learners' template: one wording, far shorter than the paper's (it is most of their compute)."""
    assert len(paraphrases("compact")) == 1
    assert len(prompt_text("compact")) * 4 < len(prompt_text("differad"))
    assert [c["type"] for c in build_messages("compact")[0]["content"]] == ["image", "image", "text"]


@pytest.mark.parametrize("template", ["differad", "baseline", "staged"])
def test_messages_shape_reference_then_target(template: str) -> None:
    msgs = build_messages(template)
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    content = msgs[0]["content"]
    assert [c["type"] for c in content] == ["image", "image", "text"]
    text = content[2]["text"]
    assert text == prompt_text(template)
    assert "(x1,y1),(x2,y2)" in text and "(0,0),(0,0)" in text


@pytest.mark.parametrize("template", ["differad", "staged"])
def test_every_paraphrase_keeps_the_protocol(template: str) -> None:
    for text in paraphrases(template):
        for token in ("<think></think>", "<answer></answer>", "(x1,y1),(x2,y2)", "(0,0),(0,0)"):
            assert token in text, (token, text)
    if template == "staged":
        assert all("<region>" in t and "<analysis>" in t and "<decision>" in t for t in paraphrases(template))


def test_baseline_asks_only_for_the_box() -> None:
    for text in paraphrases("baseline"):
        assert "<think>" not in text and "only" in text


def test_canonical_without_rng_and_seeded_draws() -> None:
    assert prompt_text() == paraphrases("differad")[0]
    draws_a = [prompt_text(rng=random.Random(7)) for _ in range(3)]
    draws_b = [prompt_text(rng=random.Random(7)) for _ in range(3)]
    assert draws_a == draws_b
    rng = random.Random(0)
    seen = {prompt_text("differad", rng=rng) for _ in range(200)}
    assert seen == set(paraphrases("differad")) and len(seen) >= 4


def test_unknown_template_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"unknown prompt template 'nope'.*differad"):
        build_messages("nope")
