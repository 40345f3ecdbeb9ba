"""The small core every stage stands on: the data contract and the plumbing.

``records`` (pair and prediction records, the only JSONL reader/writer), ``boxes``, ``coords`` (every
model-family coordinate conversion), ``images`` (image/mask I/O, pair loading), ``io`` (the one atomic
writer), ``overlays`` (pictures of a pair and its boxes), ``console``, ``errors``. Imports nothing above it.
"""
