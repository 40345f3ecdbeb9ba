"""One module per dataset layout; each exposes ``EXPECTED`` (the tree it reads, for error messages) and
``read(root, split)``. A new layout is a new module here plus one entry in :data:`LAYOUT_MODULES`."""

from differad_cli.pair.layouts import folder, mvtec, triplets

LAYOUT_MODULES = {"mvtec": mvtec, "folder": folder, "triplets": triplets}
