#!/usr/bin/env bash
# Install edgetl with its training and test extras, then run the whole test suite.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[train,dev]"
# Optional pieces some tests use (browser for the HTML report, MediaPipe client): installed when possible,
# the tests that need them skip with a reason otherwise.
if [ -x scripts/install_test_extras.sh ]; then bash scripts/install_test_extras.sh || echo "note: optional test extras not installed"; fi
# Formatting and lint first (ruff, configured in pyproject.toml): a style slip fails fast.
python3 -m ruff format --check --quiet .
python3 -m ruff check --quiet .
# Two workers (pytest-xdist), whole files per worker so module fixtures are built once; then, in one
# process, the tests marked `alone` (two gRPC training processes, whose collective once stalled beside
# another worker). Exit code 5 of the second run: "$@" selected none of them.
python3 -m pytest -q -p no:cacheprovider -n "${EDGETL_TEST_WORKERS:-2}" --dist loadfile -m "not alone" "$@"
python3 -m pytest -q -p no:cacheprovider -m alone "$@" || [ $? -eq 5 ]
