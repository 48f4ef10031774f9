#!/usr/bin/env bash
# Driving a live run from another terminal, against pueue (a daemon and its client,
# `cargo install pueue`), both measured in this run, medians of RUNS:
#  - ADDS tasks added one `add` call each into an idle (paused) pool, five batches in a
#    row into the same run/daemon (pueue slows down as its state grows);
#  - BIG tasks added in one `poolscope add` from stdin (all journaled);
#  - `status --json` of that BIG-task run, and pueue's of its 5 x ADDS tasks.
#   bash benches/control.sh [ADDS] [BIG] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
adds=${1:-500}
big=${2:-100000}
runs=${3:-5}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
pueue=$(command -v pueue || echo "$HOME/.cargo/bin/pueue")
pueued=$(command -v pueued || echo "$HOME/.cargo/bin/pueued")
[ -x "$pueue" ] && [ -x "$pueued" ] || { echo "pueue is needed: cargo install pueue" >&2; exit 1; }
work=$(mktemp -d)
cleanup() {
  "$pueue" -c "$work/pueue.yml" shutdown >/dev/null 2>&1 || true
  "$bin" terminate --run-dir "$work/runs" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# median: the middle of numbers, one per line.
. benches/timing.sh
secs() { date +%s.%N; }

# A served poolscope run, paused: its ID.
serve() {
  rm -rf "$work/runs"
  "$bin" run --serve --run-dir "$work/runs" >/dev/null 2>"$work/serve.err" &
  for _ in $(seq 500); do grep -q "serving run" "$work/serve.err" 2>/dev/null && break; sleep 0.01; done
  "$bin" pause --run-dir "$work/runs"
  ls "$work/runs"
}
# Wait for run ID to end (its socket goes with it).
ended() { for _ in $(seq 1000); do [ -e "$work/runs/$1/control.sock" ] || return 0; sleep 0.01; done; }
# A pueue daemon of its own, its default group paused.
pueue_up() {
  rm -rf "$work/pq" && mkdir -p "$work/pq/data" "$work/pq/run"
  cat >"$work/pueue.yml" <<EOF
shared:
  pueue_directory: $work/pq/data
  runtime_directory: $work/pq/run
  use_unix_socket: true
  unix_socket_path: $work/pq/pueue.sock
EOF
  "$pueued" -c "$work/pueue.yml" -d >/dev/null 2>&1
  for _ in $(seq 500); do "$pueue" -c "$work/pueue.yml" status >/dev/null 2>&1 && break; sleep 0.01; done
  "$pueue" -c "$work/pueue.yml" pause >/dev/null
}
pueue_down() { "$pueue" -c "$work/pueue.yml" shutdown >/dev/null 2>&1 || true; sleep 0.2; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A ps_batch pq_batch
ps_status=() pq_status=() ps_big=() floor=()
for run in $(seq "$runs"); do
  id=$(serve)
  pueue_up
  # The floor of any client: the same loop starting /bin/true, which does nothing.
  t0=$(secs)
  for _ in $(seq "$adds"); do /bin/true >/dev/null; done
  floor+=("$(echo "$(secs) - $t0" | bc -l)")
  for batch in 1 2 3 4 5; do
    t0=$(secs)
    for _ in $(seq "$adds"); do "$bin" add --run-dir "$work/runs" --run "$id" -- true >/dev/null; done
    t1=$(secs)
    for _ in $(seq "$adds"); do "$pueue" -c "$work/pueue.yml" add -- true >/dev/null; done
    t2=$(secs)
    ps_batch[$batch]+="$(echo "$t1 - $t0" | bc -l) "
    pq_batch[$batch]+="$(echo "$t2 - $t1" | bc -l) "
  done
  t0=$(secs)
  "$pueue" -c "$work/pueue.yml" status --json >/dev/null
  pq_status+=("$(echo "$(secs) - $t0" | bc -l)")
  pueue_down
  "$bin" terminate --run-dir "$work/runs" >/dev/null
  ended "$id"
  # BIG tasks in one add, then the status of the run holding them.
  id=$(serve)
  seq "$big" | sed 's/^/echo /' >"$work/commands.txt"
  t0=$(secs)
  "$bin" add --run-dir "$work/runs" --run "$id" <"$work/commands.txt" >/dev/null
  ps_big+=("$(echo "$(secs) - $t0" | bc -l)")
  queued=$(grep -c '"Queued"' "$work/runs/$id/journal.jsonl")
  [ "$queued" -eq "$big" ] || { echo "only $queued of $big tasks are in the journal" >&2; exit 1; }
  t0=$(secs)
  "$bin" status --run-dir "$work/runs" --run "$id" --json >"$work/status.json"
  ps_status+=("$(echo "$(secs) - $t0" | bc -l)")
  "$bin" terminate --run-dir "$work/runs" >/dev/null
  ended "$id"
done

med() { printf '%s\n' "$@" | median; }
echo "== $adds tasks, one add call each, into a paused pool (median of $runs)"
printf '  %-8s %12s %12s %10s\n' batch poolscope pueue speedup
for batch in 1 2 3 4 5; do
  # shellcheck disable=SC2086
  p=$(med ${ps_batch[$batch]})
  # shellcheck disable=SC2086
  q=$(med ${pq_batch[$batch]})
  printf '  %-8s %10.2f s %10.2f s %9.1fx\n' "$batch" "$p" "$q" "$(echo "$q / $p" | bc -l)"
done
f=$(med "${floor[@]}")
printf '  the same loop of /bin/true (any client'"'"'s floor): %.2f s, so at most %.1fx pueue'"'"'s first batch\n' \
  "$f" "$(echo "$(med ${pq_batch[1]}) / $f" | bc -l)"
echo "== $big tasks in one add from stdin, all journaled (target <= 1 s)"
printf '  poolscope %.3f s\n' "$(med "${ps_big[@]}")"
echo "== status --json (target <= 0.3 s for $big tasks)"
printf '  poolscope, %d tasks: %.3f s\n' "$big" "$(med "${ps_status[@]}")"
printf '  pueue, %d tasks:    %.3f s\n' "$((5 * adds))" "$(med "${pq_status[@]}")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
