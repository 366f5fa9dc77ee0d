#!/usr/bin/env bash
# A single-node Slurm for the engine tests (tests/engines/test_slurm.py), as root, on Debian.
# Idempotent: installs slurmctld, slurmd, slurm-client and munge if missing, writes slurm.conf
# (the node line from `slurmd -C`, one fake GPU whose device file is /dev/null) unless one is
# there, starts whatever of munged, slurmctld and slurmd is not running, and waits for the node
# to be idle. Each daemon it starts is written as "NAME PID" to $LEGATO_SLURM_STARTED (if set),
# so the caller can stop exactly those, by PID. See docs/engines.md and infra-recipes section 2.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
started="${LEGATO_SLURM_STARTED:-/dev/null}"

if [ "$(id -u)" != 0 ]; then echo "setup-slurm.sh: must run as root" >&2; exit 2; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }
fi

install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  echo "munged $(cat /run/munge/munged.pid)" >> "$started"
fi

H=$(hostname -s)
CONF=/etc/slurm/slurm.conf
if ! grep -q '^# legato-ci' "$CONF" 2>/dev/null; then
  NODE=$(slurmd -C | head -1 | sed 's/ UpTime=.*//; s/^NodeName=[^ ]* //')
  install -d /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
  cat > "$CONF" <<CONF
# legato-ci: written by .ci/setup-slurm.sh
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
# Finished jobs stay visible to squeue/scontrol for an hour (no slurmdbd here).
MinJobAge=3600
# Time limits are enforced promptly in tests: SIGTERM, then SIGKILL 5 s later.
KillWait=5
OverTimeLimit=0
SchedulerParameters=sched_interval=1
GresTypes=gpu
NodeName=$H NodeAddr=127.0.0.1 $NODE Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\n' "$H" > /etc/slurm/gres.conf
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/slurmctld.pid; then
  slurmctld
  for _ in $(seq 50); do alive /run/slurmctld.pid && break; sleep 0.1; done
  echo "slurmctld $(cat /run/slurmctld.pid)" >> "$started"
fi
if ! alive /run/slurmd.pid; then
  slurmd
  for _ in $(seq 50); do alive /run/slurmd.pid && break; sleep 0.1; done
  echo "slurmd $(cat /run/slurmd.pid)" >> "$started"
fi

for i in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc) echo "slurm ready: node $H $state"; exit 0 ;;
    drain*|drng|down*|inval*) scontrol update nodename="$H" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "setup-slurm.sh: the node did not become idle; see /var/log/slurm/" >&2
sinfo -R >&2 || true
exit 1
