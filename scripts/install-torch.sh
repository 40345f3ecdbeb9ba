#!/usr/bin/env bash
# Install torch into the given Python only when it has none: a GPU user's own torch is never replaced.
# On a machine without an NVIDIA driver we pin the CPU build (2.13.0 lies on disk on our CPU machines);
# an unpinned install would pull a multi-GB CUDA build there.
set -euo pipefail
PY=${1:-python3}
if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch already installed: $("$PY" -c 'import torch; print(torch.__version__)') (kept)"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "NVIDIA driver found: installing the default (CUDA) torch build"
  "$PY" -m pip install -q "torch>=2.4"
else
  echo "no GPU found: installing the CPU torch build ${DIFFERAD_TORCH_VERSION:-2.13.0}"
  "$PY" -m pip install -q "torch==${DIFFERAD_TORCH_VERSION:-2.13.0}"
fi
