"""The tree is the architecture: stage packages over a core, imports flowing downward, no circles.

These checks read the source (no imports), so they fail the moment a module imports upward or a circle
appears, wherever the import sits (module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "src" / "differad_cli"

# What each part may import (besides itself). Reading order of the tree: core, protocol, models, the stages,
# then demo and cli on top.
ALLOWED = {
    "core": set(),
    "protocol": {"core"},
    "models": {"core"},
    "synth": {"core"},
    "pair": {"core"},
    "predict": {"core", "protocol", "models"},
    "eval": {"core", "predict"},
    "train": {"core", "protocol", "models", "eval", "predict"},
    "demo": {"core", "synth", "models", "train", "eval", "predict"},
    "cli": {"core", "synth", "pair", "models", "train", "eval", "predict", "demo"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """differad_cli modules that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("differad_cli"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("differad_cli"))
    return {m for m in found if m in modules}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_flow_downward() -> None:
    modules = _modules()
    upward = []
    for mod, path in modules.items():
        part = _part(mod)
        if part not in ALLOWED:
            continue
        for dep in _imports(path, modules):
            dep_part = _part(dep)
            if dep_part and dep_part != part and dep_part not in ALLOWED[part]:
                upward.append(f"{mod} -> {dep}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_backends_do_not_import_the_runner() -> None:
    modules = _modules()
    bad = [
        f"{mod} -> {dep}"
        for mod, path in modules.items()
        if mod.startswith("differad_cli.predict.backends")
        for dep in _imports(path, modules)
        if dep in ("differad_cli.predict.run", "differad_cli.predict")
    ]
    assert not bad, bad


def test_no_import_circles() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is not a circle through the package
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".") and not d.startswith(m + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_rooms_stay_small() -> None:
    big = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := p.read_text(encoding="utf-8").count("\n")) > 400
    }
    assert not big, f"modules over 400 lines: {big}"


def test_only_the_cli_imports_typer() -> None:
    users = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if "cli" not in p.relative_to(PKG).parts
        and any(
            (
                isinstance(n, (ast.Import, ast.ImportFrom))
                and any(a.name.split(".")[0] == "typer" for a in n.names)
            )
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "typer")
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    ]
    assert not users, users
