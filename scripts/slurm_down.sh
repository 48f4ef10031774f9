#!/usr/bin/env bash
# Stops what scripts/slurm_up.sh started (slurmd, slurmctld; munged with MUNGE=1).
set -uo pipefail
stop() { # PIDFILE NAME
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$1"
  echo "slurm_down: $2 stopped"
}
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
[ "${MUNGE:-0}" = 1 ] && stop /run/munge/munged.pid munged
exit 0
