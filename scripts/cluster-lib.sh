# Shared by cluster-up.sh and cluster-down.sh (sourced): which recorded PIDs are
# still the portico processes they started. Needs $config (DIR/cluster.toml) set.

# Whether PID is a live process (a zombie counts as dead: it has exited).
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Whether PID is a live portico started with `--config CONFIG` (not a reused pid).
is_ours() {
    local pid=$1 arg prev='' program script
    local -a argv
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    { mapfile -d '' argv <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    program=${argv[0]:-}
    # argv[1]: a portico run through an interpreter (a wrapper script as PORTICO_BIN).
    script=${argv[1]:-}
    [[ ${program##*/} == *portico* || ${script##*/} == *portico* ]] || return 1
    for arg in "${argv[@]}"; do
        if [[ ($prev == --config && $arg == "$config") || $arg == "--config=$config" ]]; then
            return 0
        fi
        prev=$arg
    done
    return 1
}
