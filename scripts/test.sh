#!/usr/bin/env bash
# Set up from scratch (scripts/setup.sh), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${EDGEBERT_VENV:-.venv}/bin/activate"
ruff check edgebert runtime export quantize benchmarks tests
# Type-check the installed package (the package-dir mapping exists only there), from outside the repo.
ROOT="$(pwd)"
(cd "${TMPDIR:-/tmp}" && mypy --config-file "$ROOT/pyproject.toml" -p edgebert)
pytest tests benchmarks/suites/test_smoke.py -p no:cacheprovider "$@"
