#!/usr/bin/env bash
# Persistent workers against Python's multiprocessing.Pool, measured in this run:
# N `noop` tasks on 2 workers, start-up included on both sides, every task recorded
# individually in poolscope's run record (the same run writing a Chrome trace is timed
# too).
#  - chunksize 1 (Python: imap, chunksize=1)
#  - Python's map default chunksize (poolscope: the same default)
#   bash benches/workers.sh [TASKS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-100000}
runs=${2:-3}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for chunk in 1 0; do
  {
    echo "[pool]"; echo "size = 2"; echo 'mode = "workers"'
    [ "$chunk" -gt 0 ] && echo "chunksize = $chunk"
    echo "[[task]]"; echo 'builtin = "noop"'; echo "range = [0, $tasks]"
  } >"$work/noop$chunk.toml"
done
. benches/timing.sh
py_imap=$(time_cmd python3 benches/noop_pool.py "$tasks" imap)
ps_one=$(time_cmd "$bin" run "$work/noop1.toml")
py_map=$(time_cmd python3 benches/noop_pool.py "$tasks" map)
ps_map=$(time_cmd "$bin" run "$work/noop0.toml")
ps_trace=$(time_cmd "$bin" run "$work/noop0.toml" --trace "$work/t0.json")
rate() { echo "$tasks / $1" | bc -l; }
printf '%s noop tasks on 2 workers (median of %s)\n' "$tasks" "$runs"
printf '  chunksize 1:  Python imap %7.3f s (%6.0f tasks/s)   poolscope %7.3f s (%6.0f tasks/s)   throughput x%.2f\n' \
  "$py_imap" "$(rate "$py_imap")" "$ps_one" "$(rate "$ps_one")" "$(echo "$py_imap / $ps_one" | bc -l)"
printf '  map default:  Python map  %7.3f s                     poolscope %7.3f s                     wall x%.2f of Python\n' \
  "$py_map" "$ps_map" "$(echo "$ps_map / $py_map" | bc -l)"
echo "targets: chunksize 1 >= 3x Python's throughput; map within 1.5x of Python's wall time"
printf '  map default with --trace (%s trace events written): poolscope %7.3f s\n' "$tasks" "$ps_trace"
