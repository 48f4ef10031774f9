#!/usr/bin/env bash
# Opening a 200 MB GNU parallel joblog (2 000 000 lines, 1 080 lanes), beside `sort` of
# the same file in the same run (medians of $RUNS, default 5):
#  - the record alone: `poolscope view` with no display reads and checks the file, then
#    fails to open a window (target: within 2x sort, <= 300 MB);
#  - the window: `poolscope view` under Xvfb, to its first screenshot, then quit.
#   bash benches/view.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v xvfb-run >/dev/null || { echo "xvfb-run is needed (apt-get install xvfb)" >&2; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# "seconds peak-KB" of a command, whatever its exit status (no display makes view fail,
# a failed task in the joblog makes the window's exit status 1).
measure() { { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null || true; } | tail -1; }

log=$work/big.joblog
awk 'BEGIN {
  srand(1); OFS = "\t"
  print "Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval", "Signal", "Command"
  t = 1700000000
  for (i = 1; i <= 2000000; i++) {
    t += 0.001
    printf "%d\t:\t%.3f\t%9.3f\t0\t%d\t%d\t0\tprocess_input /data/inputs/file_%08d.dat --level 3\n",
      i, t, rand() * 2, int(rand() * 1000), (rand() < 0.01), i
  }
}' >"$log"
echo "joblog: $(( $(stat -c %s "$log") / 1000000 )) MB, $(( $(wc -l <"$log") - 1 )) lines"

sort_s=$(for _ in $(seq "$runs"); do measure sort "$log" | awk '{print $1}'; done | median)
load=$(for _ in $(seq "$runs"); do measure env -u DISPLAY -u WAYLAND_DISPLAY "$bin" view "$log"; done)
window=$(for _ in $(seq "$runs"); do measure xvfb-run -a "$bin" --screenshot "$work/shot.png" view "$log"; done)
load_s=$(echo "$load" | awk '{print $1}' | median)
load_kb=$(echo "$load" | awk '{print $2}' | median)
win_s=$(echo "$window" | awk '{print $1}' | median)
win_kb=$(echo "$window" | awk '{print $2}' | median)
printf 'sort: %.2f s (median of %s)\n' "$sort_s" "$runs"
printf 'record alone: %.2f s (%.1fx sort), peak %d MB (targets 2x, 300 MB)\n' \
  "$load_s" "$(echo "$load_s / $sort_s" | bc -l)" "$((load_kb / 1024))"
printf 'window to its first screenshot: %.2f s (%.1fx sort), peak %d MB\n' \
  "$win_s" "$(echo "$win_s / $sort_s" | bc -l)" "$((win_kb / 1024))"
