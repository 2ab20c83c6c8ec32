#!/usr/bin/env bash
# Install the edgetl device runner (no TensorFlow) into a venv, from this checkout of edgetl.
#
#   Raspberry Pi OS Bookworm 64-bit (3.11), Jetson JetPack 6 (3.10):  device/install.sh         -> edgetl[litert]
#   ONNX bundles / onnxruntime instead of ai-edge-litert:             device/install.sh --onnx  -> edgetl[onnx]
#
# Options: --onnx (onnxruntime instead of ai-edge-litert), --venv DIR (default ~/edgetl-venv),
#          --from SPEC (what to pip install; default this checkout, e.g. "edgetl-0.1.0-py3-none-any.whl[litert]"),
#          --service BUNDLE (also install and start the systemd unit for BUNDLE, camera 0; needs sudo),
#          --print-unit BUNDLE (print that unit, filled in for --venv, and exit: nothing installed).
# PYTHON=python3.11 picks the interpreter (default python3). The venv uses --system-site-packages
# so Picamera2 / OpenCV installed with apt stay importable, and keeps the system NumPy's major.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PYTHON:-python3}"
EXTRA=litert
VENV="${HOME}/edgetl-venv"
SPEC=""
SERVICE_BUNDLE=""
PRINT_UNIT=""
die() { echo "error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --onnx) EXTRA=onnx; shift ;;
    --venv|--from|--service|--print-unit) [[ $# -ge 2 ]] || die "$1 needs a value (see --help)" ;;&
    --venv) VENV="$2"; shift 2 ;;
    --from) SPEC="$2"; shift 2 ;;
    --service) SERVICE_BUNDLE="$2"; shift 2 ;;
    --print-unit) PRINT_UNIT="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

need_bundle() { [[ -f "$1/manifest.json" ]] || die "$1 is not an edgetl bundle (no manifest.json)"; }

# The unit with @VENV@, @BUNDLE@ and @USER@ filled in; $1 = the bundle folder.
unit() {
  need_bundle "$1"
  [[ "$(realpath "$1")$(realpath -m "$VENV")" != *[[:space:]]* ]] || die "the unit cannot hold paths with spaces: move the bundle / venv"
  sed -e "s|@VENV@|$(realpath -m "$VENV")|g" -e "s|@BUNDLE@|$(realpath "$1")|g" -e "s|@USER@|$(id -un)|g" "$HERE/edgetl-classifier.service"
}

if [[ -n "$PRINT_UNIT" ]]; then
  unit "$PRINT_UNIT"
  exit 0
fi
if [[ -z "$SPEC" ]]; then
  [[ -f "$REPO/pyproject.toml" ]] || die "no edgetl checkout around $HERE; pass --from edgetl-<version>-py3-none-any.whl[$EXTRA]"
  SPEC="$REPO[$EXTRA]"
fi
[[ -z "$SERVICE_BUNDLE" ]] || need_bundle "$SERVICE_BUNDLE"  # before the minutes of pip install

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python >= 3.10 needed (found $("$PY" --version 2>&1))"
ARCH="$(uname -m)"
[[ "$ARCH" == "aarch64" || "$ARCH" == "x86_64" ]] \
  || echo "warning: $ARCH: ai-edge-litert ships wheels for 64-bit (aarch64) only; use a 64-bit OS" >&2

if [[ -f /proc/device-tree/model ]] && grep -qi "raspberry" /proc/device-tree/model; then
  # Picamera2 comes from apt on Raspberry Pi OS (it is not installable with pip on its own).
  dpkg -s python3-picamera2 >/dev/null 2>&1 \
    || echo "note: for the Pi camera: sudo apt install -y python3-picamera2" >&2
fi

"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Keep the NumPy major the system's packages are built for (Bookworm: 1.24; apt's Picamera2 and
# python3-opencv use it). Unpinned, pip would put NumPy 2 in the venv for ai-edge-litert's
# ml_dtypes, and Picamera2 could no longer be imported.
PIN=()
SYSTEM_NUMPY="$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
if [[ -n "$SYSTEM_NUMPY" ]]; then
  PIN=("numpy==${SYSTEM_NUMPY%%.*}.*")
  echo "note: keeping NumPy ${SYSTEM_NUMPY%%.*}.x, which the system's Python packages are built for (found $SYSTEM_NUMPY)" >&2
fi
"$VENV/bin/python" -m pip install "$SPEC" ${PIN[@]+"${PIN[@]}"}
"$VENV/bin/edgetl" --version

if [[ -n "$SERVICE_BUNDLE" ]]; then
  unit "$SERVICE_BUNDLE" | sudo tee /etc/systemd/system/edgetl-classifier.service >/dev/null
  sudo systemctl daemon-reload
  sudo systemctl enable --now edgetl-classifier.service
  echo "service started: journalctl -u edgetl-classifier -f"
fi
echo "done: $VENV/bin/edgetl run BUNDLE photo.jpg"
