"""The README as test data: its fenced code blocks, the `differad ...` commands in them, and running them
(imported by test modules; pytest puts tests/ on sys.path).

A block may be marked by an HTML comment on the line right before its opening fence, e.g.
``<!-- needs: a GPU -->``: what it names cannot exist on a CPU test machine, so its commands are only parsed
against the real CLI, not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WALK_START, WALK_END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
_NEEDS = re.compile(r"^<!--\s*needs:\s*(.+?)\s*-->\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    needs: str | None  # what a `<!-- needs: ... -->` marker names
    walkthrough: bool


def blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, in document order."""
    out, lines, i, walk = [], text.splitlines(), 0, False
    while i < len(lines):
        line = lines[i]
        walk = (walk or line.strip() == WALK_START) and line.strip() != WALK_END
        if line.startswith("```"):
            start, lang = i, line[3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = _NEEDS.match(lines[i - 1].strip()) if i else None
            out.append(Block(start + 1, lang, "\n".join(lines[i + 1 : end]), marker and marker[1], walk))
            i = end
        i += 1
    return out


def commands(code: str) -> list[list[str]]:
    """The argument lists of the `differad ...` lines of a shell block (continuations joined, comments
    dropped), without the leading `differad`."""
    joined = code.replace("\\\n", " ")
    return [
        shlex.split(line, comments=True)[1:] for line in joined.splitlines() if line.startswith("differad ")
    ]


def readme_blocks() -> list[Block]:
    return blocks(README.read_text(encoding="utf-8"))


def walkthrough() -> list[list[str]]:
    """The `differad ...` commands of the README block between the walkthrough markers."""
    (block,) = [b for b in readme_blocks() if b.walkthrough]
    return commands(block.code)


def differad(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`differad ARGS` as a user runs it: a fresh process of the real console entry point, in ``cwd``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    # The tiny models' matrices are too small for threads: on a busy 2-core machine two OpenMP threads spin
    # against each other (an hf eval of 16 pairs: 13 s on one thread, 30-120 s on two). Results do not change.
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "differad_cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, f"differad {shlex.join(args)} failed:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    return proc
