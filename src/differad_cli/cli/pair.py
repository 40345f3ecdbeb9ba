"""`differad pair`: pair records from MVTec-style, folder or triplet datasets (top-k reference retrieval)."""

from __future__ import annotations

from differad_cli.cli.options import Command, config_options
from differad_cli.pair.config import PairConfig

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


@config_options(PairConfig)
def pair_cmd(cfg: PairConfig) -> None:
    from differad_cli.pair import run_pair

    run_pair(cfg)


COMMANDS = (
    Command(
        "pair",
        pair_cmd,
        examples=(
            "differad pair --data mvtec_ad/ --layout mvtec --out pairs/mvtec_test.jsonl",
            "differad pair --data mvtec_ad/bottle --layout mvtec --split train --k 4 --out train_pairs.jsonl",
            "differad pair --data visa/ --layout folder --embedder clip --clip-model clip/ --out p.jsonl",
        ),
        help=HELP,
    ),
)
