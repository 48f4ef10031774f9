#!/usr/bin/env bash
# CPU used by the window while nothing runs (should be ~0: no repaint loop when idle).
#   bash benches/idle_cpu.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --quiet
export XDG_DATA_HOME=$(mktemp -d)
xvfb-run -a -s '-screen 0 1280x800x24' target/release/poolscope assets/presets/pool4.toml &
runner=$!
for _ in $(seq 100); do pid=$(pgrep -x poolscope || true); [ -n "$pid" ] && break; sleep 0.1; done
sleep 3 # let it open and settle
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks); sleep "$secs"; t1=$(ticks)
hz=$(getconf CLK_TCK)
echo "idle window: $(( (t1 - t0) * 1000 / hz )) ms of CPU in ${secs} s ($(echo "scale=2; ($t1 - $t0) * 100 / $hz / $secs" | bc) % of one core)"
kill -TERM "$pid"; wait "$runner" || true
