"""Line mode: a golden reference, a stream of targets, one JSONL answer per target as soon as it is ready.

Each reference is checked and decoded once before anything starts (:mod:`.refmap`: ``--ref``, or one per
category with ``--ref-map``) and prepared once per backend (``with_reference``: ``diff`` keeps its
working-resolution copy and alignment image per target size, ``hf`` the key/value cache of the prompt prefix,
``openai`` the encoded image, sent first and byte-identical in every request). Targets come from the command
line, a folder (recursive), a glob, stdin (``-``, one path per line) or a watched folder (``--watch``: each
new, completely written image in it or its subfolders, in arrival order, until interrupted). An unreadable
target, or one whose category has no reference, is skipped with one line; the stream never stops for it.
"""

from __future__ import annotations

import glob
import itertools
import json
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from differad_cli.core import console
from differad_cli.core.boxes import ZERO_BOX
from differad_cli.core.errors import BadInput, ImageError
from differad_cli.core.images import image_size, list_images, load_rgb
from differad_cli.core.io import IMAGE_SUFFIXES
from differad_cli.core.records import Pair, Prediction
from differad_cli.predict.backends import make_backend
from differad_cli.predict.config import LineOptions, PredictOptions, resolve_backend
from differad_cli.predict.refmap import References

WATCH_POLL_S = 0.2
WATCH_TRIES = 25  # polls a file may stay unreadable (still being written) before it is skipped


def targets_from(args: list[Path], source: str | None) -> Iterator[Path]:
    """Command-line targets, then those of ``source`` (folder, glob or ``-`` for stdin)."""
    yield from args
    if source is None:
        return
    if source == "-":
        for line in sys.stdin:
            if line.strip():
                yield Path(line.strip())
    elif Path(source).is_dir():
        yield from list_images(source)
    else:
        matches = sorted(glob.glob(source, recursive=True))
        if not matches:
            raise BadInput(f"--targets {source}: no such folder, and the glob matches nothing")
        yield from (Path(m) for m in matches if Path(m).suffix.lower() in IMAGE_SUFFIXES)


def _stat(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()
    except FileNotFoundError:  # removed or renamed since the listing: not ours to answer
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _images_under(folder: Path) -> list[Path]:
    """Image names in ``folder`` and its subfolders (hidden ones skipped: temporary names of writers)."""
    return [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(x.startswith(".") for x in p.relative_to(folder).parts)
    ]


def watch_folder(folder: Path, poll_s: float = WATCH_POLL_S) -> Iterator[Path]:
    """New image files of ``folder`` and its subfolders in arrival order, each once it is completely
    written: its size and modification time unchanged over one poll and the image decodes; one that stays
    unreadable is skipped.

    The folder is checked and its present files noted now, when the command starts (not when the stream is
    first read, after the model has loaded): a file that arrives while the model loads is answered."""
    if not folder.is_dir():
        raise BadInput(f"--watch {folder}: not a folder")
    present = set(_images_under(folder))
    console.info(f"watching {folder} ({len(present)} image(s) already there are not answered; Ctrl-C ends)")
    return _watch(folder, present, poll_s)


def _watch(folder: Path, seen: set[Path], poll_s: float) -> Iterator[Path]:
    pending: dict[Path, tuple[tuple[int, int], int]] = {}
    while True:
        listed = [p for p in _images_under(folder) if p not in seen]
        stats = {p: sig for p in listed if (sig := _stat(p)) is not None}
        for p in sorted(stats, key=lambda p: (stats[p][1], p.name)):
            sig = stats[p]
            before, tries = pending.get(p, (None, 0))
            if before != sig or sig[0] == 0:
                pending[p] = (sig, tries)
                continue
            try:
                load_rgb(p)
            except ImageError as e:
                if tries + 1 >= WATCH_TRIES:
                    console.warn(f"skipping {p.name}: still unreadable ({e})")
                    seen.add(p)
                    pending.pop(p, None)
                else:
                    pending[p] = (sig, tries + 1)
                continue
            seen.add(p)
            pending.pop(p, None)
            yield p
        time.sleep(poll_s)


def _answerer(backend: Any, ref: Path, image: Any) -> Callable[[Pair], Prediction]:
    prepare = getattr(backend, "with_reference", None)
    if prepare is not None:
        return prepare(ref, image)
    return lambda pair: backend.predict([pair])[0]


def run_line(
    refs: References, targets: Iterable[Path], opts: PredictOptions, *, emit: Callable[[dict[str, Any]], None]
) -> tuple[int, int]:
    """Answer every target against its reference; ``emit`` gets each --json object as soon as it is ready.
    Returns (answered, skipped)."""
    from differad_cli.predict.run import human_line, result_dict

    name = resolve_backend(opts)
    backend = make_backend(opts, reference=refs.default)
    prepared = {key: _answerer(backend, path, image) for key, (path, image) in refs.images.items()}
    answerers = {path: prepared[path.resolve()] for path in refs.by_category.values()}
    if refs.default is not None:
        answerers[refs.default] = prepared[refs.default.resolve()]
    done = skipped = 0
    for tgt in targets:
        ref = refs.pick(Path(tgt))
        if ref is None:
            console.warn(f"skipping {tgt}: {refs.missing(Path(tgt))}")
            skipped += 1
            continue
        try:
            width, height = image_size(tgt)
        except (ImageError, BadInput) as e:
            console.warn(f"skipping {tgt}: {e}")
            skipped += 1
            continue
        pair = Pair(id=str(tgt), ref=ref, tgt=Path(tgt), box=ZERO_BOX, label=0, width=width, height=height)
        start = time.perf_counter()
        try:
            pred = answerers[ref](pair)
        except ImageError as e:
            console.warn(f"skipping {tgt}: {e}")
            skipped += 1
            continue
        result = result_dict(ref, tgt, name, pred, (time.perf_counter() - start) * 1000.0)
        emit(result)
        console.info(f"{Path(tgt).name}: {human_line(result)}")
        done += 1
    return done, skipped


def print_json_line(result: dict[str, Any]) -> None:
    """One JSONL answer on stdout, flushed at once (a pipe reader sees it now, not at exit)."""
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def run_line_mode(opts: PredictOptions, line: LineOptions, targets: list[Path], *, batch_flags: bool) -> None:
    """`predict --ref GOLDEN` / `--ref-map ...` with targets from the arguments, ``--targets`` and/or
    ``--watch``: JSONL answers on stdout, a summary line on stderr."""
    if line.ref is None and not line.ref_map:
        raise BadInput(
            "--targets and --watch need --ref GOLDEN or --ref-map CATEGORY=PATH (each target's reference)"
        )
    flag = "--ref" if line.ref is not None else "--ref-map"
    if batch_flags:
        raise BadInput(
            f"--pairs, --out and --overlay do not apply to line mode ({flag}): answers go to stdout"
        )
    if opts.num_processes > 1:
        raise BadInput("--num-processes applies to batch mode (--pairs); line mode answers in arrival order")
    if not targets and line.targets is None and line.watch is None:
        raise BadInput(f"{flag} needs targets: TARGET... arguments, --targets DIR|GLOB|-, or --watch DIR")
    refs = References.load(line.ref, line.ref_map)  # every reference decoded once, before anything starts
    watched = watch_folder(line.watch) if line.watch is not None else iter(())  # snapshot the folder now
    stream = itertools.chain(targets_from(targets, line.targets), watched)
    done, skipped = run_line(refs, stream, opts, emit=print_json_line)
    console.info(f"line mode: {done} target(s) answered, {skipped} skipped")
