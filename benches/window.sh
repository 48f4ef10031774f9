#!/usr/bin/env bash
# The window against headless on the same task file, measured in this run: the pool
# must run as fast with the timeline, the table and the console drawing it.
#  - 2000 x `sleep 0.01`, pool of 2
#  - 20 000 x `echo N`, pool of 4
#  - 1 000 000 `noop` on 2 workers (a task file's template): time and peak RSS
#    (target: the window in 400 MB)
# The window runs under Xvfb (--autostart --exit-when-done). CASES picks some of
# "sleeps echoes million" (default all).
#   bash benches/window.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v xvfb-run >/dev/null || { echo "xvfb-run is needed (apt-get install xvfb)" >&2; exit 1; }

cat >"$work/sleeps.toml" <<'TOML'
[pool]
size = 2
[[task]]
command = "sleep 0.01 # task {}"
range = [0, 2000]
TOML
cat >"$work/million.toml" <<'TOML'
[pool]
size = 2
mode = "workers"
[[task]]
builtin = "noop"
range = [0, 1000000]
TOML
cat >"$work/echoes.toml" <<'TOML'
[pool]
size = 4
[[task]]
command = "echo {}"
range = [0, 20000]
TOML

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() {
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
# Wall seconds and peak KB of a command: "secs kb", medians of $runs.
time_rss() {
  for _ in $(seq "$runs"); do
    rm -rf "$work/runs"
    /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1
  done >"$work/m"
  echo "$(awk '{print $1}' "$work/m" | median) $(awk '{print $2}' "$work/m" | median)"
}
export POOLSCOPE_RUN_DIR="$work/runs"
cases=${CASES:-sleeps echoes million}
for case in $cases; do
  [ "$case" = million ] || continue
  read -r hs hkb < <(time_rss "$bin" run "$work/million.toml")
  read -r ws wkb < <(time_rss env XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
    xvfb-run -a -s '-screen 0 1600x900x24' "$bin" "$work/million.toml" --autostart --exit-when-done)
  printf '1 000 000 noop on 2 workers: headless %.2f s, %d MB; window %.2f s, %d MB (target 400 MB)\n' \
    "$hs" "$((hkb / 1024))" "$ws" "$((wkb / 1024))"
done
# The window's own start-up (an empty run that quits at once) is not pool time.
for case in $cases; do
  [ "$case" = million ] && continue
  headless=$(time_cmd "$bin" run "$work/$case.toml")
  window=$(time_cmd env XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
    xvfb-run -a -s '-screen 0 1280x800x24' "$bin" "$work/$case.toml" --autostart --exit-when-done)
  printf '%-8s headless %7.2f s   window %7.2f s   window/headless %.2f\n' \
    "$case" "$headless" "$window" "$(echo "$window / $headless" | bc -l)"
done
echo "targets: sleeps <= 1.05, echoes <= 1.10 (the window's start-up is included)"
