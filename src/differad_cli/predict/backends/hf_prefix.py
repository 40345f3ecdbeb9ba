"""Line mode of the ``hf`` backend: the prompt prefix every target shares, encoded once, its key/value cache
reused for each target, with the answers of the uncached path.

The prefix is the prompt up to where the target image's tokens start: the chat template's text (Qwen2-VL's
default system message included) and the reference image. It is run through the model once per target size
(the reference is resized to the target, as in one-pair mode, so its image tokens depend on that size) and
its cache is copied for each target. Why the answers equal :meth:`HFBackend.predict` on the same pair:

- the prompt is the processor's, as in the uncached path (``input_ids``, ``mm_token_type_ids``, image
  grids): built by the processor for the first target of a size and kept, since every target of that size
  has the same tokens; later targets only get their pixels from the image processor, a shortcut taken
  only after the first target's pixels came out equal to the processor's and while the grid is the same.
  The cached prefix is used only while its token ids equal the prompt's first tokens (else rebuilt);
- Qwen-VL's multimodal rotary positions (M-RoPE) are computed over the whole input: ``generate`` is given
  the full ``input_ids`` and both image grids with the pre-filled cache, and transformers computes the
  positions of all tokens (``get_rope_index``, because the uncached tokens hold an image) and the decoding
  ``rope_deltas`` from them, then feeds the model only the uncached tokens with their positions;
- only the target image goes through the vision tower, its features handed to ``generate`` as
  ``mm_encoder_outputs`` (``pixel_values`` would be matched against both grids): each family's vision
  tower attends within one image, so those features are the ones the uncached path computes for it;
- greedy decoding. The prefix's keys and values come from a shorter forward pass than in the uncached run,
  so floating-point results may differ in the last bits; tests check identical texts and close logits for
  the three families.

transformers before 5.24, a model without these interfaces (``mm_encoder_outputs``, ``cache``) or a prompt
without exactly two images falls back to the uncached path (same answers, no reuse).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from differad_cli.core import console
from differad_cli.core.images import SizedReference, load_rgb
from differad_cli.core.records import Pair, Prediction


@dataclass
class Prefix:
    ids: Any  # (1, L): the prompt tokens the cache holds
    cache: Any  # the model's key/value cache after them
    pixel_rows: int  # rows of ``pixel_values`` that are the reference's patches


def prefix_length(mm_token_type_ids: Any) -> int | None:
    """Where the second image's tokens start (everything before is the same for every target), or None
    when the prompt does not hold exactly two images."""
    types = mm_token_type_ids[0].tolist()
    starts = [i for i, t in enumerate(types) if t != 0 and (i == 0 or types[i - 1] != t)]
    return starts[1] if len(starts) == 2 else None


def core_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (its LoRA layers are injected there)."""
    get = getattr(model, "get_base_model", None)
    return get() if get is not None else model


# The generation code this relies on (positions over the full input when a pre-filled cache meets uncached
# image tokens, pre-encoded features, the ``cache`` argument) is that of transformers 5.24, where the tests
# check it; an older release takes the uncached path rather than risk other positions.
MIN_TRANSFORMERS = (5, 24)


def supports_prefix_cache(model: Any) -> bool:
    import transformers

    release = tuple(int(x) for x in transformers.__version__.split(".")[:2] if x.isdigit())
    if release < MIN_TRANSFORMERS:
        return False
    params = inspect.signature(core_model(model).forward).parameters
    return "mm_encoder_outputs" in params and "cache" in params


@dataclass
class Prompt:
    inputs: Any  # the processor's inputs for the first pair of one target size
    pixel_rows: int  # rows of its ``pixel_values`` that are the reference's patches
    shortcut: bool  # the image processor alone gave that target's pixels as the processor did


class ReferencePrefix:
    """``answer(pair)`` for line mode: one reference, its prompt prefix cached per target size."""

    def __init__(self, backend: Any, reference: SizedReference) -> None:  # an HFBackend (hf imports us)
        self.backend = backend
        self.reference = reference
        self.model = core_model(backend.model)
        self.enabled = supports_prefix_cache(backend.model)
        if not self.enabled:
            console.debug("hf line mode: this model/transformers cannot reuse a prefix cache; uncached path")
        self.prefixes: dict[tuple[int, int], Prefix] = {}
        self.prompts: dict[tuple[int, int], Prompt] = {}
        self.prefix_runs = 0  # prefixes computed (one per target size unless the prompt changes)
        self.last_prompt = (0, 0)  # the last target's prompt tokens, and how many of them came from the cache

    def __call__(self, pair: Pair) -> Prediction:
        tgt = load_rgb(pair.tgt)
        height, width = tgt.shape[:2]
        out, inputs = self.generate(tgt)
        text = self.backend.decode(out, inputs["input_ids"].shape[1])[0]
        grid = inputs.get("image_grid_thw")
        grids = grid[1::2].tolist() if grid is not None else None
        return self.backend.answer(pair.id, text, grids, 0, width, height)

    def generate(self, tgt: np.ndarray, **extra: Any) -> tuple[Any, Any]:
        """``generate``'s output for one target (``extra``: more generate arguments) and the processor's
        inputs for the pair, exactly those of the uncached path."""
        inputs = self._encode(tgt)
        total = int(inputs["input_ids"].shape[1])
        types = inputs.get("mm_token_type_ids")
        length = prefix_length(types) if self.enabled and types is not None else None
        if length is None or inputs["input_ids"].shape[0] != 1:
            self.last_prompt = (total, 0)
            return self.backend.run_generate(**inputs, **extra), inputs
        prefix = self._prefix(tuple(tgt.shape[:2]), inputs, length)
        grid = inputs["image_grid_thw"]
        rest = {k: v for k, v in inputs.items() if k != "pixel_values"}
        with self.backend.inference():
            feats = self.model.get_image_features(
                inputs["pixel_values"][prefix.pixel_rows :], grid[1:], return_dict=True
            )
            out = self.model.generate(
                **{**self.backend.generate_kwargs(), **rest, **extra},
                mm_encoder_outputs={"image": feats},
                cache=copy.deepcopy(prefix.cache),  # generate appends to it; the prefix stays as it is
            )
        self.last_prompt = (total, length)
        return out, inputs

    def _encode(self, tgt: np.ndarray) -> Any:
        """The processor's inputs for (reference, target). Every target of one size has the same prompt
        tokens and reference pixels: after the first, only the target's pixels are computed, by the image
        processor alone, once the first pair has shown that it gives the processor's own pixels."""
        import torch

        size = (int(tgt.shape[0]), int(tgt.shape[1]))
        prompt = self.prompts.get(size) if self.enabled else None
        if prompt is not None and prompt.shortcut:
            pixels, grid = self._target_pixels(tgt)
            if grid is not None and torch.equal(grid, prompt.inputs["image_grid_thw"][1:]):
                ref_pixels = prompt.inputs["pixel_values"][: prompt.pixel_rows]
                return {**prompt.inputs, "pixel_values": torch.cat([ref_pixels, pixels])}
        inputs = self.backend.encode([self.reference.at(*size)], [tgt])
        if self.enabled and "image_grid_thw" in inputs and len(inputs["image_grid_thw"]) == 2:
            rows = int(inputs["image_grid_thw"][0].prod())
            pixels, grid = self._target_pixels(tgt)
            same = grid is not None and torch.equal(grid, inputs["image_grid_thw"][1:])
            self.prompts[size] = Prompt(
                inputs, rows, same and torch.equal(pixels, inputs["pixel_values"][rows:])
            )
        return inputs

    def _target_pixels(self, tgt: np.ndarray) -> tuple[Any, Any]:
        from PIL import Image

        ip = getattr(self.backend.processor, "image_processor", None)
        if ip is None:
            return None, None
        out = ip(images=[Image.fromarray(tgt)], return_tensors="pt")
        return out["pixel_values"].to(self.backend.device), out["image_grid_thw"].to(self.backend.device)

    def _prefix(self, size: tuple[int, int], inputs: Any, length: int) -> Prefix:
        import torch

        ids = inputs["input_ids"][:, :length]
        have = self.prefixes.get(size)
        if have is not None and torch.equal(have.ids, ids):
            return have
        grid = inputs["image_grid_thw"]
        rows = int(grid[0].prod())
        with self.backend.inference():
            out = self.model(
                input_ids=ids,
                attention_mask=inputs["attention_mask"][:, :length],
                mm_token_type_ids=inputs["mm_token_type_ids"][:, :length],
                pixel_values=inputs["pixel_values"][:rows],
                image_grid_thw=grid[:1],
                use_cache=True,
                logits_to_keep=1,
            )
        prefix = Prefix(ids.clone(), out.cache, rows)
        self.prefixes[size] = prefix
        self.prefix_runs += 1
        return prefix
