# shellcheck shell=bash
# Shared by the benchmark scripts that start a private one-node Portico on loopback
# (scripts/bench-vs-dovecot.sh, scripts/bench-idle-sessions.sh); sourced, not run.

# log TEXT...: a time-stamped line on standard error.
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# checkout_name REPO: the commit the figures belong to, and whether the tree had
# changes not committed (a run of uncommitted code must not pass for the commit's).
checkout_name() {
    local rev
    rev=$(git -C "$1" rev-parse --short HEAD 2>/dev/null) || { echo '?'; return; }
    git -C "$1" diff --quiet HEAD -- 2>/dev/null || rev+=" with uncommitted changes"
    echo "$rev"
}

# bench_certificate DIR: a self-signed ECDSA P-256 certificate for mail.example.com
# and 127.0.0.1, made for the run, in DIR/cert.pem and DIR/key.pem.
bench_certificate() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=mail.example.com -addext "subjectAltName=DNS:mail.example.com,IP:127.0.0.1" \
        -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# bench_node_config DATA_DIR TLS_DIR MAX_CONNECTIONS LISTENER=PORT...: on standard
# output, the head of a one-node configuration (all roles, the domain example.com, the
# certificate of bench_certificate, every connection limit at MAX_CONNECTIONS, each
# listener on 127.0.0.1); the caller appends its protocols' sections.
bench_node_config() {
    local data=$1 tls=$2 max=$3 listener
    shift 3
    cat <<CONF
cluster = "bench"
local_domains = ["example.com"]

[[site]]
name = "local"

[[node]]
name = "local"
site = "local"
roles = ["frontend", "backend", "directory"]
data_dir = "$data"

[node.listen]
CONF
    for listener in "$@"; do
        printf '%s = "127.0.0.1:%s"\n' "${listener%%=*}" "${listener#*=}"
    done
    cat <<CONF

[tls]
cert = "$tls/cert.pem"
key = "$tls/key.pem"
self_signed = false

[security]
max_connections = $max
max_connections_per_address = $max
max_connections_per_user = $max
CONF
}

# stop NAME PID [SIGNAL]: sends SIGNAL (default TERM) to a process this script started,
# waits up to 30 s, then SIGKILLs it; says so through the caller's `log`.
stop() {
    local name=$1 pid=$2 signal=${3:-TERM} i
    [[ -n $pid ]] || return 0
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) still runs 30 s after SIG$signal: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
