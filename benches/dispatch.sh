#!/usr/bin/env bash
# Dispatch speed against its peers, all measured in this run (medians of RUNS):
#  - TASKS x `/bin/true` at -j 2 and -j 8 through the C posix_spawn loop
#    (../shared/bench/spawnpool.c, the physical limit), `poolscope run`, `xargs -P` (no
#    shell), GNU parallel (if installed) and Python multiprocessing.Pool + subprocess.run;
#  - per-task latency at P=1 on 200 x `sleep 0.01` (loop, xargs, poolscope).
# Prints wall times and the ratios the targets are stated in.
#   bash benches/dispatch.sh [TASKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-3000}
runs=${2:-5}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
# The runs' journals go to the scratch folder, not the user's data directory.
export POOLSCOPE_RUN_DIR="$work/runs"
trap 'rm -rf "$work"' EXIT

loop_src=../shared/bench/spawnpool.c
[ -f "$loop_src" ] || { echo "missing $loop_src" >&2; exit 1; }
gcc -O2 -o "$work/spawnpool" "$loop_src"
cat >"$work/pool.py" <<'EOF'
import subprocess, sys
from multiprocessing import Pool

def run(line):
    return subprocess.run(line.split()).returncode

if __name__ == "__main__":
    lines = [l.strip() for l in sys.stdin if l.strip()]
    with Pool(int(sys.argv[1])) as pool:
        pool.map(run, lines, chunksize=1)
EOF

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# time_cmd INPUT CMD...: median wall seconds of CMD with INPUT on stdin, output discarded.
time_cmd() {
  local input=$1; shift
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" <"$input" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
ratio() { echo "$1 / $2" | bc -l; }
# Each section starts on a settled disk: the runs before it leave their journals'
# writeback behind, and a run's own sync (poolscope's journal is made durable) would
# otherwise wait for theirs (a one-task run measured 7.5 ms right after the 3000-task
# sections, 5.5 ms after a sync).
settle() { sync; }
row() { printf '  %-34s %7.3f s  %6.0f tasks/s\n' "$1" "$2" "$(ratio "$3" "$2")"; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$tasks"); do echo /bin/true; done >"$work/true.txt"
have_parallel=$(command -v parallel >/dev/null && echo yes || echo no)
for jobs in 2 8; do
  settle
  echo "== $tasks x /bin/true, pool of $jobs (median of $runs)"
  lp=$(time_cmd /dev/null "$work/spawnpool" "$jobs" "$tasks" /bin/true)
  lc=$(time_cmd /dev/null "$work/spawnpool" -c "$jobs" "$tasks" /bin/true)
  ps=$(time_cmd "$work/true.txt" "$bin" run -j "$jobs")
  pn=$(time_cmd "$work/true.txt" "$bin" run -j "$jobs" --no-journal)
  xa=$(time_cmd "$work/true.txt" xargs -P "$jobs" -n 1 -d '\n' /bin/true)
  py=$(time_cmd "$work/true.txt" python3 "$work/pool.py" "$jobs")
  row "C posix_spawn loop" "$lp" "$tasks"
  row "C loop capturing stdout (-c)" "$lc" "$tasks"
  row "poolscope run -j $jobs" "$ps" "$tasks"
  row "poolscope run -j $jobs --no-journal" "$pn" "$tasks"
  row "xargs -P $jobs /bin/true" "$xa" "$tasks"
  row "Python Pool($jobs) + subprocess.run" "$py" "$tasks"
  if [ "$have_parallel" = yes ]; then
    gp=$(time_cmd "$work/true.txt" parallel -j "$jobs")
    row "parallel -j $jobs" "$gp" "$tasks"
  fi
  printf '  poolscope throughput / loop:   %.2f  (target >= 0.90)\n' "$(ratio "$lp" "$ps")"
  printf '  poolscope throughput / capturing loop: %.2f  (target >= 0.97)\n' "$(ratio "$lc" "$ps")"
  printf '  poolscope throughput / xargs:  %.2f  (target >= 1.15)\n' "$(ratio "$xa" "$ps")"
  printf '  poolscope throughput / Python: %.2f\n' "$(ratio "$py" "$ps")"
  printf '  the journal adds: %.1f%%  (target <= 5%%)\n' "$(echo "($ps / $pn - 1) * 100" | bc -l)"
  if [ "$have_parallel" = yes ]; then
    printf '  poolscope throughput / GNU parallel: %.2f  (target >= 5)\n' "$(ratio "$gp" "$ps")"
  else
    echo "  GNU parallel not installed (apt-get install parallel): skipped"
  fi
done

settle
echo "== latency at P=1: 200 x sleep 0.01 (median of $runs)"
for _ in $(seq 200); do echo /bin/sleep 0.01; done >"$work/sleep.txt"
lp=$(time_cmd /dev/null "$work/spawnpool" 1 200 /bin/sleep 0.01)
ps=$(time_cmd "$work/sleep.txt" "$bin" run -j 1)
for _ in $(seq 200); do echo 0.01; done >"$work/secs.txt"
xa=$(time_cmd "$work/secs.txt" xargs -P 1 -n 1 /bin/sleep)
row "C posix_spawn loop" "$lp" 200
row "poolscope run -j 1" "$ps" 200
row "xargs -P 1" "$xa" 200
printf '  poolscope per-task overhead above the loop: %.3f ms  (target <= 0.1)\n' \
  "$(echo "($ps - $lp) * 1000 / 200" | bc -l)"

settle
echo "== one task, start to exit (median of $((runs * 4)))"
echo /bin/true >"$work/one.txt"
runs=$((runs * 4))
lp=$(time_cmd /dev/null "$work/spawnpool" 1 1 /bin/true)
ps=$(time_cmd "$work/one.txt" "$bin" run -j 1)
printf '  C posix_spawn loop       %7.2f ms\n' "$(echo "$lp * 1000" | bc -l)"
printf '  poolscope run            %7.2f ms  (+%.2f ms; target <= +3)\n' \
  "$(echo "$ps * 1000" | bc -l)" "$(echo "($ps - $lp) * 1000" | bc -l)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
