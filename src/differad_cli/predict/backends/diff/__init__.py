"""The training-free ``diff`` backend: classical golden-template inspection of a reference/target pair.

Why it exists: it makes ``predict`` useful on a fresh machine (no weights) and gives the paper's VLMs a
non-learned baseline. Steps, all on a downscaled copy (longest side ``work_size``):

1. align the reference to the target: phase correlation for the shift, then ECC (Euclidean: shift +
   rotation) refined from it; a failed or implausible fit falls back to the shift alone;
2. match each channel's mean/std of the aligned reference to the target's (illumination drift);
3. blur both, and take a *tolerant* difference: how far the target leaves the [min, max] envelope of the
   reference over a 3x3 neighbourhood, so residual sub-pixel misalignment and edges do not fire;
4. hysteresis: pixels above ``threshold`` (0-255 intensity units, after opening) seed regions that grow
   over pixels above ``threshold * low_ratio``; the largest seeded region is the anomaly when its area is
   at least ``min_area`` of the image, otherwise the pair is normal.
"""

from __future__ import annotations

from differad_cli.predict.backends.diff.backend import DiffBackend
from differad_cli.predict.backends.diff.config import DiffConfig, DiffResult
from differad_cli.predict.backends.diff.localize import WorkingReference, localize, working_reference

__all__ = ["DiffBackend", "DiffConfig", "DiffResult", "WorkingReference", "localize", "working_reference"]
