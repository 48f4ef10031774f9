#!/usr/bin/env bash
# The window against headless on the same task file, measured in this run: the pool
# must run as fast with the timeline, the table and the console drawing it.
#  - 2000 x `sleep 0.01`, pool of 2
#  - 20 000 x `echo N`, pool of 4
# The window runs under Xvfb (--autostart --exit-when-done).
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
# The window's own start-up (an empty run that quits at once) is not pool time.
for case in sleeps echoes; do
  headless=$(time_cmd "$bin" run "$work/$case.toml")
  window=$(time_cmd env XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
    xvfb-run -a -s '-screen 0 1280x800x24' "$bin" "$work/$case.toml" --autostart --exit-when-done)
  printf '%-8s headless %7.2f s   window %7.2f s   window/headless %.2f\n' \
    "$case" "$headless" "$window" "$(echo "$window / $headless" | bc -l)"
done
echo "targets: sleeps <= 1.05, echoes <= 1.10 (the window's start-up is included)"
