#!/bin/sh
# poolscope's Slurm launcher: what each element of a job array runs.
#   launcher.sh RUN_DIR
# Runs task $SLURM_ARRAY_TASK_ID (its script is RUN_DIR/tasks/ID.sh) with its output in
# RUN_DIR/out/ID.stdout and .stderr, and records, to the nanosecond and by the node's own
# clock, when it started and ended and how: RUN_DIR/stamps/ID.start holds
# "START_NS HOST PID", ID.end holds "END_NS EXIT" (EXIT is 128+N for a signal N). Each
# file appears whole (written aside, then renamed), so a reader never sees half of one.
dir=$1
id=${SLURM_ARRAY_TASK_ID:?not run as an element of a job array}
mkdir -p "$dir/stamps" "$dir/out"
stamp() { # NAME TEXT
  printf '%s\n' "$2" >"$dir/stamps/$1.tmp.$$" && mv "$dir/stamps/$1.tmp.$$" "$dir/stamps/$1"
}
stamp "$id.start" "$(date +%s%N) $(hostname) $$"
sh "$dir/tasks/$id.sh" </dev/null >"$dir/out/$id.stdout" 2>"$dir/out/$id.stderr" &
child=$!
# scancel sends SIGTERM to the batch script: pass it on, then record how the task ended.
trap 'kill -TERM $child 2>/dev/null' TERM INT
while :; do
  wait $child
  code=$?
  kill -0 $child 2>/dev/null || break
done
stamp "$id.end" "$(date +%s%N) $code"
exit $code
