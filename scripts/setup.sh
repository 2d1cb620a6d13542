#!/usr/bin/env bash
# Installs pixal3d into the current Python environment.
#   bash scripts/setup.sh          the package and its runtime dependencies
#   bash scripts/setup.sh --dev    also what the tests need (pytest, glTF validator, Blender importer)
# torch is pinned to 2.13.0; on CPU-only machines that resolves to the local CPU wheel, and an
# already-installed torch (e.g. a CUDA build) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if [ "$DEV" = 1 ]; then
  "$PY" -m pip install -q -e ".[dev]"
else
  "$PY" -m pip install -q -e .
fi
