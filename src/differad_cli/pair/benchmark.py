"""Benchmark recipes: one YAML that lists the datasets a benchmark is assembled from, so
``differad pair --benchmark RECIPE`` builds the whole benchmark as one manifest
(``recipes/benchmarks/ad_dualdiff.yaml`` is the paper's AD-DualDiff, Table I).

```yaml
benchmark: ad_dualdiff                      # a name, for messages
subsets: [easy_structure, common_logic]     # optional: the subset names a category may use
sources:
  - path: Real-IAD                          # relative to --data-root (default: the current folder)
    layout: realiad                         # any --layout name
    subset: common_logic                    # optional: the subset of every category below without its own
    categories:                             # the dataset's category name -> what the benchmark calls it
      woodstick: {as: Woodstic}             # `as`: the record's category (default: the dataset's name)
      end_cap: {as: End_Cap, subset: complex_structure}
```

Each record of a listed category gets the benchmark's category name (its id prefixed with it) and subset;
categories a source holds but the recipe does not list are left out. Problems with the recipe itself are bad
input naming the key; missing source folders and categories are named together (or skipped with a warning
under ``--skip-missing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.errors import BadInput
from differad_cli.pair.config import LAYOUTS

SOURCE_KEYS = ("path", "layout", "subset", "categories")
TOP_KEYS = ("benchmark", "subsets", "sources")
CATEGORY_KEYS = ("as", "subset")


@dataclass(frozen=True)
class Take:
    """One category a benchmark takes from a source: its name in the benchmark and its subset."""

    name: str
    subset: str


@dataclass
class Source:
    """One dataset folder read with one layout; ``categories`` None takes every category as it is."""

    root: Path
    layout: str
    categories: dict[str, Take] | None = None
    label: str = ""

    def take(self, category: str) -> Take | None:
        if self.categories is None:
            return Take(category, "")
        return self.categories.get(category)


def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise BadInput(f"--benchmark {path}: file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise BadInput(f"--benchmark {path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise BadInput(f"--benchmark {path}: expected a mapping with a 'sources' list")
    return doc


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _unknown(d: dict, allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(map(str, d)) - set(allowed))
    if extra:
        raise BadInput(f"{where}: unknown key(s) {', '.join(extra)} (expected: {', '.join(allowed)})")


def _categories(
    raw: Any, default_subset: str | None, subsets: set[str] | None, where: str
) -> dict[str, Take]:
    if not isinstance(raw, dict) or not raw:
        raise BadInput(f"{where}.categories: expected a mapping of the dataset's category names")
    out: dict[str, Take] = {}
    for name, spec in raw.items():
        here = f"{where}.categories.{name}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise BadInput(f"{here}: expected a mapping with 'as' and/or 'subset', got {spec!r}")
        _unknown(spec, CATEGORY_KEYS, here)
        subset = spec.get("subset", default_subset)
        if subset is None:
            raise BadInput(f"{here}: no subset (give 'subset' here or on the source)")
        subset = _text(subset, f"{here}.subset")
        if subsets is not None and subset not in subsets:
            raise BadInput(
                f"{here}: subset '{subset}' is not one of the recipe's subsets ({', '.join(subsets)})"
            )
        out[str(name)] = Take(_text(spec.get("as", str(name)), f"{here}.as"), subset)
    return out


def load_benchmark(path: Path, data_root: Path | None) -> list[Source]:
    """The recipe's sources, validated; paths resolved against ``data_root`` (default: the current folder).
    Whether the folders exist is checked by :func:`present_sources`."""
    doc = _load_yaml(path)
    _unknown(doc, TOP_KEYS, str(path))
    subsets = doc.get("subsets")
    if subsets is not None and (
        not isinstance(subsets, list) or not all(isinstance(s, str) for s in subsets)
    ):
        raise BadInput(f"{path}: 'subsets' must be a list of names")
    allowed = set(subsets) if subsets is not None else None
    raw = doc.get("sources")
    if not isinstance(raw, list) or not raw:
        raise BadInput(f"{path}: 'sources' must be a non-empty list")
    base = Path.cwd() if data_root is None else Path(data_root)
    sources: list[Source] = []
    seen: dict[str, str] = {}
    for i, s in enumerate(raw):
        where = f"{path}: sources[{i}]"
        if not isinstance(s, dict):
            raise BadInput(f"{where}: expected a mapping with 'path', 'layout' and 'categories'")
        _unknown(s, SOURCE_KEYS, where)
        rel = Path(_text(s.get("path"), f"{where}.path"))
        layout = _text(s.get("layout"), f"{where}.layout")
        if layout not in LAYOUTS:
            raise BadInput(
                f"{where}.layout: unknown layout '{layout}' (expected one of: {', '.join(LAYOUTS)})"
            )
        default_subset = None if s.get("subset") is None else _text(s["subset"], f"{where}.subset")
        cats = _categories(s.get("categories"), default_subset, allowed, where)
        for name, take in cats.items():
            if take.name in seen:
                raise BadInput(
                    f"{where}: category '{take.name}' is taken twice (also from {seen[take.name]})"
                )
            seen[take.name] = f"{rel}:{name}"
        root = rel if rel.is_absolute() else base / rel
        sources.append(Source(root, layout, cats, label=f"{rel} ({layout})"))
    return sources


def present_sources(sources: list[Source], skip_missing: bool) -> list[Source]:
    """The sources whose folder exists; missing ones are bad input naming them all, or (``skip_missing``)
    a warning each."""
    missing = [s for s in sources if not s.root.is_dir()]
    if missing and not skip_missing:
        names = "; ".join(f"{s.root} ({s.layout})" for s in missing)
        raise BadInput(
            f"{len(missing)} benchmark source folder(s) not found: {names} "
            "(download them, fix --data-root, or pass --skip-missing to build without them)"
        )
    for s in missing:
        console.warn(f"benchmark source {s.root} ({s.layout}) not found; its categories are left out")
    kept = [s for s in sources if s.root.is_dir()]
    if not kept:
        raise BadInput("no benchmark source folder found; nothing to build")
    return kept


def missing_categories(source: Source, found: list[str], skip_missing: bool) -> None:
    """Refuse (or, with ``skip_missing``, warn about) categories the recipe lists but the source lacks."""
    if source.categories is None:
        return
    lost = sorted(set(source.categories) - set(found))
    if not lost:
        return
    msg = f"{source.label}: category(ies) {', '.join(lost)} not found"
    if not skip_missing:
        raise BadInput(msg + "; pass --skip-missing to build without them")
    console.warn(msg + "; left out")
