#!/usr/bin/env bash
# A million tasks on one machine, each figure beside its peer in the same run (medians
# of $RUNS, default 5):
#  - 100 000 and 1 000 000 `noop` tasks on 2 workers, headless: wall time and peak RSS,
#    the 1M/100k time ratio (target <= 12x, RSS <= 250 MB), the journal's bytes a task
#    (target <= 120), and what --trace adds to the 1M run (targets 3 s, 120 bytes);
#  - the first task after its line arrives: poolscope run against xargs (target <= 10 ms
#    later);
#  - an endless producer (`yes /bin/true`) for $ENDLESS seconds: peak RSS against xargs;
#  - `-k` with 1 GiB behind a slow first task: peak RSS against `parallel -k` (if
#    installed; target <= 200 MB).
#   bash benches/million.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
endless=${ENDLESS:-5}
cargo build --release --quiet
bin=$PWD/target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export POOLSCOPE_RUN_DIR="$work/runs"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# peak KB and wall seconds of a command: "secs kb"
measure() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }

for n in 100000 1000000; do
  printf '[pool]\nsize = 2\nmode = "workers"\n[[task]]\nbuiltin = "noop"\nrange = [0, %s]\n' "$n" >"$work/noop$n.toml"
  for _ in $(seq "$runs"); do
    rm -rf "$work/runs"
    measure "$bin" run "$work/noop$n.toml"
    echo "journal $(stat -c %s "$work"/runs/run-*/journal.jsonl)"
  done >"$work/m$n"
done
secs() { grep -v journal "$work/m$1" | awk '{print $1}' | median; }
peak() { grep -v journal "$work/m$1" | awk '{print $2}' | median; }
journal() { grep journal "$work/m$1" | awk '{print $2}' | median; }
s1=$(secs 100000); s2=$(secs 1000000)
printf 'noop on 2 workers (median of %s): 100 000 tasks %.2f s, peak %d MB; 1 000 000 tasks %.2f s, peak %d MB (%.1fx the time; targets 12x, 250 MB)\n' \
  "$runs" "$s1" "$(( $(peak 100000) / 1024 ))" "$s2" "$(( $(peak 1000000) / 1024 ))" "$(echo "$s2 / $s1" | bc -l)"
printf '  journal: %.1f bytes a task (target 120)\n' "$(echo "$(journal 1000000) / 1000000" | bc -l)"
# The same 1 000 000 run writing its Chrome trace: the time it adds, and its size.
for _ in $(seq "$runs"); do
  rm -rf "$work/runs"
  measure "$bin" run --trace "$work/trace.json" "$work/noop1000000.toml"
  echo "trace $(stat -c %s "$work/trace.json")"
done >"$work/mtrace"
s3=$(grep -v trace "$work/mtrace" | awk '{print $1}' | median)
printf '  with --trace: +%.2f s, %.1f bytes a task (targets 3 s, 120)\n' \
  "$(echo "$s3 - $s2" | bc -l)" "$(echo "$(grep trace "$work/mtrace" | awk '{print $2}' | median) / 1000000" | bc -l)"

# First task: when its line arrives 1 s after the producer starts, how long until its
# output is out (the producer keeps the pipe open for a second more).
first_ms() {
  python3 - "$@" <<'EOF'
import subprocess, sys, time
cmd = sys.argv[1:]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
time.sleep(1.0)
t0 = time.monotonic()
p.stdin.write(b"echo first\n"); p.stdin.flush()
p.stdout.readline()
ms = (time.monotonic() - t0) * 1000
p.stdin.close(); p.wait()
print(f"{ms:.2f}")
EOF
}
for _ in $(seq "$runs"); do first_ms "$bin" run -j 2 --no-journal; done | median >"$work/first_ps"
for _ in $(seq "$runs"); do first_ms xargs -P 2 -I{} sh -c {}; done | median >"$work/first_x"
printf 'first task after its line (median of %s): poolscope %.2f ms, xargs %.2f ms (%+.2f ms; target <= +10)\n' \
  "$runs" "$(cat "$work/first_ps")" "$(cat "$work/first_x")" "$(echo "$(cat "$work/first_ps") - $(cat "$work/first_x")" | bc -l)"

# An endless producer: peak RSS after $endless s.
endless_kb() {
  local pid
  ( yes /bin/true | "$@" >/dev/null 2>&1 ) 2>/dev/null &
  sleep "$endless"
  pid=$(pgrep -o -f "^$1 ") || true
  local kb
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  pkill -TERM -f "^$1 " || true
  wait 2>/dev/null || true
  echo "$kb"
}
ps_kb=$(for _ in $(seq "$runs"); do endless_kb "$bin" run -j 2 --no-journal; done | median)
x_kb=$(for _ in $(seq "$runs"); do endless_kb xargs -P 2 -I{} sh -c {}; done | median)
printf 'yes /bin/true for %s s (median of %s): poolscope peak %d MB, xargs %d MB (target 100 MB)\n' \
  "$endless" "$runs" "$((ps_kb / 1024))" "$((x_kb / 1024))"

# -k: 1 GiB behind a first task that ends last.
printf 'sleep 3; echo first\nhead -c 1073741824 /dev/zero | tr "\\0" a\n' >"$work/k.txt"
k_ps=$(for _ in $(seq "$runs"); do measure "$bin" run -j 2 -k --no-journal <"$work/k.txt" | awk '{print $2}'; done | median)
printf -- '-k, 1 GiB behind a slow task (median of %s): poolscope peak %d MB' "$runs" "$((k_ps / 1024))"
if command -v parallel >/dev/null; then
  k_gp=$(for _ in $(seq "$runs"); do measure parallel -j 2 -k <"$work/k.txt" | awk '{print $2}'; done | median)
  printf ', parallel -k %d MB' "$((k_gp / 1024))"
fi
echo " (target 200 MB)"
