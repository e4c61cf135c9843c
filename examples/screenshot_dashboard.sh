#!/usr/bin/env bash
# Screenshot of the demo's W2S dashboard (TensorBoard's custom-scalars tab) in a real TensorBoard
# server, rendered by headless Chromium (Debian package `chromium`). Usage:
#   make demo && bash examples/screenshot_dashboard.sh runs/demo docs/dashboard.png [tab] [width,height]
# (tab: custom_scalars, text, images, ...; TENSORBOARD= names another tensorboard executable)
set -euo pipefail
logdir=${1:-runs/demo}
out=${2:-docs/dashboard.png}
tab=${3:-custom_scalars}
size=${4:-1600,1300}
port=${PORT:-6123}
${TENSORBOARD:-.venv/bin/tensorboard} --logdir "$logdir" --port "$port" --host 127.0.0.1 >/tmp/tb_screenshot.log 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 1; done
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size="$size" --virtual-time-budget=20000 --screenshot="$out" \
  "http://127.0.0.1:$port/?darkMode=false#$tab" 2>/dev/null
echo "wrote $out"
