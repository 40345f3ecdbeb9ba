"""`differad pair`: pair records from MVTec-style, folder or triplet datasets (top-k reference retrieval)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from differad_cli.cli._common import Quiet, Verbose, apply_verbosity, example

HELP = """Build pair records (reference, target, box) from a real dataset.

Each target gets the --k most similar normal images of its category as `refs` (best first, the best
one is `ref`). The box is the tight box of the mask's largest connected component; the record keeps
the component count (`n_components`) and the cosine similarity of the best reference
(`ref_similarity`). Normal targets get the zero box. Paths under the output file's folder are
written relative to it (others stay absolute).

Layouts (ROOT may be one category folder or a folder holding several categories):


  mvtec    <cat>/train/good/  normal pool; <cat>/test/<defect>/ targets (test/good = normal);
           <cat>/ground_truth/<defect>/<stem>_mask.png masks.  (MVTec AD; arrange VisA or
           AD-DualDiff the same way, or use `folder`.)


  folder   <cat>/normal/ normal pool; <cat>/test/ targets, flat or in sub-folders (the sub-folder
           name becomes the record's subset); <cat>/mask/ masks mirroring test/ (same relative
           path and stem, optional `_mask` suffix, any image format). A target without a mask is
           normal. VisA: link Data/Images/Normal as normal/, Data/Images/Anomaly as test/ and
           Data/Masks/Anomaly as mask/.


  triplets ROOT/ref/, ROOT/tgt/, ROOT/mask/ with matching names: ready-made pairs (COCO-Inpainted
           style); a missing mask means a normal pair. No retrieval.

--split train pairs normal images with each other (training pairs); an image is never its own
reference. Embeddings are cached next to the output (.differad-embed-*.npz, keyed by path, mtime
and size), so re-runs only embed new or changed images."""


def register(app: typer.Typer) -> None:
    @app.command(
        "pair",
        help=HELP,
        epilog=example(
            "differad pair --data mvtec_ad/ --layout mvtec --out pairs/mvtec_test.jsonl",
            "differad pair --data mvtec_ad/bottle --layout mvtec --split train --k 4 --out train_pairs.jsonl",
            "differad pair --data visa/ --layout folder --embedder clip --clip-model clip/ --out p.jsonl",
        ),
    )
    def pair_cmd(
        data: Annotated[
            Path, typer.Option("--data", help="Dataset root (a category folder or a folder of them).")
        ],
        out: Annotated[Path, typer.Option("--out", help="Output pairs.jsonl (written atomically).")],
        layout: Annotated[
            str, typer.Option("--layout", help="mvtec | folder | triplets (see above).")
        ] = "mvtec",
        split: Annotated[
            str, typer.Option("--split", help="test: test images; train: normal pairs.")
        ] = "test",
        k: Annotated[int, typer.Option("--k", help="References kept per target (the paper: 8).")] = 8,
        embedder: Annotated[
            str, typer.Option("--embedder", help="pixel (weight-free, default) | clip (needs --clip-model).")
        ] = "pixel",
        clip_model: Annotated[
            Path | None,
            typer.Option("--clip-model", help="Local CLIP folder (CLIPModel); nothing is downloaded."),
        ] = None,
        no_cache: Annotated[
            bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")
        ] = False,
        quiet: Quiet = False,
        verbose: Verbose = False,
    ) -> None:
        apply_verbosity(quiet, verbose)
        from differad_cli.pair.build import PairConfig, run_pair

        run_pair(
            PairConfig(
                data=data, out=out, layout=layout, split=split, k=k, embedder=embedder,
                clip_model=clip_model, cache=not no_cache,
            )
        )  # fmt: skip
