#!/usr/bin/env bash
# Output speed against its peers on the same producer, measured in this run (medians):
#  - 1 GiB of 70-byte lines: `poolscope run > /dev/null` against `producer | cat > /dev/null`
#  - 1 GiB with no newline at all: poolscope against the lines case (same tool)
#  - 1 GiB of lines with `--results DIR`: against `producer | tee FILE > /dev/null`
#   bash benches/output.sh [MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
runs=${2:-3}
bytes=$((mib * 1024 * 1024))
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

line=$(printf '%069d' 0)  # 69 digits + newline = 70 bytes
lines="yes $line | head -c $bytes"
zeros="head -c $bytes /dev/zero"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# time_sh SCRIPT: median wall seconds of `sh -c SCRIPT`.
time_sh() {
  for _ in $(seq "$runs"); do
    rm -rf "$work/out" "$work/file"
    local t0 t1
    t0=$(date +%s.%N)
    sh -c "$1"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
ratio() { echo "$1 / $2" | bc -l; }
row() { printf '  %-44s %7.3f s  %6.0f MiB/s\n' "$1" "$2" "$(ratio "$mib" "$2")"; }

echo "== $mib MiB through one task (median of $runs)"
cat_lines=$(time_sh "$lines | cat > /dev/null")
ps_lines=$(time_sh "echo '$lines' | $bin run -j 1 > /dev/null")
ps_zeros=$(time_sh "echo '$zeros' | $bin run -j 1 > /dev/null")
tee_lines=$(time_sh "$lines | tee $work/file > /dev/null")
ps_results=$(time_sh "echo '$lines' | $bin run -j 1 --results $work/out > /dev/null")
row "lines | cat > /dev/null" "$cat_lines"
row "poolscope run > /dev/null (lines)" "$ps_lines"
row "poolscope run > /dev/null (no newline)" "$ps_zeros"
row "lines | tee FILE > /dev/null" "$tee_lines"
row "poolscope run --results DIR > /dev/null" "$ps_results"
printf '  lines: poolscope throughput / cat:           %.2f  (target >= 0.80)\n' "$(ratio "$cat_lines" "$ps_lines")"
printf '  no newline: time / lines time:               %.2f  (target <= 1.50)\n' "$(ratio "$ps_zeros" "$ps_lines")"
printf '  --results: poolscope throughput / tee:       %.2f  (target >= 0.80)\n' "$(ratio "$tee_lines" "$ps_results")"
