"""Prompt templates at the model boundary: image 1 = reference, image 2 = target (docs/formats.md
"Model-facing protocol").

The wording is family-agnostic on purpose: it names the answer *shape* ``(x1,y1),(x2,y2)`` but not the
coordinate system. Each Qwen-VL family already grounds in its own native system (0-1000 for Qwen2-VL/Qwen3-VL,
resized-image pixels for Qwen2.5-VL), the paper keeps one semantic instruction for every model and adapts only
the format, and the rewards teach the convention during training. One wording also keeps SFT/RL data and
predictions interchangeable across families.

Templates: ``differad`` (the paper's paired prompt, reasoning then box), ``baseline`` (the paper's
baseline-comparison instruction: compare, answer only the box), ``staged`` (three stages: region ->
analysis -> decision, then the box) and ``compact`` (one short question, for learners trained from scratch:
they read no instructions, and the paper's 155-token wording is most of a small learner's sequence, so of
its compute; the answer protocol is the same).
Without an ``rng`` the canonical wording (first of each pool) is used; with one, a paraphrase is drawn.
"""

from __future__ import annotations

import random

from differad_cli.core.errors import BadInput

_NO_ANOMALY = "(0,0),(0,0)"

_DIFFERAD = (
    "Image 1 is a defect-free reference of a product and image 2 is a target image of the same product. "
    "Compare the two images and find the region of image 2 that differs from the reference in a way that "
    "indicates a defect or anomaly. Reason step by step inside <think></think>, then put only the "
    "bounding box "
    "of the anomalous region inside <answer></answer> as (x1,y1),(x2,y2). If image 2 has no "
    "anomalous region, "
    f"answer {_NO_ANOMALY}.",
    "The first image shows a normal sample; the second image is the item under inspection. Look for any "
    "local difference in the second image that would be a defect. Write your reasoning in "
    "<think></think> and "
    "then give just the box around the defect in <answer></answer>, formatted (x1,y1),(x2,y2). When "
    "the second "
    f"image is normal, answer {_NO_ANOMALY}.",
    "You are an inspector comparing a known-good reference (image 1) with a test image (image 2). Identify "
    "where image 2 deviates from the reference. Think it through inside <think></think>; inside "
    "<answer></answer> write only the anomalous region's bounding box as (x1,y1),(x2,y2), or "
    f"{_NO_ANOMALY} if nothing is anomalous.",
    "Image 1: reference without defects. Image 2: target to check. Compare them carefully and locate the "
    "abnormal region in image 2. First explain your comparison in <think></think>. Then output the "
    "bounding box "
    f"only, in <answer></answer>, as (x1,y1),(x2,y2); use {_NO_ANOMALY} if image 2 has no anomaly.",
    "Using image 1 as the normal reference, detect whether image 2 contains a defect and where it "
    "is. Put your "
    "step-by-step reasoning in <think></think>. In <answer></answer> give nothing but the bounding box "
    f"(x1,y1),(x2,y2) of the defect, or {_NO_ANOMALY} if image 2 is defect-free.",
    "Two images of the same product follow: the first is a good reference, the second may contain a defect. "
    "Find the area of the second image that is different from the reference and anomalous. Reason inside "
    "<think></think>, then answer with only its bounding box inside <answer></answer> as (x1,y1),(x2,y2). "
    f"Answer {_NO_ANOMALY} if there is no such area.",
)

_BASELINE = (
    "Image 1 is a normal reference and image 2 is a target image of the same object. Compare the two images "
    "and localize the region of image 2 that is different or anomalous. Answer only with the bounding box "
    f"(x1,y1),(x2,y2) of that region, or {_NO_ANOMALY} if there is none.",
    "Compare the second image with the first (a normal reference) and output only the bounding box "
    f"(x1,y1),(x2,y2) of the different or anomalous region in the second image; output {_NO_ANOMALY} if the "
    "images show no such difference.",
)

_STAGED = (
    "Image 1 is a defect-free reference of a product and image 2 is a target image of the same product. "
    "Inspect image 2 in three stages inside <think></think>: first <region>...</region> names the region of "
    "image 2 that differs from the reference; then <analysis>...</analysis> examines that region "
    "and explains "
    "whether the difference is a defect; finally <decision>anomalous</decision> or "
    "<decision>normal</decision>. "
    "After </think>, put only the bounding box of the anomalous region inside <answer></answer> as "
    f"(x1,y1),(x2,y2), or {_NO_ANOMALY} when the decision is normal.",
    "Compare image 2 (the item under inspection) with image 1 (a good reference) step by step inside "
    "<think></think>: locate the candidate region in <region>...</region>, analyse it in "
    "<analysis>...</analysis>, and decide in <decision>...</decision> with exactly 'anomalous' or 'normal'. "
    "Then give only the defect's bounding box in <answer></answer> as (x1,y1),(x2,y2); answer "
    f"{_NO_ANOMALY} if the decision is normal.",
)

_COMPACT = ("Where does image 2 differ from image 1?",)

_POOLS: dict[str, tuple[str, ...]] = {
    "differad": _DIFFERAD,
    "baseline": _BASELINE,
    "staged": _STAGED,
    "compact": _COMPACT,
}
TEMPLATES: tuple[str, ...] = tuple(_POOLS)


def paraphrases(template: str = "differad") -> tuple[str, ...]:
    """All wordings of a template, canonical first."""
    try:
        return _POOLS[template]
    except KeyError:
        raise BadInput(
            f"unknown prompt template '{template}' (choose from: {', '.join(TEMPLATES)})"
        ) from None


def prompt_text(template: str = "differad", *, rng: random.Random | None = None) -> str:
    """The instruction text; a seeded ``rng`` draws a paraphrase (training), none gives the canonical one."""
    pool = paraphrases(template)
    return pool[0] if rng is None else rng.choice(pool)


def build_messages(template: str = "differad", *, rng: random.Random | None = None) -> list[dict]:
    """Conversational messages for TRL/transformers; the two image placeholders are reference, then target."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "image"},
                {"type": "text", "text": prompt_text(template, rng=rng)},
            ],
        }
    ]
