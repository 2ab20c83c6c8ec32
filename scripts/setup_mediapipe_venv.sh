#!/usr/bin/env bash
# Create a separate virtual environment with MediaPipe for the MediaPipe metadata writer and tests.
#
# Why separate: mediapipe==0.10.21 (the last release whose metadata writer imports) pins
# numpy<2 and protobuf<5, which conflicts with the training env (numpy 2, TF 2.21, protobuf 6+).
# edgetl calls this interpreter as a subprocess when EDGETL_MEDIAPIPE_PYTHON points at it.
#
# Usage: scripts/setup_mediapipe_venv.sh [VENV_DIR]   (default: ~/.cache/edgetl/mediapipe-venv, which
#        edgetl finds by itself; for any other folder: export EDGETL_MEDIAPIPE_PYTHON=VENV_DIR/bin/python)
set -euo pipefail

VENV="${1:-$HOME/.cache/edgetl/mediapipe-venv}"
PYTHON="${PYTHON:-python3}"
MEDIAPIPE_SPEC="${MEDIAPIPE_SPEC:-mediapipe==0.10.21}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
    "import mediapipe.tasks.python.metadata.metadata_writers.image_classifier" 2>/dev/null; then
  echo "mediapipe venv ready: $VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$MEDIAPIPE_SPEC"
"$VENV/bin/python" -c "import mediapipe, numpy; print('mediapipe', mediapipe.__version__, 'numpy', numpy.__version__)"
echo "mediapipe venv ready: $VENV"
