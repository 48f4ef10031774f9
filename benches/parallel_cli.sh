#!/usr/bin/env bash
# GNU parallel's command line against its peers, all measured in this run (medians of
# RUNS): TASKS trivial tasks written the parallel way, `poolscope run true ::: 1 … N`,
# against GNU parallel (the same words), rust-parallel (a Rust clone of parallel's
# command line: `cargo install rust-parallel`) and `xargs -P J -n 1 true` (arguments on
# stdin), at -j 2 and -j 8. Prints wall times and poolscope's speed against each.
#   bash benches/parallel_cli.sh [TASKS] [RUNS]
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
command -v parallel >/dev/null || { echo "GNU parallel is needed: apt-get install parallel" >&2; exit 1; }
rust_parallel=$(command -v rust-parallel || echo "$HOME/.cargo/bin/rust-parallel")
# Optional: where it is missing (`cargo install rust-parallel` builds it), its row is skipped.
[ -x "$rust_parallel" ] || { echo "rust-parallel not installed (cargo install rust-parallel): its row is skipped"; rust_parallel=; }

# median, time_cmd: medians of $runs wall-clock runs, output discarded.
. benches/timing.sh
ratio() { echo "$1 / $2" | bc -l; }

mapfile -t args < <(seq "$tasks")
seq "$tasks" >"$work/args.txt"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for jobs in 2 8; do
  echo "== $tasks x true, the parallel way, -j $jobs (median of $runs)"
  ps=$(time_cmd "$bin" run -j "$jobs" true ::: "${args[@]}" </dev/null)
  gp=$(time_cmd parallel --will-cite -j "$jobs" true ::: "${args[@]}" </dev/null)
  xa=$(time_cmd xargs -a "$work/args.txt" -P "$jobs" -n 1 true)
  printf '  %-44s %7.3f s\n' "poolscope run -j $jobs true ::: …" "$ps" \
    "parallel -j $jobs true ::: …" "$gp" \
    "seq | xargs -P $jobs -n 1 true" "$xa"
  peers=("$gp" "$xa")
  if [ -n "$rust_parallel" ]; then
    rp=$(time_cmd "$rust_parallel" -j "$jobs" true ::: "${args[@]}" </dev/null)
    printf '  %-44s %7.3f s\n' "rust-parallel -j $jobs true ::: …" "$rp"
    printf '  poolscope: %.2fx rust-parallel\n' "$(ratio "$rp" "$ps")"
    peers+=("$rp")
  fi
  fastest=$(printf '%s\n' "${peers[@]}" | sort -n | head -n 1)
  printf '  poolscope: %.2fx GNU parallel, %.2fx xargs -P; %.2fx the fastest peer (target >= 1)\n' \
    "$(ratio "$gp" "$ps")" "$(ratio "$xa" "$ps")" "$(ratio "$fastest" "$ps")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
