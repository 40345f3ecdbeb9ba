"""The ``diff`` backend: pairs in, predictions out; line mode prepares the reference once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.core.images import list_images, load_pair_images, load_rgb
from differad_cli.core.records import Pair, Prediction
from differad_cli.predict.backends.diff.calibrate import LOWEST, critical_threshold, pick_threshold
from differad_cli.predict.backends.diff.config import DiffConfig, DiffResult
from differad_cli.predict.backends.diff.localize import (
    WorkingReference,
    compare,
    localize,
    working_reference,
)
from differad_cli.predict.backends.diff.maps import write_map


class DiffBackend:
    """The ``diff`` backend: :func:`localize` on each pair's images; with ``maps_dir`` each pair's anomaly
    map is written there too (``maps.write_map``). ``threshold`` is a number or ``"auto"``."""

    def __init__(
        self,
        threshold: float | str | None = None,
        min_area: float | None = None,
        *,
        n_refs: int = 1,
        refs_dir: Path | None = None,
        maps_dir: Path | None = None,
        illumination: str | None = None,
    ):
        cfg = DiffConfig() if illumination is None else DiffConfig(illumination=illumination)
        if n_refs < 1:
            raise BadInput("--n-refs must be at least 1")
        cfg.n_refs = n_refs
        self.shared: list[Path] = []  # --refs DIR: good images every target is also compared with
        if refs_dir is not None:
            if not Path(refs_dir).is_dir() or not (shared := list_images(refs_dir)):
                raise BadInput(f"--refs {refs_dir}: no images there")
            self.shared = shared
            cfg.n_refs = 1 + len(shared) if n_refs == 1 else n_refs  # all of them unless --n-refs caps
        if threshold == "auto":
            cfg.auto_threshold = True
        elif threshold is not None:
            try:
                threshold = float(threshold)
            except ValueError:
                raise BadInput(
                    f"--threshold must be a number (0-255 units) or auto, got {threshold!r}"
                ) from None
            if not threshold > 0:
                raise BadInput("--threshold must be positive")
            cfg.threshold = threshold
        if min_area is not None:
            if not 0 <= min_area < 1:
                raise BadInput("--min-area must be a fraction in [0, 1)")
            cfg.min_area = min_area
        self.cfg = cfg
        self.maps_dir = None if maps_dir is None else Path(maps_dir)

    def predict(self, pairs: list[Pair]) -> list[Prediction]:
        return [self._answer(p.id, self._one(p)) for p in pairs]

    def _images(self, p: Pair) -> tuple[np.ndarray | list[WorkingReference], np.ndarray]:
        """The pair's reference (with --n-refs / --refs: all its prepared references) and target."""
        ref, tgt = load_pair_images(p.ref, p.tgt)
        candidates = dict.fromkeys([*(p.refs or []), *self.shared])
        own = {Path(p.ref).resolve(), Path(p.tgt).resolve()}  # never the target as its own reference
        extra = [q for q in candidates if Path(q).resolve() not in own][: self.cfg.n_refs - 1]
        if not extra:
            return ref, tgt
        h, w = tgt.shape[:2]
        return [working_reference(im, h, w, self.cfg) for im in (ref, *(load_rgb(q) for q in extra))], tgt

    def calibrate(self, pairs: list[Pair], false_alarm: float) -> dict[str, float]:
        """Set the threshold from normal ``pairs`` so that at most ``false_alarm`` of them are flagged
        (``calibrate.py``); returns what was chosen and how many were flagged at it."""
        self.cfg.auto_threshold = False  # one threshold for every pair; the noise floor stays per pair
        criticals, floors = [], []
        for p in pairs:
            diffs = compare(*self._images(p), self.cfg)[0]
            criticals.append(critical_threshold(diffs, self.cfg))
            floors.append(max(d.floor for d in diffs))
        thr, flagged = pick_threshold(criticals, false_alarm)
        # below every good part's own noise floor the calibration saw nothing: never go lower than the
        # quietest one's, or quieter parts later would be flagged at their noise
        lowest = max(LOWEST, min(floors))
        floor = " (the quietest good part's noise floor: nothing lower was tested)" if thr < lowest else ""
        thr = max(thr, lowest)
        flagged = sum(c > thr for c in criticals)  # the same: no good part is flagged below its floor
        self.cfg.threshold = thr
        console.info(
            f"calibrated threshold {thr:.1f}{floor} on {len(pairs)} normal pairs: {flagged} flagged at it "
            f"({flagged / len(pairs):.1%}; asked for at most {false_alarm:.1%})"
        )
        return {"threshold": thr, "n": len(pairs), "flagged": flagged, "false_alarm": false_alarm}

    def _one(self, p: Pair) -> DiffResult:
        ref, tgt = self._images(p)
        res = localize(ref, tgt, self.cfg, keep_map=self.maps_dir is not None)
        if self.maps_dir is not None and res.diff_map is not None:
            write_map(self.maps_dir, p.id, res.diff_map)  # before the prediction is durable (resume)
        return res

    @staticmethod
    def _answer(pid: str, res: DiffResult) -> Prediction:
        return Prediction(pid, res.box, True, res.explanation(), round(res.score, 4))

    def with_reference(self, ref: Path, image: np.ndarray | None = None) -> Callable[[Pair], Prediction]:
        """Line mode: the reference decoded once (or given decoded, ``image``) and prepared once per target
        size (its working-resolution copy and alignment image); each call then answers one target."""
        source = load_rgb(ref) if image is None else image
        prepared: dict[tuple[int, int], WorkingReference] = {}

        def answer(pair: Pair) -> Prediction:
            tgt = load_rgb(pair.tgt)
            size = tgt.shape[:2]
            if size not in prepared:
                if source.shape[:2] != size:
                    console.warn(
                        f"reference {ref.name} is {source.shape[1]}x{source.shape[0]}, targets of "
                        f"{size[1]}x{size[0]} get it resized"
                    )
                prepared[size] = working_reference(source, size[0], size[1], self.cfg)
            return self._answer(pair.id, localize(prepared[size], tgt, self.cfg))

        return answer
