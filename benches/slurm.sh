#!/usr/bin/env bash
# poolscope's slurm backend against Slurm used by hand, same cluster, same run:
# N trivial tasks on P slots (default 200 on 4) as
#   - a bare job array with the same throttle (sbatch --array=0-(N-1)%P, its end seen
#     by polling squeue every 0.2 s),
#   - poolscope run -j P --backend slurm,
#   - poolscope run -j P --backend slurm --workers (persistent workers as pilot jobs),
#   - srun per task from a loop (xargs -P P).
# Then, workers only: 10 000 trivial tasks on the cluster (target <= 30 s), and the time
# per task once workers are up against local worker mode (target <= 2x), from two list
# lengths (the difference cancels the start-up).
# Slurm's own scheduling cycles make one run of each vary by tens of percent (a bare
# array took 24 s, then 46 s, on an idle machine), so the three take turns for ROUNDS
# rounds (default 3) and the medians are compared.
# Needs a running Slurm (sudo bash scripts/slurm_up.sh; SLURM_SLOTS=4 for 4 slots).
#   [ROUNDS=3] bash benches/slurm.sh [N] [P]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
p=${2:-4}
rounds=${ROUNDS:-3}
scontrol ping | grep -q UP || { echo "no Slurm controller answers (scripts/slurm_up.sh)" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/poolscope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seconds() { # COMMAND...: wall seconds
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s%N)
  echo "scale=2; ($t1 - $t0) / 1000000000" | bc
}
# The bare array's end is seen by polling squeue every 0.2 s (sbatch --wait polls far
# more slowly and would flatter poolscope).
bare_array() {
  local job
  job=$(sbatch --parsable --array=0-$((n - 1))%"$p" --output=/dev/null --wrap true)
  while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do sleep 0.2; done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for _ in $(seq "$n"); do echo true; done >"$work/tasks.txt"
bares=() ours_all=() loops=() workers_all=()
for r in $(seq "$rounds"); do
  bares+=("$(seconds bare_array)")
  ours_all+=("$(seconds sh -c "$bin run -j $p --backend slurm --run-dir $work/runs < $work/tasks.txt")")
  workers_all+=("$(seconds sh -c "$bin run -j $p --backend slurm --workers --run-dir $work/runs < $work/tasks.txt")")
  loops+=("$(seconds sh -c "seq $n | xargs -P $p -I{} srun -n1 --quiet true")")
  echo "round $r: bare ${bares[-1]} s, poolscope ${ours_all[-1]} s, workers ${workers_all[-1]} s, srun ${loops[-1]} s"
done
bare=$(printf '%s\n' "${bares[@]}" | median)
ours=$(printf '%s\n' "${ours_all[@]}" | median)
workers=$(printf '%s\n' "${workers_all[@]}" | median)
loop=$(printf '%s\n' "${loops[@]}" | median)
printf '%s trivial tasks on %s slots, medians of %s rounds\n' "$n" "$p" "$rounds"
printf '  bare sbatch --array %%%s:        %6.2f s\n' "$p" "$bare"
printf '  poolscope run --backend slurm: %6.2f s  (%+.1f%% against the bare array; target within 10%%)\n' \
  "$ours" "$(echo "($ours / $bare - 1) * 100" | bc -l)"
printf '  srun per task (xargs -P %s):    %6.2f s\n' "$p" "$loop"
printf '  poolscope --backend slurm --workers: %6.2f s  (%.0fx faster than poolscope'"'"'s array; target >= 40x)\n' \
  "$workers" "$(echo "$ours / $workers" | bc -l)"

# Workers only: a long list, and the cost per task once the workers are up.
for _ in $(seq 10000); do echo true; done >"$work/10k.txt"
for _ in $(seq 2000); do echo true; done >"$work/2k.txt"
tenk=() c2=() c10=() l2=() l10=()
for r in $(seq "$rounds"); do
  tenk+=("$(seconds sh -c "$bin run -j $p --backend slurm --workers --run-dir $work/runs --joblog $work/10k.log < $work/10k.txt")")
  [ "$(tail -n +2 "$work/10k.log" | cut -f1 | sort -u | wc -l)" = 10000 ] || { echo "the joblog misses tasks" >&2; exit 1; }
  c2+=("$(seconds sh -c "$bin run -j $p --backend slurm --workers --run-dir $work/runs < $work/2k.txt")")
  l2+=("$(seconds sh -c "$bin run -j $p --workers --run-dir $work/runs < $work/2k.txt")")
  l10+=("$(seconds sh -c "$bin run -j $p --workers --run-dir $work/runs < $work/10k.txt")")
  c10+=("${tenk[-1]}")
done
tenk_m=$(printf '%s\n' "${tenk[@]}" | median)
cluster_ms=$(echo "($(printf '%s\n' "${c10[@]}" | median) - $(printf '%s\n' "${c2[@]}" | median)) / 8000 * 1000" | bc -l)
local_ms=$(echo "($(printf '%s\n' "${l10[@]}" | median) - $(printf '%s\n' "${l2[@]}" | median)) / 8000 * 1000" | bc -l)
printf '10 000 trivial tasks on %s cluster workers: %6.2f s, every task in the joblog (target <= 30 s)\n' "$p" "$tenk_m"
printf '  per task once workers are up: cluster %.3f ms, local workers %.3f ms (%.2fx; target <= 2x)\n' \
  "$cluster_ms" "$local_ms" "$(echo "$cluster_ms / $local_ms" | bc -l)"
