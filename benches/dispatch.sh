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
# The cases of a section run in turn, one round after another ($rounds rounds), so a
# drift of the machine's speed (10-20% between quarter hours here) falls on all of them
# alike. case NAME INPUT CMD...: adds a case; measure: runs them; then med NAME gives the
# median wall seconds of NAME and paired A B the median over rounds of A's time / B's.
names=()
case_() { local name=$1 input=$2; shift 2; names+=("$name"); printf '%s\n' "$input" >"$work/case.$name.in"; printf '%q ' "$@" >"$work/case.$name.cmd"; : >"$work/case.$name.t"; }
measure() {
  for _ in $(seq "$rounds"); do
    for name in "${names[@]}"; do
      local t0 t1 cmd input
      cmd=$(cat "$work/case.$name.cmd")
      input=$(cat "$work/case.$name.in")
      # bash's own clock: no process started inside the timing.
      t0=$EPOCHREALTIME
      eval "$cmd" <"$input" >/dev/null
      t1=$EPOCHREALTIME
      echo "$t1 - $t0" | bc -l >>"$work/case.$name.t"
    done
  done
  names=()
}
med() { median <"$work/case.$1.t"; }
paired() { paste "$work/case.$1.t" "$work/case.$2.t" | awk '{print $1 / $2}' | median; }
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
rounds=$runs
for jobs in 2 8; do
  settle
  echo "== $tasks x /bin/true, pool of $jobs (median of $runs rounds, the cases in turn)"
  case_ loop /dev/null "$work/spawnpool" "$jobs" "$tasks" /bin/true
  case_ capturing /dev/null "$work/spawnpool" -c "$jobs" "$tasks" /bin/true
  case_ poolscope "$work/true.txt" "$bin" run -j "$jobs"
  case_ nojournal "$work/true.txt" "$bin" run -j "$jobs" --no-journal
  case_ xargs "$work/true.txt" xargs -P "$jobs" -n 1 -d '\n' /bin/true
  case_ python "$work/true.txt" python3 "$work/pool.py" "$jobs"
  [ "$have_parallel" = yes ] && case_ parallel "$work/true.txt" parallel -j "$jobs"
  measure
  row "C posix_spawn loop" "$(med loop)" "$tasks"
  row "C loop capturing stdout (-c)" "$(med capturing)" "$tasks"
  row "poolscope run -j $jobs" "$(med poolscope)" "$tasks"
  row "poolscope run -j $jobs --no-journal" "$(med nojournal)" "$tasks"
  row "xargs -P $jobs /bin/true" "$(med xargs)" "$tasks"
  row "Python Pool($jobs) + subprocess.run" "$(med python)" "$tasks"
  [ "$have_parallel" = yes ] && row "parallel -j $jobs" "$(med parallel)" "$tasks"
  # Throughput ratios: a peer's time over poolscope's in the same round, the median of
  # the rounds (the ratio of the medians in brackets).
  both() { printf '%.2f (%.2f)' "$(paired "$1" poolscope)" "$(ratio "$(med "$1")" "$(med poolscope)")"; }
  printf '  poolscope throughput / loop:   %s  (target >= 0.90)\n' "$(both loop)"
  printf '  poolscope throughput / capturing loop: %s  (target >= 0.97)\n' "$(both capturing)"
  printf '  poolscope throughput / xargs:  %s  (target >= 1.15)\n' "$(both xargs)"
  printf '  poolscope throughput / Python: %s  (target >= 1.3)\n' "$(both python)"
  printf '  the journal adds: %.1f%%  (target <= 5%%)\n' "$(echo "($(paired poolscope nojournal) - 1) * 100" | bc -l)"
  if [ "$have_parallel" = yes ]; then
    printf '  poolscope throughput / GNU parallel: %s  (target >= 5)\n' "$(both parallel)"
  else
    echo "  GNU parallel not installed (apt-get install parallel): skipped"
  fi
done

# The median over rounds of A's time minus B's, in ms (per task: divided by $3).
paired_ms() { paste "$work/case.$1.t" "$work/case.$2.t" | awk -v n="${3:-1}" '{print ($1 - $2) * 1000 / n}' | median; }

settle
echo "== latency at P=1: 200 x sleep 0.01 (median of $runs rounds)"
for _ in $(seq 200); do echo /bin/sleep 0.01; done >"$work/sleep.txt"
for _ in $(seq 200); do echo 0.01; done >"$work/secs.txt"
case_ loop1 /dev/null "$work/spawnpool" 1 200 /bin/sleep 0.01
case_ poolscope1 "$work/sleep.txt" "$bin" run -j 1
case_ xargs1 "$work/secs.txt" xargs -P 1 -n 1 /bin/sleep
measure
row "C posix_spawn loop" "$(med loop1)" 200
row "poolscope run -j 1" "$(med poolscope1)" 200
row "xargs -P 1" "$(med xargs1)" 200
printf '  poolscope per-task overhead above the loop: %.3f ms  (target <= 0.1)\n' \
  "$(paired_ms poolscope1 loop1 200)"

settle
rounds=$((runs * 4))
echo "== one task, start to exit (median of $rounds rounds)"
echo /bin/true >"$work/one.txt"
case_ loop_one /dev/null "$work/spawnpool" 1 1 /bin/true
case_ poolscope_one "$work/one.txt" "$bin" run -j 1
measure
printf '  C posix_spawn loop       %7.2f ms\n' "$(echo "$(med loop_one) * 1000" | bc -l)"
printf '  poolscope run            %7.2f ms  (+%.2f ms; target <= +3)\n' \
  "$(echo "$(med poolscope_one) * 1000" | bc -l)" "$(paired_ms poolscope_one loop_one)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
