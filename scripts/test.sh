#!/usr/bin/env bash
# Set up from scratch (scripts/setup.sh), then lint, type-check and run the whole test suite on the current
# transformers line (5.x, in .venv), and run the suite again on the previous line (4.57, with optimum's
# anchor rows, in .venv-transformers4). Pytest arguments pass through to both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDGEBERT_VENV:-.venv}"
# The serving page (edgebert serve) is tested in a real headless browser: Chromium and its driver from Debian's packages.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash scripts/setup.sh
# shellcheck disable=SC1091
. "$VENV/bin/activate"
ruff check edgebert runtime export quantize benchmarks serve batch tests
# Type-check the installed package (the package-dir mapping exists only there), from outside the repo.
ROOT="$(pwd)"
(cd "${TMPDIR:-/tmp}" && mypy --config-file "$ROOT/pyproject.toml" -p edgebert)
pytest tests benchmarks/suites/test_smoke.py benchmarks/suites/test_retrieval_smoke.py -p no:cacheprovider "$@"
deactivate
echo "--- the same suite on the transformers 4 line ---"
EDGEBERT_TRANSFORMERS=4 EDGEBERT_VENV="$VENV-transformers4" bash scripts/setup.sh
# shellcheck disable=SC1091
. "$VENV-transformers4/bin/activate"
pytest tests benchmarks/suites/test_smoke.py benchmarks/suites/test_retrieval_smoke.py -p no:cacheprovider "$@"
