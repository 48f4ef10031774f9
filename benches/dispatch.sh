#!/usr/bin/env bash
# Dispatch speed: 5000 `/bin/true` command lines, pool of 8, each run through `sh -c` by
# every tool, measured in the same run. Prints wall times (median of N runs) and ratios.
#   bash benches/dispatch.sh [TASKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-5000}
runs=${2:-5}
jobs=8
cargo build --release --quiet
bin=target/release/poolscope
input=$(mktemp)
trap 'rm -f "$input"' EXIT
for _ in $(seq "$tasks"); do echo /bin/true; done >"$input"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # runs "$@" $runs times with $input on stdin, prints the median seconds
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" <"$input" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}

ps=$(time_cmd "$bin" run -j "$jobs")
xa=$(time_cmd xargs -P "$jobs" -n 1 -d '\n' sh -c)
# xargs at its raw spawn speed: runs `/bin/true LINE` per line, no shell at all.
xd=$(time_cmd xargs -P "$jobs" -n 1 -d '\n' /bin/true)
printf '%-28s %8.3f s  %7.0f tasks/s\n' "poolscope run -j $jobs" "$ps" "$(echo "$tasks / $ps" | bc -l)"
printf '%-28s %8.3f s  %7.0f tasks/s\n' "xargs -P $jobs -n 1" "$xa" "$(echo "$tasks / $xa" | bc -l)"
printf '%-28s %8.3f s  %7.0f tasks/s\n' "xargs -P $jobs -n 1 /bin/true" "$xd" "$(echo "$tasks / $xd" | bc -l)"
printf 'ratio poolscope/xargs: %.2f (target <= 1.0); against xargs with no shell: %.2f\n' \
  "$(echo "$ps / $xa" | bc -l)" "$(echo "$ps / $xd" | bc -l)"
if command -v parallel >/dev/null; then
  gp=$(time_cmd parallel -j "$jobs")
  printf '%-28s %8.3f s  %7.0f tasks/s\n' "parallel -j $jobs" "$gp" "$(echo "$tasks / $gp" | bc -l)"
  printf 'ratio parallel/poolscope: %.2f (target >= 5.0)\n' "$(echo "$gp / $ps" | bc -l)"
else
  echo "GNU parallel not installed (apt-get install parallel): skipped"
fi
