"""The ``hf`` backend: a local Qwen-VL checkpoint (or LoRA adapter) answering the paired prompt.

Batched generation with left padding (all prompts end where generation starts), greedy by default and
seeded. Training's periodic evaluation reuses :class:`HFBackend` on the in-training model, so
``predict`` leaves the model's train/eval mode as it found it.

Qwen2.5-VL answers in pixels of the processor-resized target: that size is read from the processor's own
``image_grid_thw`` for the batch (exact), falling back to ``coords.smart_resize`` with the processor's
resize parameters.

Line mode (``with_reference``) reuses the key/value cache of the prompt prefix shared by every target:
:mod:`differad_cli.predict.backends.hf_prefix`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from differad_cli.core.coords import smart_resize
from differad_cli.core.images import SizedReference, load_pair_images
from differad_cli.core.records import Pair, Prediction
from differad_cli.protocol.parsing import parse_prediction
from differad_cli.protocol.prompts import build_messages


class HFBackend:
    def __init__(
        self,
        model: Any,
        processor: Any,
        family: str,
        *,
        template: str = "differad",
        max_new_tokens: int = 256,
        batch_size: int = 4,
        do_sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
    ):
        self.model = model
        self.processor = processor
        self.family = family
        self.template = template
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)
        self.do_sample = do_sample
        self.temperature = temperature
        self.seed = seed
        self.prompt = processor.apply_chat_template(
            build_messages(template), tokenize=False, add_generation_prompt=True
        )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        **kw: Any,
    ) -> HFBackend:
        from differad_cli.models.load import load_model_and_processor

        model, processor, family = load_model_and_processor(
            path, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return cls(model, processor, family, **kw)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def _resized_hw(self, grid: Any, index: int, width: int, height: int) -> tuple[int, int] | None:
        if self.family != "qwen2_5_vl":
            return None
        from differad_cli.models.load import resize_params

        ip = getattr(self.processor, "image_processor", self.processor)
        patch = int(getattr(ip, "patch_size", 14))
        if grid is not None and len(grid) > index:
            _, gh, gw = (int(v) for v in grid[index])
            return gh * patch, gw * patch
        return smart_resize(height, width, **resize_params(self.processor))

    def encode(self, refs: list[np.ndarray], tgts: list[np.ndarray]) -> Any:
        """The processor's inputs for a batch of (reference, target) RGB arrays, on the model's device:
        left padding (every prompt ends where generation starts)."""
        from PIL import Image

        tok = getattr(self.processor, "tokenizer", None)
        side = getattr(tok, "padding_side", None)
        images = [Image.fromarray(im) for pair in zip(refs, tgts, strict=False) for im in pair]
        try:
            if tok is not None:
                tok.padding_side = "left"  # generation continues right after each prompt
            return self.processor(
                text=[self.prompt] * len(refs), images=images, return_tensors="pt", padding=True
            ).to(self.device)
        finally:
            if tok is not None and side is not None:
                tok.padding_side = side  # the processor may be shared with a trainer

    def generate_kwargs(self) -> dict[str, Any]:
        """This backend's decoding settings for ``model.generate``."""
        tok = getattr(self.processor, "tokenizer", None)
        gen_kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            gen_kw["temperature"] = self.temperature
        if tok is not None:
            pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            if pad_id is not None:
                gen_kw["pad_token_id"] = pad_id
        return gen_kw

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode and no autograd, seeded without disturbing the caller's RNG streams (training keeps its
        own sequence); the model's train/eval mode is restored afterwards."""
        import torch

        was_training = self.model.training
        self.model.eval()
        dev = self.device
        fork = [dev] if getattr(dev, "type", "cpu") == "cuda" else []
        try:
            with torch.random.fork_rng(devices=fork), torch.inference_mode():
                torch.manual_seed(self.seed)
                yield
        finally:
            if was_training:
                self.model.train()

    def run_generate(self, **inputs: Any) -> Any:
        """``model.generate`` on ``inputs`` with this backend's decoding settings (extra arguments pass)."""
        with self.inference():
            return self.model.generate(**{**self.generate_kwargs(), **inputs})

    def decode(self, out: Any, prompt_len: int) -> list[str]:
        return list(self.processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True))

    def generate(self, refs: list[np.ndarray], tgts: list[np.ndarray]) -> tuple[list[str], Any]:
        """Raw answers for a batch of (reference, target) RGB arrays, and the targets' image grids."""
        inputs = self.encode(refs, tgts)
        out = self.run_generate(**inputs)
        grid = inputs.get("image_grid_thw")
        grids = grid[1::2].tolist() if grid is not None else None
        return self.decode(out, inputs["input_ids"].shape[1]), grids

    def answer(self, pid: str, text: str, grids: Any, index: int, width: int, height: int) -> Prediction:
        resized = self._resized_hw(grids, index, width, height)
        box, valid = parse_prediction(text, self.family, width, height, resized)
        return Prediction(pid, box, valid, text)

    def with_reference(self, ref: Path, image: np.ndarray | None = None) -> Callable[[Pair], Prediction]:
        """Line mode: the prompt prefix shared by every target (template text and the reference image) run
        through the model once per target size and its key/value cache reused for each target
        (:mod:`.hf_prefix`); the answers are those of :meth:`predict` on the same pair."""
        from differad_cli.predict.backends.hf_prefix import ReferencePrefix

        return ReferencePrefix(self, SizedReference(ref, image))

    def predict(self, pairs: list[Pair]) -> list[Prediction]:
        preds: list[Prediction] = []
        for s in range(0, len(pairs), self.batch_size):
            batch = pairs[s : s + self.batch_size]
            loaded = [load_pair_images(p.ref, p.tgt) for p in batch]
            texts, grids = self.generate([r for r, _ in loaded], [t for _, t in loaded])
            for i, (pair, (_, tgt), text) in enumerate(zip(batch, loaded, texts, strict=False)):
                height, width = tgt.shape[:2]
                preds.append(self.answer(pair.id, text, grids, i, width, height))
        return preds
