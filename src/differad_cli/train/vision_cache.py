"""Per-image memo of a frozen vision tower's features.

A frozen tower maps the same image to the same features, and training shows it the same images again and
again: every epoch of a cold start, and G times in every GRPO step (each prompt's group repeats its two
images, then the loss pass encodes them once more).

The memo wraps the instance's ``get_image_features`` (Qwen2-VL, Qwen2.5-VL and Qwen3-VL all route images
through it and return per-image tuples), keys each image by the exact bytes of its patches and its grid, and
runs the tower only on the images it has not seen. It steps aside (calls the tower as before) when the
caller asks for hidden states or attentions or passes precomputed per-batch inputs, and for good (emptied)
once a vision parameter requires grad or the output carries fields it does not know how to rebuild.

Off by default: the key costs a host copy and a hash of every image's patches (~30 ms for an 800x800 image
on one CPU core), which on a GPU may exceed what the tower costs; measured only on the CPU learner (GRPO
5% faster, cold start unchanged; docs/training.md).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from differad_cli.core import console

_KNOWN = {"last_hidden_state", "pooler_output", "deepstack_features", "hidden_states", "attentions"}
_PRECOMPUTED = ("image_", "video_")  # transformers' accepts_precomputed_kwargs prefixes
_BATCH_WIDE = {"cu_seqlens", "max_seqlen", "position_ids"}


class VisionFeatureCache:
    """LRU memo of per-image (pooler_output, deepstack_features) on the host, at most ``max_bytes``."""

    def __init__(self, owner: Any, max_bytes: int) -> None:
        self.owner = owner  # the module with ``visual`` and ``get_image_features`` (e.g. Qwen2VLModel)
        self.original = type(owner).get_image_features  # the class's method (the instance's is this memo)
        self.max_bytes = max_bytes
        self.store: OrderedDict[bytes, tuple[Any, tuple[Any, ...]]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.off = False  # for good: once the tower trains, or its output has fields it cannot rebuild
        self._output_class: Any = None  # the tower's output type, rebuilt for every answer
        self._deepstack = False  # whether it carries deepstack_features (Qwen3-VL: a list, maybe empty)

    def _bypass(self, kwargs: dict[str, Any]) -> bool:
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            return True
        if any(k.startswith(_PRECOMPUTED) or k in _BATCH_WIDE for k in kwargs):
            return True  # precomputed per-batch inputs (cu_seqlens, ...) do not fit a call on a subset
        if any(p.requires_grad for p in self.owner.visual.parameters()):
            self.off = True  # a tower that trains never again serves features from before its update
            self.store.clear()
            self.bytes = 0
            return True
        return False

    @staticmethod
    def _key(patches: Any, grid: Any) -> bytes:
        import torch

        data = patches.detach().contiguous().cpu()
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((tuple(grid.tolist()), str(data.dtype), tuple(data.shape))).encode())
        h.update(data.view(-1).view(torch.uint8).numpy())  # the buffer itself: no extra copy
        return h.digest()

    @staticmethod
    def _nbytes(entry: tuple[Any, tuple[Any, ...]]) -> int:
        pooled, deep = entry
        return sum(t.numel() * t.element_size() for t in (pooled, *deep))

    def _insert(self, key: bytes, entry: tuple[Any, tuple[Any, ...]]) -> None:
        size = self._nbytes(entry)
        if size > self.max_bytes:
            return
        self.store[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self._nbytes(self.store.popitem(last=False)[1])

    def __call__(self, pixel_values: Any, image_grid_thw: Any = None, **kwargs: Any) -> Any:
        if self.off or image_grid_thw is None or self._bypass(kwargs):
            return self.original(self.owner, pixel_values, image_grid_thw, **kwargs)
        import torch

        kwargs["return_dict"] = True
        chunks = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
        keys = [self._key(c, g) for c, g in zip(chunks, image_grid_thw, strict=True)]
        found: dict[bytes, tuple[Any, tuple[Any, ...]]] = {}
        new: dict[bytes, int] = {}  # an image repeated in the batch (a GRPO group) is encoded once
        for i, k in enumerate(keys):
            if k in self.store:
                self.store.move_to_end(k)
                pooled, deep = self.store[k]
                found[k] = (pooled.to(pixel_values.device), tuple(d.to(pixel_values.device) for d in deep))
            elif k not in new:
                new[k] = i
        if new:
            run = list(new.values())
            out = self.original(
                self.owner, torch.cat([chunks[i] for i in run]), image_grid_thw[run], **kwargs
            )
            extra = {k for k, v in out.items() if v is not None} - _KNOWN
            if extra or not isinstance(out.pooler_output, (tuple, list)):
                console.warn(f"vision cache off: unexpected vision output fields {sorted(extra)}")
                self.off = True
                return self.original(self.owner, pixel_values, image_grid_thw, **kwargs)
            self._output_class = type(out)
            self._deepstack = out.get("deepstack_features") is not None
            layers = out.get("deepstack_features") or []
            for j, k in enumerate(new):
                pooled, deep = out.pooler_output[j].detach(), tuple(layer[j].detach() for layer in layers)
                found[k] = (pooled, deep)
                # copies: a CPU .cpu() is the same view, which would keep the whole batch's output alive
                self._insert(k, (pooled.to("cpu", copy=True), tuple(d.to("cpu", copy=True) for d in deep)))
        self.misses += len(new)
        self.hits += len(keys) - len(new)
        rows = [found[k] for k in keys]
        fields: dict[str, Any] = {"pooler_output": tuple(r[0] for r in rows)}
        if self._deepstack:
            fields["deepstack_features"] = [tuple(r[1][n] for r in rows) for n in range(len(rows[0][1]))]
        return self._output_class(**fields)


def install_vision_cache(model: Any, max_gb: float) -> VisionFeatureCache | None:
    """Wrap the frozen vision tower's ``get_image_features`` with a memo of at most ``max_gb`` GB; None when
    off (0), when the tower is trained, or when no module of the model has the Qwen-VL image path."""
    if max_gb <= 0:
        return None
    for module in model.modules():
        visual = getattr(module, "visual", None)
        if visual is None or not callable(getattr(type(module), "get_image_features", None)):
            continue
        if any(p.requires_grad for p in visual.parameters()):
            return None
        cache = VisionFeatureCache(module, int(max_gb * 1e9))
        module.get_image_features = cache
        return cache
    return None
