#!/usr/bin/env bash
# Screenshot a report page with headless Chromium: scripts/report_screenshot.sh REPORT.html OUT.png [W,H]
# (docs/report.png is made this way from the sample bundle in tests/report_fixtures.py.)
set -euo pipefail
html="$(realpath "$1")"; out="$(realpath -m "$2")"; size="${3:-1100,2000}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$size" --screenshot="$out" "file://$html" 2>/dev/null
echo "wrote $out"
