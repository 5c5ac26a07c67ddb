#!/usr/bin/env bash
# Stop a cluster that scripts/cluster-up.sh started in DIR, or one node of it.
#
#   scripts/cluster-down.sh [--kill] DIR [NODE]
#
# Signals exactly the processes named by DIR/pids/*.pid (or DIR/pids/NODE.pid), and only
# those that are still a portico started with `--config DIR/cluster.toml`: a pid that
# has since been reused by some other process is never signalled. SIGTERM (a clean
# shutdown), then SIGKILL to whatever still runs after PORTICO_CLUSTER_STOP_SECS
# (default 15 seconds); with --kill, SIGKILL at once (a crash, for tests). The pid files are
# removed; data, logs and certificates stay (remove DIR for those).
#
# Exit status: 0 when every node asked for is stopped (or was not running), 1 when one
# outlived SIGKILL, 2 for a usage error.
set -euo pipefail

me=${0##*/}

usage() {
    echo "usage: $me [--kill] DIR [NODE]" >&2
    exit 2
}

signal=TERM
args=()
for arg in "$@"; do
    case "$arg" in
    --kill) signal=KILL ;;
    -h | --help) usage ;;
    -*) echo "$me: unknown option $arg" >&2 && usage ;;
    *) args+=("$arg") ;;
    esac
done
if ((${#args[@]} < 1 || ${#args[@]} > 2)); then
    echo "$me: say which cluster directory (the DIR given to or printed by cluster-up.sh)" >&2
    usage
fi
[[ -d ${args[0]} ]] || { echo "$me: no directory ${args[0]}" >&2 && exit 2; }
dir=$(cd "${args[0]}" && pwd -P)
only=${args[1]:-}
config=$dir/cluster.toml
stop_secs=${PORTICO_CLUSTER_STOP_SECS:-15}
[[ $stop_secs =~ ^[0-9]{1,6}$ ]] || { echo "$me: PORTICO_CLUSTER_STOP_SECS must be a number" >&2 && exit 2; }
stop_secs=$((10#$stop_secs))

# shellcheck source=scripts/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

if [[ -n $only ]]; then
    [[ $only =~ ^[A-Za-z0-9._-]+$ ]] || { echo "$me: bad node name $only" >&2 && exit 2; }
    pid_files=("$dir/pids/$only.pid")
    if [[ ! -f ${pid_files[0]} ]]; then
        echo "$only: not running (no pid file in $dir/pids)"
        exit 0
    fi
else
    shopt -s nullglob
    pid_files=("$dir/pids/"*.pid)
    shopt -u nullglob
    if ((${#pid_files[@]} == 0)); then
        echo "nothing to stop: no pid files in $dir/pids"
        exit 0
    fi
fi

# Signal every node first, then wait for all of them together.
names=()
pids=()
for pid_file in "${pid_files[@]}"; do
    name=$(basename "$pid_file" .pid)
    pid=$(cat "$pid_file" 2>/dev/null || true)
    if [[ -n $pid ]] && is_ours "$pid"; then
        kill "-$signal" "$pid" 2>/dev/null || true
        names+=("$name")
        pids+=("$pid")
    else
        echo "$name: not running (pid ${pid:-?} is gone or no longer this cluster's)"
        rm -f "$pid_file"
    fi
done

# Whether any signalled node still runs.
any_left() {
    local i
    for i in "${!pids[@]}"; do
        is_ours "${pids[$i]}" && return 0
    done
    return 1
}

for ((tick = 0; tick < stop_secs * 10; tick++)); do
    any_left || break
    sleep 0.1
done

status=0
for i in "${!pids[@]}"; do
    name=${names[$i]}
    pid=${pids[$i]}
    how=stopped
    [[ $signal == KILL ]] && how=killed
    if is_ours "$pid"; then
        echo "$name: still running ${stop_secs}s after SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        how=killed
        for _ in $(seq 50); do
            is_ours "$pid" || break
            sleep 0.1
        done
    fi
    if is_ours "$pid"; then
        echo "$name: pid $pid outlived SIGKILL; pid file kept" >&2
        status=1
        continue
    fi
    rm -f "$dir/pids/$name.pid"
    echo "$name: $how (pid $pid)"
done
exit "$status"
