#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by tools/slurm/start.sh: its jobs, then slurmd, slurmctld and
# (only if start.sh started it) munged, each by the PID file in $OPTBENCH_SLURM_DIR (default /tmp/optbench-slurm).
set -euo pipefail

STATE=${OPTBENCH_SLURM_DIR:-/tmp/optbench-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by optbench tools/slurm/start.sh"
export PATH="/usr/sbin:/sbin:$PATH"

stop_pid_file() {
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$file"
}

# Job processes are not children of slurmd once started: cancel the test cluster's jobs while it answers.
if [[ -s $STATE/slurmctld.pid ]] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 50); do [[ -z $(squeue -h -t R,CG -o %i 2>/dev/null) ]] && break; sleep 0.2; done
    fi
fi

stop_pid_file "$STATE/slurmd.pid"
stop_pid_file "$STATE/slurmctld.pid"
stop_pid_file "$STATE/munged.pid"
# Remove the configuration start.sh wrote (it writes it afresh on every start). Left in place it names
# a controller that no longer answers, and every `snakemake` start, whatever its executor, then
# waits ~10 s: importing snakemake-executor-plugin-slurm runs `scontrol show config` whenever sinfo
# is on PATH (the help text of its status-command setting), and scontrol retries the dead controller
# for MessageTimeout (10 s). Without a configuration scontrol fails at once.
if [[ -e $CONF ]] && grep -qxF "$MARK" "$CONF"; then
    rm -f "$CONF"
fi
echo "stop.sh: stopped (logs and jobcomp.txt kept in $STATE)" >&2
