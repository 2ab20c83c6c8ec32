#!/usr/bin/env bash
# Install the edgetl device runner (no TensorFlow) into a venv.
#
#   Raspberry Pi OS Bookworm 64-bit (Python 3.11):  ./install.sh            -> edgetl[litert]
#   Jetson, JetPack 6 (Python 3.10):                ./install.sh --onnx     -> edgetl[onnx]
#
# Options: --onnx (onnxruntime instead of ai-edge-litert), --venv DIR (default ~/edgetl-venv),
#          --from SPEC (what to pip install; default "edgetl[litert]" / "edgetl[onnx]", e.g. a wheel path),
#          --service BUNDLE (also install the systemd unit for BUNDLE, camera 0 by default; needs sudo).
# The venv uses --system-site-packages so Picamera2 / OpenCV installed with apt stay importable.
set -euo pipefail

EXTRA=litert
VENV="${HOME}/edgetl-venv"
SPEC=""
SERVICE_BUNDLE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --onnx) EXTRA=onnx; shift ;;
    --venv) VENV="$2"; shift 2 ;;
    --from) SPEC="$2"; shift 2 ;;
    --service) SERVICE_BUNDLE="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
SPEC="${SPEC:-edgetl[${EXTRA}]}"

PY=python3
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { echo "error: Python >= 3.10 needed (found $($PY --version 2>&1))" >&2; exit 2; }
ARCH="$(uname -m)"
[[ "$ARCH" == "aarch64" || "$ARCH" == "x86_64" ]] \
  || echo "warning: $ARCH: ai-edge-litert ships wheels for 64-bit (aarch64) only; use a 64-bit OS" >&2

if [[ -f /proc/device-tree/model ]] && grep -qi "raspberry" /proc/device-tree/model; then
  # Picamera2 comes from apt on Raspberry Pi OS (it is not installable with pip on its own).
  dpkg -s python3-picamera2 >/dev/null 2>&1 \
    || echo "note: for the Pi camera: sudo apt install -y python3-picamera2" >&2
fi

"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "$SPEC"
"$VENV/bin/edgetl" --version

if [[ -n "$SERVICE_BUNDLE" ]]; then
  HERE="$(cd "$(dirname "$0")" && pwd)"
  BUNDLE_ABS="$(cd "$SERVICE_BUNDLE" && pwd)"
  sed -e "s|@VENV@|$VENV|g" -e "s|@BUNDLE@|$BUNDLE_ABS|g" -e "s|@USER@|$(id -un)|g" \
    "$HERE/edgetl-classifier.service" | sudo tee /etc/systemd/system/edgetl-classifier.service >/dev/null
  sudo systemctl daemon-reload
  sudo systemctl enable --now edgetl-classifier.service
  echo "service started: journalctl -u edgetl-classifier -f"
fi
echo "done: $VENV/bin/edgetl run BUNDLE photo.jpg"
