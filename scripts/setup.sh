#!/usr/bin/env bash
# Installs pixal3d into the current Python environment.
#   bash scripts/setup.sh          the package and its runtime dependencies
#   bash scripts/setup.sh --dev    also what the tests need (pytest, gradio, glTF validator, Blender importer,
#                                  Chromium + Playwright for the browser tests, usd-core for USDZ)
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

# --dev: real glTF clients for the export tests (tests/clients.py).
if [ "$DEV" = 1 ]; then
  # Khronos glTF-Validator into ./node_modules (pinned in package.json / package-lock.json)
  if command -v npm >/dev/null 2>&1; then
    npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent
  else
    echo "setup: npm not found — install Node.js ≥ 18 to run the glTF validator checks (they are skipped otherwise)" >&2
  fi
  # Blender's own glTF importer: the bpy wheel (Python 3.11 only; it pins NumPy 1.x, so it gets its
  # own virtual environment .bpy/ instead of downgrading the project's NumPy)
  if [ ! -x .bpy/bin/python ] && [ ! -x .bpy/Scripts/python.exe ]; then
    if "$PY" -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)"; then
      "$PY" -m venv .bpy
      BPY_PY=.bpy/bin/python; [ -x "$BPY_PY" ] || BPY_PY=.bpy/Scripts/python.exe
      "$BPY_PY" -m pip install -q "bpy==4.5.*" || echo "setup: could not install bpy — Blender import checks will be skipped" >&2
    else
      echo "setup: bpy 4.5 needs Python 3.11 — Blender import checks will be skipped (set PIXAL3D_BPY_PYTHON to a Python with bpy)" >&2
    fi
  fi
fi

# --dev: the app's browser tests drive Debian's Chromium with Playwright from PyPI (no browser download), and USDZ
# export uses Pixar's usd-core; each is optional — its tests skip with the reason when it could not be installed.
if [ "$DEV" = 1 ]; then
  CHROMIUM=${PIXAL3D_CHROMIUM:-/usr/bin/chromium}
  if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; } ||
        echo "setup: could not install chromium with apt-get — the browser tests will be skipped" >&2
    else
      echo "setup: no Chromium at $CHROMIUM and apt-get needs root — the browser tests will be skipped" \
           "(install chromium yourself or set PIXAL3D_CHROMIUM)" >&2
    fi
  fi
  "$PY" -m pip install -q "playwright>=1.40" ||
    echo "setup: could not install playwright — the browser tests will be skipped" >&2
  "$PY" -m pip install -q "usd-core>=24.0" ||
    echo "setup: could not install usd-core — USDZ export is unavailable and its tests are skipped" >&2
fi
