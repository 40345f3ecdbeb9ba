"""`differad pair`: pair records from public datasets as they unpack (top-k reference retrieval)."""

from __future__ import annotations

from differad_cli.cli.options import Command, config_options
from differad_cli.pair.config import PairConfig

HELP = """Build pair records (reference, target, box) from a real dataset.

Each target gets the --k most similar normal images of its category as `refs` (best first, the best
one is `ref`). The box is the tight box of the mask's largest connected component; the record keeps
the component count (`n_components`) and the cosine similarity of the best reference
(`ref_similarity`). Normal targets get the zero box. Paths under the output file's folder are
written relative to it (others stay absolute).

Layouts (ROOT is the dataset's own top folder as it unpacks; `auto` detects it and says which):


  mvtec      <cat>/train/good/ pool; <cat>/test/<defect>/ targets; ground_truth/<defect>/<stem>_mask.png.

  visa       VisA_20220922/: split and labels from split_csv/1cls.csv; Data/Masks/Anomaly masks.

  mvtec_loco train/good + validation/good pool; test/<type>/ targets; ground_truth/<type>/<stem>/*.png.

  mvtec_ad2  train/good + validation/good pool; test_public/{good,bad} targets (test_private unused).

  realiad    Real-IAD/: realiad_jsons/realiad_jsons/<cat>.json splits; references of the same view.

  ksdd2      KolektorSDD2/: {train,test}/<id>.png + <id>_GT.png (an empty GT is a normal image).

  deeppcb    the folder holding PCBData/: the _temp.jpg template is the reference, boxes as annotated.

  folder     <cat>/normal/ pool; <cat>/test/ targets (sub-folders = subset); <cat>/mask/ masks.

  triplets   ROOT/ref/, ROOT/tgt/, ROOT/mask/ with matching names: ready-made pairs. No retrieval.

--multi decides the box of a target with several defect regions: largest (default), union or drop.
An anomalous target keeps its defect class (its folder under test/, or the dataset's label) as
`defect_type`; eval breaks results down by it.

--benchmark RECIPE builds one manifest from several datasets instead of --data: the YAML lists
sources (path relative to --data-root, layout), the categories to take, their name in the benchmark
and their subset. recipes/benchmarks/ad_dualdiff.yaml is the paper's AD-DualDiff (Table I); its
comments say which sources need converting to the folder layout first, and how. A missing source
folder or category is an error naming it; --skip-missing leaves it out with a warning.
--strict turns what is otherwise skipped with a count into exit 2 (see the option).
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
            "differad pair --data VisA_20220922/ --layout auto --k 4 --out visa.jsonl",
            "differad pair --benchmark recipes/benchmarks/ad_dualdiff.yaml --data-root ~/datasets "
            "--out ad_dualdiff.jsonl",
        ),
        help=HELP,
    ),
)
