#!/usr/bin/env bash
# Start the example cluster of the repository's cluster.toml (two sites, four nodes on
# 127.0.0.11 to .14) in the background, each node a `portico serve` process, and wait
# until it is ready.
#
#   scripts/cluster-up.sh [DIR]      DIR defaults to a new `mktemp -d` directory
#   scripts/cluster-down.sh DIR      stops it again (see that script)
#
# DIR gets:
#   cluster.toml      the template with every data_dir made DIR/data/NAME and pki DIR/pki
#                     (absolute paths); kept as it is when DIR already has one, so a
#                     second run on DIR uses the same ports
#   pki/              the cluster CA and node certificates (`portico cluster init`), made
#                     when pki/ca.pem is missing
#   data/NAME/        each node's data directory
#   logs/NAME.log     each node's stdout and stderr (appended to across restarts)
#   pids/NAME.pid     each node's process id
#
# On a DIR where some nodes still run, only the others are started (a node whose pid
# file names a live portico of this DIR is left alone): `cluster-down.sh DIR d2` then
# `cluster-up.sh DIR` restarts d2.
#
# Ready means: every node's log says `node ready` (logged at info level: a RUST_LOG that
# hides it makes the wait fail), then `portico --node FIRST cluster status` (FIRST: the
# first node of the file, d1) exits 0 and prints a line `leader: NAME` with a NAME other
# than `none`. When a node dies or the wait expires, the last 30 lines of each log are
# printed, the nodes are left running for inspection and the exit status is 1.
#
# Environment, all optional:
#   PORTICO_BIN                 the binary (default: target/release/portico of this
#                               repository, built with `cargo build --release` if missing)
#   PORTICO_CLUSTER_TEMPLATE    the configuration to copy (default: the repo's cluster.toml)
#   PORTICO_CLUSTER_PORT_BASE   when set to a number B, each address's port is replaced
#                               by B plus its offset, so that several clusters (tests) do
#                               not clash: pop3 1110 -> B, pop3s 1995 -> B+1,
#                               imap 1143 -> B+2, imaps 1993 -> B+3, smtp 1025 -> B+4,
#                               submission 1587 -> B+5, submissions 1465 -> B+6,
#                               internode 7000 -> B+7 (other ports are kept). Only when
#                               DIR/cluster.toml is made, not when it is reused.
#   PORTICO_CLUSTER_WAIT_SECS   how long to wait for readiness in all (default 60)
#   PORTICO_CLUSTER_NO_STATUS=1 wait only for `node ready`, not for a leader
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
me=${0##*/}

die() {
    echo "$me: $*" >&2
    exit 2
}

usage() {
    echo "usage: $me [DIR]   (see the comments at the top of $0)" >&2
    exit 2
}

case "${1:-}" in
-h | --help) usage ;;
-*) usage ;;
esac
[[ $# -le 1 ]] || usage

template=${PORTICO_CLUSTER_TEMPLATE:-$repo/cluster.toml}
[[ -f $template ]] || die "no configuration template at $template"
wait_secs=${PORTICO_CLUSTER_WAIT_SECS:-60}
[[ $wait_secs =~ ^[0-9]{1,6}$ ]] || die "PORTICO_CLUSTER_WAIT_SECS must be a number of seconds"
wait_secs=$((10#$wait_secs))
port_base=${PORTICO_CLUSTER_PORT_BASE:-}
if [[ -n $port_base ]]; then
    if ! [[ $port_base =~ ^[0-9]{1,5}$ ]] || ((10#$port_base < 1 || 10#$port_base > 65528)); then
        die "PORTICO_CLUSTER_PORT_BASE must be a port number from 1 to 65528"
    fi
fi

if [[ -n ${PORTICO_BIN:-} ]]; then
    bin=$PORTICO_BIN
    [[ -x $bin ]] || die "PORTICO_BIN=$bin is not an executable file"
else
    bin=$repo/target/release/portico
    if [[ ! -x $bin ]]; then
        echo "$me: $bin is missing: building it" >&2
        (cd "$repo" && cargo build --release)
    fi
fi

if [[ $# -eq 1 ]]; then
    mkdir -p "$1"
    dir=$(cd "$1" && pwd -P)
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/portico-cluster.XXXXXX")
    dir=$(cd "$dir" && pwd -P)
fi
config=$dir/cluster.toml
mkdir -p "$dir/logs" "$dir/pids" "$dir/data"

# Line by line, so that comments and layout stay: `write TEMPLATE OUT DIR BASE` writes
# the copy described above; `names CONFIG` prints the [[node]] names, one a line.
config_tool() {
    python3 - "$@" <<'PY'
import json
import os
import re
import sys

# PORTICO_CLUSTER_PORT_BASE offsets, by the example's port: the listeners, then internode.
OFFSETS = {1110: 0, 1995: 1, 1143: 2, 1993: 3, 1025: 4, 1587: 5, 1465: 6, 7000: 7}
ADDRESS_KEYS = {"internode", "pop3", "pop3s", "imap", "imaps", "smtp", "submission",
                "submissions"}
HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
KEY_VALUE = re.compile(r"^(\s*)([A-Za-z0-9_.-]+)(\s*=\s*)(\"[^\"]*\"|'[^']*')(.*)$", re.S)


def fail(message):
    sys.exit(f"cluster-up: {message}")


def scan(lines):
    """Each line's table and the index of the [[node]] it belongs to; the nodes' names."""
    table, names, where = None, [], []
    for line in lines:
        header = HEADER.match(line)
        if header:
            table = header.group(2)
            if header.group(1) == "[[" and table == "node":
                names.append(None)
        in_node = bool(names) and (table == "node" or (table or "").startswith("node."))
        node = len(names) - 1 if in_node else None
        kv = None if header else KEY_VALUE.match(line)
        if kv and table == "node" and kv.group(2) == "name":
            names[node] = kv.group(4)[1:-1]
        where.append((table, node, kv))
    if not names or None in names:
        fail("every [[node]] needs a name, and there must be one")
    return names, where


def toml_string(text):
    return json.dumps(text, ensure_ascii=False)


def write(template, out, root, base):
    with open(template, encoding="utf-8") as f:
        lines = f.readlines()
    names, where = scan(lines)
    data_dirs = [0] * len(names)
    result = []
    for line, (table, node, kv) in zip(lines, where):
        if kv:
            indent, key, equals, value, rest = kv.groups()
            if table is None and key == "pki":
                value = toml_string(os.path.join(root, "pki"))
            elif table == "node" and key == "data_dir":
                value = toml_string(os.path.join(root, "data", names[node]))
                data_dirs[node] += 1
            elif base is not None and node is not None and key.split(".")[-1] in ADDRESS_KEYS:
                host, _, port = value[1:-1].rpartition(":")
                if port.isdigit() and int(port) in OFFSETS:
                    value = toml_string(f"{host}:{base + OFFSETS[int(port)]}")
                else:
                    print(f"cluster-up: kept {key} = {value} of node {names[node]}: "
                          "not one of the example's ports", file=sys.stderr)
            line = indent + key + equals + value + rest
        result.append(line)
    for name, count in zip(names, data_dirs):
        if count != 1:
            fail(f"node {name} needs exactly one data_dir line, found {count}")
    partial = out + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.writelines(result)
    os.replace(partial, out)


mode = sys.argv[1]
if mode == "write":
    template, out, root, base = sys.argv[2:6]
    write(template, out, root, int(base) if base else None)
elif mode == "names":
    with open(sys.argv[2], encoding="utf-8") as f:
        print("\n".join(scan(f.readlines())[0]))
else:
    fail(f"unknown mode {mode}")
PY
}

if [[ -f $config ]]; then
    echo "reusing $config"
    [[ -z $port_base ]] || echo "$me: PORTICO_CLUSTER_PORT_BASE is ignored: $config exists" >&2
else
    config_tool write "$template" "$config" "$dir" "$port_base"
    echo "wrote $config from $template"
fi
mapfile -t nodes < <(config_tool names "$config")
((${#nodes[@]} > 0)) || die "no nodes in $config"

if [[ ! -f $dir/pki/ca.pem ]]; then
    if ! "$bin" --config "$config" cluster init --out "$dir/pki" >"$dir/logs/cluster-init.log" 2>&1; then
        cat "$dir/logs/cluster-init.log" >&2
        die "portico cluster init failed"
    fi
    echo "made the cluster's certificates in $dir/pki"
fi

# shellcheck source=scripts/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

detach=()
if command -v setsid >/dev/null; then
    detach=(setsid)
fi
declare -A pid_of log_from
for name in "${nodes[@]}"; do
    pid_file=$dir/pids/$name.pid
    log=$dir/logs/$name.log
    pid=$(cat "$pid_file" 2>/dev/null || true)
    if [[ -n $pid ]] && is_ours "$pid"; then
        echo "$name: already running (pid $pid)"
        pid_of[$name]=$pid
        log_from[$name]=0
        continue
    fi
    rm -f "$pid_file"
    # Readiness is looked for only in what this run of the node writes.
    log_from[$name]=$(stat -c %s "$log" 2>/dev/null || echo 0)
    echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) $me: starting $name" >>"$log"
    # A session of its own (setsid, which execs: $! is portico's pid), so that a Ctrl-C
    # meant for this script does not reach the nodes.
    "${detach[@]}" "$bin" --config "$config" --node "$name" serve </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
    pid_of[$name]=$pid
    echo "$name: started (pid $pid)"
done

give_up() {
    local name
    echo >&2
    echo "$me: $*" >&2
    for name in "${nodes[@]}"; do
        echo "=== last 30 lines of $dir/logs/$name.log" >&2
        tail -n 30 "$dir/logs/$name.log" >&2 || true
    done
    echo "$me: the nodes still running are left for inspection; stop them with" >&2
    echo "  $repo/scripts/cluster-down.sh $dir" >&2
    exit 1
}

# Gives up when a node has exited.
check_alive() {
    local name
    for name in "${nodes[@]}"; do
        alive "${pid_of[$name]}" || give_up "node $name (pid ${pid_of[$name]}) has exited"
    done
}

deadline=$((SECONDS + wait_secs))
waiting=("${nodes[@]}")
while ((${#waiting[@]} > 0)); do
    check_alive
    still=()
    for name in "${waiting[@]}"; do
        # Not `tail | grep -q`: grep's early exit would fail the pipe (pipefail).
        if ! grep -q 'node ready' < <(tail -c +"$((${log_from[$name]} + 1))" "$dir/logs/$name.log"); then
            still+=("$name")
        fi
    done
    waiting=("${still[@]}")
    ((${#waiting[@]} == 0)) && break
    ((SECONDS < deadline)) || give_up "not ready after ${wait_secs}s: ${waiting[*]}"
    sleep 0.2
done
echo "every node is ready: ${nodes[*]}"

leader=
if [[ ${PORTICO_CLUSTER_NO_STATUS:-} != 1 ]]; then
    status=
    while :; do
        check_alive
        left=$((deadline - SECONDS))
        ((left > 0)) || give_up "no leader after ${wait_secs}s; last \`cluster status\`:
$status"
        # Bounded, so a status call that hangs cannot outlast the wait.
        if status=$(timeout "$((left < 10 ? left : 10))" \
            "$bin" --config "$config" --node "${nodes[0]}" cluster status 2>&1); then
            leader=$(sed -n 's/^leader: \([^[:space:]]\{1,\}\).*/\1/p' <<<"$status")
            leader=${leader%%$'\n'*}
            [[ -n $leader && $leader != none ]] && break
        fi
        sleep 0.5
    done
    echo "directory leader: $leader"
fi

example=${nodes[0]}
if [[ " ${nodes[*]} " == *" s1 "* ]]; then
    example=s1
fi
cat <<EOF

The cluster is up.
  dir:    $dir
  config: $config
  logs:   $dir/logs/NAME.log
  try:    $bin --config $config --node $example user add alice@example.com
  stop:   $repo/scripts/cluster-down.sh $dir
EOF
