#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages, for trying the
# project's `--launcher slurm` end to end without a real cluster.
#
#   sudo scripts/slurm_one_node.sh          # install (once), configure, start; idempotent
#   sudo scripts/slurm_one_node.sh status   # daemons and sinfo
#   sudo scripts/slurm_one_node.sh stop     # stop slurmd, slurmctld and munged
#
# The node is this machine with its real CPU count and memory (from `slurmd -C`), in one
# partition named "debug" (override with SLURM_PARTITION=...). It is made to work inside
# containers without systemd or a writable cgroup tree: daemons are started directly
# (not as services), processes are tracked with proctrack/linuxproc and no task plugin
# binds CPUs. No accounting database: `sacct` is unavailable, squeue/scontrol work.
# Written for Debian 12 (slurm-wlm 22.05); needs root.
set -euo pipefail

PARTITION=${SLURM_PARTITION:-debug}
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
RUN=/run/slurm

log() { echo "[slurm_one_node] $*"; }
die() { echo "[slurm_one_node] error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  log "installing slurm-wlm and munge from the Debian archive (a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services are started by this script, not by the packages' init scripts.
  apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >/dev/null
}

pid_running() {   # pid_running PIDFILE: is the process named in PIDFILE alive?
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
    return
  fi
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && { log "munged started"; return; }
    sleep 0.5
  done
  die "munged did not start; see /var/log/munge/munged.log"
}

write_config() {
  mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$RUN"
  local host node_line
  host=$(hostname -s)
  # `slurmd -C` prints this machine's real NodeName line (CPUs, sockets, RealMemory).
  node_line=$(slurmd -C | head -n 1)
  [ -n "$node_line" ] || die "slurmd -C printed nothing"
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<CONF
# Written by scripts/slurm_one_node.sh: a one-node cluster on $host.
ClusterName=onenode
SlurmctldHost=$host
AuthType=auth/munge
CryptoType=crypto/munge
# Daemons and jobs run as root: this is a throw-away test cluster in a container.
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No systemd, no writable cgroup tree in a container: track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
# One job per CPU: jobs ask for --cpus-per-task and get exactly that.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# A requeued job (preemption, time limit) may start again at once.
JobRequeue=1
SchedulerType=sched/backfill
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=3600
KillWait=30
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
  if ! cmp -s "$tmp" "$CONF_DIR/slurm.conf"; then
    mv "$tmp" "$CONF_DIR/slurm.conf"
    chmod 0644 "$CONF_DIR/slurm.conf"
    log "wrote $CONF_DIR/slurm.conf ($node_line)"
    CONFIG_CHANGED=1
  else
    rm -f "$tmp"
  fi
}

start_slurm() {
  if [ "${CONFIG_CHANGED:-0}" = 1 ]; then
    stop_slurm quiet
  fi
  if pid_running "$RUN/slurmctld.pid"; then
    log "slurmctld already running"
  else
    slurmctld
    log "slurmctld started"
  fi
  if pid_running "$RUN/slurmd.pid"; then
    log "slurmd already running"
  else
    slurmd
    log "slurmd started"
  fi
  for _ in $(seq 30); do
    if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
      log "ready: $(sinfo -h -o 'partition %P, node %N, %c CPUs, %m MB, state %T')"
      log "logs: $LOGS/slurmctld.log, $LOGS/slurmd.log"
      return
    fi
    sleep 1
  done
  # A node left down by an earlier crash comes back with an explicit resume.
  scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
  sleep 2
  sinfo -h -o '%T' | grep -Eq '^(idle|mixed|allocated)' \
    || die "node not ready: $(sinfo -h -o '%T %E'); see $LOGS/slurmd.log and $LOGS/slurmctld.log"
  log "ready: $(sinfo -h -o 'partition %P, node %N, %c CPUs, %m MB, state %T')"
}

stop_daemon() {   # stop_daemon NAME PIDFILE
  if pid_running "$2"; then
    local pid
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    [ "${3:-}" = quiet ] || log "$1 stopped (pid $pid)"
  fi
}

stop_slurm() {
  stop_daemon slurmd "$RUN/slurmd.pid" "${1:-}"
  stop_daemon slurmctld "$RUN/slurmctld.pid" "${1:-}"
}

case "${1:-start}" in
  start)
    install_packages
    start_munge
    write_config
    start_slurm
    ;;
  stop)
    stop_slurm
    stop_daemon munged /run/munge/munged.pid
    ;;
  status)
    for d in slurmctld slurmd; do
      if pid_running "$RUN/$d.pid"; then echo "$d: running (pid $(cat "$RUN/$d.pid"))"; else echo "$d: stopped"; fi
    done
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munged: running"; else echo "munged: stopped"; fi
    command -v sinfo >/dev/null && sinfo 2>&1 || true
    ;;
  *)
    die "usage: $0 [start|stop|status]"
    ;;
esac
