"""One module per dataset layout; each exposes ``EXPECTED`` (the tree it reads, for error messages),
``matches(root)`` (for ``--layout auto``) and ``read(root, split, only=None)`` (``only``: just the categories
of those names, for a benchmark recipe). A new layout is a new module here plus one entry in
:data:`LAYOUT_MODULES`."""

from __future__ import annotations

from pathlib import Path

from differad_cli.core.errors import BadInput
from differad_cli.pair.layouts import (
    deeppcb,
    folder,
    ksdd2,
    mvtec,
    mvtec_ad2,
    mvtec_loco,
    realiad,
    triplets,
    visa,
)

# the order is the detection order of --layout auto: the most specific trees first (an MVTec LOCO or AD 2
# category also has train/ and test/ folders, and a folder-layout category can hold anything)
LAYOUT_MODULES = {
    "visa": visa,
    "realiad": realiad,
    "deeppcb": deeppcb,
    "mvtec_ad2": mvtec_ad2,
    "mvtec_loco": mvtec_loco,
    "ksdd2": ksdd2,
    "mvtec": mvtec,
    "triplets": triplets,
    "folder": folder,
}


def detect(root: Path) -> str:
    """The layout ``root`` is laid out in; BadInput (one line, every layout's tree) when none matches."""
    for name, module in LAYOUT_MODULES.items():
        if module.matches(root):
            return name
    trees = "; ".join(f"{name}: {m.EXPECTED}" for name, m in LAYOUT_MODULES.items())
    raise BadInput(f"{root} matches no known layout (--layout auto): expected one of {trees}")
