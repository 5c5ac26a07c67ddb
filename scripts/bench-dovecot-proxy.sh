#!/usr/bin/env bash
# What Dovecot's own IMAP proxy adds to a login and to a NOOP, measured the way
# scripts/bench-proxy.py measures Portico's (its --external mode, which this runs):
# two Dovecot instances on loopback, plain IMAP (no TLS, plaintext LOGIN allowed):
#
#   backend   127.0.0.21   static passdb (one password for every user), static userdb,
#                          maildir in the temporary directory, owned by nobody
#   proxy     127.0.0.22   passdb static `nopassword=y proxy=y host=127.0.0.21 port=P`:
#                          the client's password goes on to the backend
#
# Both use Dovecot's defaults otherwise (a login process per connection, and so on),
# on free ports, with their base_dir, state_dir, logs and mail in a temporary directory
# that is removed at the end, when both instances are stopped.
#
#   scripts/bench-dovecot-proxy.sh [bench-proxy.py options, e.g. --logins 200 --noops 2000]
#
# Needs dovecot (Debian/Ubuntu: apt-get install dovecot-imapd) and root (Dovecot's
# master process starts its login and mail processes as other users).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
me=${0##*/}
backend_ip=127.0.0.21
proxy_ip=127.0.0.22
user=bench
password=bench-dovecot-pw

command -v dovecot >/dev/null || { echo "$me: dovecot is not installed (apt-get install dovecot-imapd)" >&2; exit 2; }
((EUID == 0)) || { echo "$me: run as root (Dovecot's master process needs it)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovecot-proxy-bench.XXXXXX")
chmod 755 "$tmp"
pids=()

stop_all() {
    local pid i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$me: dovecot (pid $pid) still runs 10 s after SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

cleanup() {
    stop_all
    rm -rf "$tmp"
}
trap cleanup EXIT

# A port free on the address $1.
free_port() {
    python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}

# write_config NAME IP PORT PASSDB_ARGS EXTRA: writes $tmp/NAME/dovecot.conf.
write_config() {
    local name=$1 ip=$2 port=$3 passdb=$4 extra=$5 dir=$tmp/$1
    mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"
    chown nobody:nogroup "$dir/mail" "$dir/home"
    cat >"$dir/dovecot.conf" <<EOF
instance_name = bench-$name
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = $ip
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$dir/mail/%u
$extra
passdb {
  driver = static
  args = $passdb
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    address = $ip
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
}

# start NAME IP PORT: runs that instance in the foreground (in the background of this
# script) and waits for its greeting.
start() {
    local name=$1 ip=$2 port=$3
    dovecot -F -c "$tmp/$name/dovecot.conf" >>"$tmp/$name/stdout.log" 2>&1 &
    pids+=("$!")
    python3 - "$ip" "$port" <<'PY' || { cat "$tmp/$name/stdout.log" "$tmp/$name/dovecot.log" >&2 || true; exit 1; }
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
            if s.recv(1024).startswith(b"* OK"):
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"dovecot on {sys.argv[1]}:{sys.argv[2]} does not answer")
    time.sleep(0.1)
PY
}

backend_port=$(free_port "$backend_ip")
proxy_port=$(free_port "$proxy_ip")
write_config backend "$backend_ip" "$backend_port" "password=$password" \
    "login_trusted_networks = $proxy_ip/32"
write_config proxy "$proxy_ip" "$proxy_port" \
    "nopassword=y proxy=y host=$backend_ip port=$backend_port" ""
start backend "$backend_ip" "$backend_port"
start proxy "$proxy_ip" "$proxy_port"
echo "$(dovecot --version | head -1): backend $backend_ip:$backend_port, proxy $proxy_ip:$proxy_port"

status=0
python3 "$repo/scripts/bench-proxy.py" \
    --external "direct=$backend_ip:$backend_port:$user:$password" \
    --external "dovecot proxy=$proxy_ip:$proxy_port:$user:$password" "$@" || status=$?

stop_all
echo "dovecot proxy log: $(grep -ci 'started proxying' "$tmp/proxy/dovecot.log" || true) sessions proxied," \
    "$(grep -c 'Login: user=' "$tmp/backend/dovecot.log" || true) logins on the backend"
for name in backend proxy; do
    if grep -Eiq 'error|fatal|panic' "$tmp/$name/dovecot.log" 2>/dev/null; then
        echo "dovecot $name log, errors:"
        grep -Ei 'error|fatal|panic' "$tmp/$name/dovecot.log" | sort | uniq -c | sort -rn | head -20
    else
        echo "dovecot $name log: no errors"
    fi
done
exit "$status"
