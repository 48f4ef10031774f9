#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages, with its daemons
# started by hand (no systemd needed), for trying poolscope's slurm backend and for its
# tests. Idempotent: a running instance is restarted with the new settings.
#
#   SLURM_SLOTS=N     CPUs the node declares (default: the core count; more is allowed, so
#                     a pool larger than the machine can be tried)
#   SLURM_SKIP_APT=1  the packages are installed already
#
# No accounting database: poolscope reads state from squeue/scontrol and from what its
# launcher writes. Stop it with scripts/slurm_down.sh. Must run as root.
set -euo pipefail
slots=${SLURM_SLOTS:-$(nproc)}
node=$(hostname -s)
mem_mb=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
here=$(cd "$(dirname "$0")" && pwd)
say() { echo "slurm_up: $*"; }
wait_for() { # SECONDS WHAT COMMAND...: poll until COMMAND succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "slurm_up: gave up after ${seconds} s waiting for $what" >&2
  return 1
}
[ "$(id -u)" = 0 ] || { echo "slurm_up: must run as root" >&2; exit 1; }
[ -s /run/slurmctld.pid ] || [ -s /run/slurmd.pid ] && bash "$here/slurm_down.sh"

if [ "${SLURM_SKIP_APT:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not try to start the daemons through init scripts.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  say "packages installed"
fi

# munge: the key Debian's package made (or a new one), then the daemon.
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey -c -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
(munge -n | unmunge) >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
wait_for 10 munged bash -c 'munge -n | unmunge'

# State left by a cluster of another name stops slurmctld ("ClusterName mismatch"): it is
# set aside (kept, renamed), and this cluster starts with none.
state=/var/lib/slurm/slurmctld
if [ -s "$state/clustername" ] && [ "$(cat "$state/clustername")" != poolscope ]; then
  aside="$state.$(cat "$state/clustername").$(date +%s)"
  say "state of cluster '$(cat "$state/clustername")' in $state moved to $aside"
  mv "$state" "$aside"
fi
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd
overrides=""
[ "$slots" -gt "$(nproc)" ] && overrides="SlurmdParameters=config_overrides"
cat >/etc/slurm/slurm.conf <<CONF
# written by poolscope's scripts/slurm_up.sh: one node, no systemd, no accounting
ClusterName=poolscope
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups (containers and sandboxes have none to give).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
${overrides}
SchedulerType=sched/backfill
# Refill a freed slot at once (the default waits about 3 s).
SchedulerParameters=batch_sched_delay=0,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
# Finished jobs stay visible to scontrol for an hour.
MinJobAge=3600
MaxArraySize=100001
MaxJobCount=200000
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${slots} Boards=1 SocketsPerBoard=1 CoresPerSocket=${slots} ThreadsPerCore=1 RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

/usr/sbin/slurmctld -i
wait_for 30 slurmctld scontrol ping
/usr/sbin/slurmd -N "$node"
wait_for 30 "node $node to register" bash -c "sinfo -h -n '$node' -o %t | grep -qvE '^(unk.*)?$'"
case "$(sinfo -h -n "$node" -o %t)" in
  drain* | drng* | down* | inval* | fail*) scontrol update NodeName="$node" State=RESUME || true ;;
esac
wait_for 30 "node $node to be idle" bash -c "sinfo -h -n '$node' -o %t | grep -qx idle"
say "up: node $node with $slots slots"
