#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost (munge, slurmctld, slurmd) to try or test the slurm profile.
#   sudo tools/slurm/start.sh        # installs Debian's slurmctld slurmd slurm-client munge if missing
#   sudo tools/slurm/stop.sh         # stops what this script started, by PID
# State, logs, PID files and the job-completion record (jobcomp.txt) live in $OPTBENCH_SLURM_DIR
# (default /tmp/optbench-slurm). Exit status 77: this machine cannot run SLURM (not root, no apt-get).
# Not for a machine that is already part of a real cluster: it refuses to replace a foreign slurm.conf.
set -euo pipefail

STATE=${OPTBENCH_SLURM_DIR:-/tmp/optbench-slurm}
# The executor's job step strips every SLURM_* variable (SLURM_CONF included) before its inner srun,
# so the configuration must sit where every SLURM command looks by default.
CONF=/etc/slurm/slurm.conf
MARK="# written by optbench tools/slurm/start.sh"
PACKAGES="slurmctld slurmd slurm-client munge"
export PATH="/usr/sbin:/sbin:$PATH"

say() { echo "start.sh: $*" >&2; }
cannot() { say "$*"; exit 77; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(uname -s) == Linux ]] || cannot "SLURM needs Linux"
[[ $(id -u) == 0 ]] || cannot "needs root (daemons run as SlurmUser=root and $CONF is written)"

if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    say "already running (state in $STATE)"
    exit 0
fi

missing=0
for bin in munged slurmctld slurmd sbatch squeue; do command -v "$bin" >/dev/null || missing=1; done
if ((missing)); then
    command -v apt-get >/dev/null || cannot "SLURM is not installed and there is no apt-get to install $PACKAGES"
    say "installing $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postinst scripts try to start services; with no init system that fails harmlessly.
    apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; } ||
        cannot "could not install $PACKAGES with apt-get"
fi

if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script; refusing to replace it"
    exit 1
fi

host=$(hostname -s)
# slurmctld and slurmd find each other by the node's name.
getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
cpus=$(nproc)
memory_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

rm -rf "$STATE/ctld" "$STATE/spool" "$STATE/jobcomp.txt"   # a fresh controller: job ids restart at 1
mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm
cat >"$CONF" <<EOF
$MARK
# A one-node test cluster; rewritten on every start, state under $STATE.
ClusterName=optbench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups needed: processes are tracked by parent PID, tasks are not pinned.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that names no memory would otherwise hold the whole node's memory and run alone.
DefMemPerCPU=1000
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# No slurmdbd: finished jobs stay visible to squeue/scontrol for MinJobAge seconds (keep it at least
# 3x the executor's first status-check delay), and every finished job is appended to JobCompLoc.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# munge authenticates every SLURM message; reuse a munged that is already up (and leave it to its owner).
if [[ -s /run/munge/munged.pid ]] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
    rm -f "$STATE/munged.pid"
else
    mkdir -p /run/munge && chown munge:munge /run/munge
    [[ -s /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- munged
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid"
fi
munge -n | unmunge >/dev/null || { say "munge does not work"; exit 1; }

slurmctld
slurmd
for _ in $(seq 120); do
    state=$(sinfo -h -o %T 2>/dev/null || true)
    [[ $state == idle ]] && { say "one-node cluster up: node $host, $cpus CPUs, ${memory_mb} MB, partition local"; exit 0; }
    # A node left down by an earlier run returns to service on request.
    [[ $state == down* || $state == drain* ]] && scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
    sleep 0.5
done
say "the node did not become idle (state: '${state:-no answer}'); logs:"
tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
exit 1
