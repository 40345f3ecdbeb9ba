"""The MVTec LOCO AD layout (``mvtec_loco_anomaly_detection/``): ``<cat>/train/good/`` and
``<cat>/validation/good/`` normal pool, ``<cat>/test/{good,logical_anomalies,structural_anomalies}/``
targets, and one folder of masks per defective image, ``<cat>/ground_truth/<type>/<stem>/000.png``, …

An image may have several mask files (one per annotated defect, each drawn with its defect type's own grey
level, not 255); they are unioned, and any non-zero pixel is anomalous."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from differad_cli.pair.layouts.base import Category, Target, category_dirs, images_in, warn_list

EXPECTED = (
    "<category>/train/good/, <category>/validation/good/, <category>/test/{good,logical_anomalies,"
    "structural_anomalies}/ and <category>/ground_truth/<type>/<stem>/000.png "
    "(ROOT = mvtec_loco_anomaly_detection/ or one category folder)"
)
MARKERS = (("train", "test", "validation"), ("test/logical_anomalies",), ("test/structural_anomalies",))


def matches(root: Path) -> bool:
    return bool(category_dirs(root, MARKERS[1:]))


def read(root: Path, split: str, only: Collection[str] | None = None) -> list[Category]:
    """The categories under ``root`` (``only``: just those names) for ``split``."""
    cats = []
    for d in category_dirs(root, MARKERS, only):
        pool = images_in(d / "train" / "good") + images_in(d / "validation" / "good")
        if split == "train":
            cats.append(Category(d.name, pool, [Target(p, "good", None, False) for p in pool], self_ref=True))
            continue
        targets: list[Target] = []
        no_mask: list[str] = []
        test = d / "test"
        for kind in sorted(x for x in test.iterdir() if x.is_dir()) if test.is_dir() else []:
            for p in images_in(kind):
                if kind.name == "good":
                    targets.append(Target(p, "good", None, False))
                    continue
                masks = images_in(d / "ground_truth" / kind.name / p.stem)
                if not masks:
                    no_mask.append(f"{d.name}/{p.relative_to(d)}")
                    continue
                targets.append(
                    Target(p, kind.name, masks[0], True, more_masks=tuple(masks[1:]), nonzero=True)
                )
        warn_list(f"defect image(s) without a mask folder skipped in {d.name}", no_mask)
        cats.append(Category(d.name, pool, targets))
    return cats
