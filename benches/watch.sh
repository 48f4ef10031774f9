#!/usr/bin/env bash
# What watching costs a Python program, measured in this run (medians of RUNS):
#  - Pool(2).map over N trivial items
#  - Pool(2).imap with chunksize 1 over M items
# each run plain and under `poolscope watch` (every task recorded).
#   bash benches/watch.sh [N] [M] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
m=${2:-20000}
runs=${3:-5}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. benches/timing.sh
for case in "map $n" "imap $m"; do
  set -- $case
  plain=$(time_cmd python3 benches/noop_pool.py "$2" "$1")
  watched=$(time_cmd "$bin" watch -- python3 benches/noop_pool.py "$2" "$1")
  printf '%-5s %6s items: plain %7.3f s   watched %7.3f s   +%.0f%%\n' "$1" "$2" "$plain" "$watched" \
    "$(echo "($watched / $plain - 1) * 100" | bc -l)"
done
echo "target: watching adds at most 25% to either"
