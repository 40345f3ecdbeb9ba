"""Image embedders for reference retrieval, top-k search, and an on-disk embedding cache.

The default ``pixel`` embedder needs no weights (a fresh machine works offline): a small mean-centred
grayscale thumbnail (layout) plus colour histograms (appearance), each L2-normalized and mixed so that the
cosine of two embeddings is a weighted sum of the two similarities. ``clip`` is the paper's choice (CLIP
retrieval of the top-8 normal references), loaded from a local folder through transformers.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.images import load_rgb
from differad_cli.core.io import atomic_write

EMBEDDERS = ("pixel", "clip")

THUMB = 14  # 14x14 grayscale layout thumbnail
BINS = 20  # histogram bins per RGB channel
PIXEL_DIM = THUMB * THUMB + 3 * BINS  # 256
LAYOUT_WEIGHT = 0.7  # share of the layout similarity in the cosine; the rest is colour
_BIN_LUT = (np.arange(256) * BINS // 256).astype(np.intp)


class Embedder(Protocol):
    name: str  # identifies the embedding space (used as the cache key)
    dim: int

    def embed_paths(self, paths: Sequence[Path]) -> np.ndarray: ...


def _l2(x: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def pixel_embedding(img: np.ndarray) -> np.ndarray:
    """One image (H, W, 3 uint8) -> a float32 unit vector of PIXEL_DIM."""
    small = cv2.resize(img, (THUMB * 4, THUMB * 4), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    if not np.any(thumb):  # a flat image: keep a constant direction so that flat images match each other
        thumb[:] = 1.0
    hist = np.concatenate(
        [np.bincount(_BIN_LUT[small[:, :, c]].ravel(), minlength=BINS) for c in range(3)]
    ).astype(np.float32)
    hist = np.sqrt(hist / hist.sum())  # Hellinger: cosine of sqrt-histograms is the Bhattacharyya coefficient
    vec = np.concatenate([np.sqrt(LAYOUT_WEIGHT) * _l2(thumb), np.sqrt(1 - LAYOUT_WEIGHT) * _l2(hist)])
    return vec.astype(np.float32)


class PixelEmbedder:
    """Weight-free default: thumbnail + colour histogram (no download, ~1 ms per image plus decode)."""

    name = "pixel-v1"
    dim = PIXEL_DIM

    def embed_paths(self, paths: Sequence[Path]) -> np.ndarray:
        out = np.empty((len(paths), self.dim), dtype=np.float32)
        for i, p in enumerate(console.progress(paths, total=len(paths), desc="embed", unit="img")):
            out[i] = pixel_embedding(load_rgb(p))
        return out


class ClipEmbedder:
    """CLIP image embeddings from a local folder (CLIPModel + its image processor); never downloads."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 32):
        p = Path(path)
        if not (p / "config.json").is_file():
            raise BadInput(f"--clip-model {p}: expected a local CLIP folder holding config.json")
        import torch
        from transformers import CLIPModel

        self.model = CLIPModel.from_pretrained(p, use_safetensors=None, local_files_only=True).eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.processor = _clip_processor(p)
        self.batch_size = batch_size
        self.dim = int(self.model.config.projection_dim)
        digest = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:10]
        self.name = f"clip-{digest}"

    def embed_paths(self, paths: Sequence[Path]) -> np.ndarray:
        import torch

        chunks = []
        starts = range(0, len(paths), self.batch_size)
        for s in console.progress(starts, total=len(starts), desc="embed (clip)", unit="batch"):
            imgs = [load_rgb(p) for p in paths[s : s + self.batch_size]]
            inputs = self.processor(images=imgs, return_tensors="pt")
            with torch.inference_mode():
                out = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device))
            feats = out if isinstance(out, torch.Tensor) else out.pooler_output
            chunks.append(feats.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _l2(np.concatenate(chunks)).astype(np.float32)


def _clip_processor(path: Path):
    """The folder's image processor; the PIL variant when the fast one cannot load (no torchvision)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (ImportError, OSError, ValueError, TypeError):
        from transformers import CLIPImageProcessorPil

        try:
            return CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
        except OSError:
            return CLIPImageProcessorPil()


def get_embedder(name: str = "pixel", *, clip_model: str | os.PathLike[str] | None = None) -> Embedder:
    if name == "pixel":
        return PixelEmbedder()
    if name == "clip":
        if clip_model is None:
            raise BadInput(
                "--embedder clip needs --clip-model PATH (a local CLIP folder; nothing is downloaded)"
            )
        return ClipEmbedder(clip_model)
    raise BadInput(f"unknown embedder '{name}' (expected one of: {', '.join(EMBEDDERS)})")


# ---------------------------------------------------------------------------------------------- top-k


def topk_cosine(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block: int = 2048,
    group: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k') and similarities of the k most similar rows of ``refs`` for each query, best first.

    Rows are unit vectors, so the dot product is the cosine. ``exclude[i]`` (or -1) is a reference index
    query i may not pick (its own image when pairing normal images with each other). Blocked float32
    matmul; instead of an argpartition over every column (slow: ~30 ns/element), take the max of each
    group of ``group`` columns, argpartition those maxima, and search only the k best groups, which
    provably hold the k best columns.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    r = np.ascontiguousarray(refs, dtype=np.float32)
    n = len(r)
    k = min(k, n - (1 if exclude is not None and n > 0 else 0))
    if len(q) == 0 or k <= 0:
        return np.zeros((len(q), 0), dtype=np.int64), np.zeros((len(q), 0), dtype=np.float32)
    full, tail = divmod(n, group)
    ngroups = full + (1 if tail else 0)
    kg = min(k, ngroups)
    rt = r.T.copy()
    out_i = np.empty((len(q), k), dtype=np.int64)
    out_s = np.empty((len(q), k), dtype=np.float32)
    for s in range(0, len(q), block):
        sims = q[s : s + block] @ rt
        b = len(sims)
        if exclude is not None:
            ex = np.asarray(exclude[s : s + block])
            ok = ex >= 0
            sims[np.arange(b)[ok], ex[ok]] = -np.inf
        gmax = sims[:, : full * group].reshape(b, full, group).max(axis=2)  # a view: no copy
        if tail:
            gmax = np.concatenate([gmax, sims[:, full * group :].max(axis=1, keepdims=True)], axis=1)
        if kg < ngroups:
            best_groups = np.argpartition(-gmax, kg - 1, axis=1)[:, :kg]
            cand = (best_groups[:, :, None] * group + np.arange(group)).reshape(b, -1)
        else:
            cand = np.broadcast_to(np.arange(ngroups * group), (b, ngroups * group))
        inside = cand < n  # the last group may be short
        csims = np.take_along_axis(sims, np.minimum(cand, n - 1), axis=1)
        csims[~inside] = -np.inf
        part = np.argpartition(-csims, k - 1, axis=1)[:, :k]
        psims = np.take_along_axis(csims, part, axis=1)
        order = np.argsort(-psims, axis=1, kind="stable")
        out_i[s : s + block] = np.take_along_axis(np.take_along_axis(cand, part, axis=1), order, axis=1)
        out_s[s : s + block] = np.take_along_axis(psims, order, axis=1)
    return out_i, out_s


def topk_naive(
    queries: np.ndarray, refs: np.ndarray, k: int, *, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Reference implementation (full sort per query) that the benchmark and tests check against."""
    sims = queries.astype(np.float64) @ refs.astype(np.float64).T
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                sims[i, e] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings keyed by (absolute path, mtime, size) in one .npz per embedder, next to the output.

    A changed or moved file gets a new key, so stale vectors are never reused; the file is rewritten
    atomically, and a damaged cache is ignored (recomputed) rather than trusted.
    """

    def __init__(self, folder: str | os.PathLike[str], embedder: Embedder):
        self.embedder = embedder
        self.path = Path(folder) / f".differad-embed-{embedder.name}.npz"
        self.table: dict[str, np.ndarray] = {}
        self.hits = 0
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vecs"]
                if vecs.ndim == 2 and vecs.shape[1] == embedder.dim and len(keys) == len(vecs):
                    self.table = {str(kk): v for kk, v in zip(keys, vecs, strict=False)}
            except (OSError, ValueError, KeyError):
                console.warn(f"ignoring unreadable embedding cache {self.path}")

    @staticmethod
    def key(p: Path) -> str:
        st = p.stat()
        return f"{p.resolve()}|{st.st_mtime_ns}|{st.st_size}"

    def embed(self, paths: Sequence[Path]) -> np.ndarray:
        keys = [self.key(p) for p in paths]
        missing = [i for i, kk in enumerate(keys) if kk not in self.table]
        self.hits += len(paths) - len(missing)
        if missing:
            vecs = self.embedder.embed_paths([paths[i] for i in missing])
            for i, v in zip(missing, vecs, strict=False):
                self.table[keys[i]] = v
        if not paths:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self.table[kk] for kk in keys]).astype(np.float32)

    def save(self) -> None:
        buf = io.BytesIO()
        keys = np.array(list(self.table), dtype=str)
        vecs = np.stack(list(self.table.values())) if self.table else np.zeros((0, self.embedder.dim))
        np.savez(buf, keys=keys, vecs=vecs.astype(np.float32))
        atomic_write(self.path, buf.getvalue())
