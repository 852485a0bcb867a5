#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying slurm/train_sweet.sh without a real cluster
# (Debian's slurmctld, slurmd, slurm-client and munge; run as root). Everything lives under one
# state directory with its own munge key, socket and slurm.conf; nothing under /etc is touched.
#
#   slurm/local_cluster.sh up        # start munged, slurmctld and slurmd; wait for the node
#   eval "$(slurm/local_cluster.sh env)"   # point sbatch/squeue/sinfo at it (SLURM_CONF)
#   slurm/local_cluster.sh down      # stop the daemons (the state directory stays for the logs)
#
# SWEET_SLURM_DIR picks the state directory (default /tmp/sweet-slurm); SWEET_SLURM_PORT the
# controller's port (default 6917; slurmd uses the next one).
set -euo pipefail

STATE=${SWEET_SLURM_DIR:-/tmp/sweet-slurm}
PORT=${SWEET_SLURM_PORT:-6917}
HOST=$(hostname -s)
CONF="$STATE/slurm.conf"

need() {
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || {
      echo "local_cluster: '$cmd' not found: apt-get install -y slurmctld slurmd slurm-client munge" >&2
      exit 3
    }
  done
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$CONF" <<EOF
# Written by slurm/local_cluster.sh: one node, this machine, every daemon as root.
ClusterName=sweetlocal
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${PORT}
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${STATE}/munge/munge.socket
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/spool
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=${STATE}/slurmctld.log
SlurmdLogFile=${STATE}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=local Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  need munged slurmctld slurmd sinfo
  if [ "$(id -u)" != 0 ]; then
    echo "local_cluster: run as root (slurmd starts jobs as their user; munged guards the key)" >&2
    exit 3
  fi
  mkdir -p "$STATE"/{munge,ctld,spool}
  chmod 700 "$STATE/munge"
  if [ ! -s "$STATE/munge/munge.key" ]; then
    head -c 1024 /dev/urandom > "$STATE/munge/munge.key"
    chmod 400 "$STATE/munge/munge.key"
  fi
  write_conf
  if [ ! -S "$STATE/munge/munge.socket" ]; then
    munged --force --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
      --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
      --seed-file="$STATE/munge/munged.seed"
  fi
  pgrep -f "slurmctld -f $CONF" >/dev/null || slurmctld -f "$CONF"
  pgrep -f "slurmd -f $CONF" >/dev/null || slurmd -f "$CONF"
  for _ in $(seq 1 60); do
    state=$(SLURM_CONF="$CONF" sinfo -h -N -o %t 2>/dev/null | head -n 1 || true)
    case "$state" in
      idle*|mix*|alloc*) echo "local_cluster: node $HOST $state (SLURM_CONF=$CONF)"; return 0 ;;
    esac
    sleep 1
  done
  echo "local_cluster: node did not come up in 60 s; logs: $STATE/slurmctld.log $STATE/slurmd.log" >&2
  tail -n 5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
  exit 1
}

down() {
  for name in slurmd slurmctld; do
    pkill -f "$name -f $CONF" 2>/dev/null || true
  done
  if [ -s "$STATE/munge/munged.pid" ]; then
    kill "$(cat "$STATE/munge/munged.pid")" 2>/dev/null || true
  fi
  for _ in $(seq 1 20); do
    pgrep -f "(slurmd|slurmctld) -f $CONF" >/dev/null || break
    sleep 0.5
  done
  rm -f "$STATE/munge/munge.socket"
  echo "local_cluster: stopped (logs kept in $STATE)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
