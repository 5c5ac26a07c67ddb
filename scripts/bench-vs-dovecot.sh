#!/usr/bin/env bash
# Portico against Dovecot, scenario by scenario, on this machine (issue 15).
#
#   scripts/bench-vs-dovecot.sh [--quick] [--duration SECS] [--runs N] [--accounts N]
#                               [--idle-sessions N] [--dovecot-scheme ssha256|argon2id]
#                               [--dovecot-reuse N] [--scenarios LIST] [--out DIR] [--keep]
#                               [--sync-clients N] [--mix-clients N] [--submit-clients N]
#                               [--submit-pipelining]
#
# Both servers run on loopback only, on ports picked free at run time, each with a
# configuration written for the run under a temporary work directory (removed at the
# end unless --keep), with the same self-signed certificate (ECDSA P-256, made for the
# run), STARTTLS as the clients' mode, plaintext logins allowed by both (so each is
# measured the same way), and the same accounts user1..userN@example.com with the same
# password, filled with the same messages (tests/corpus/*.eml).
#
#   Portico  release build (${CARGO_TARGET_DIR:-target}/release; built if missing),
#            `portico serve --config` of a one-node configuration with its defaults
#            (full-text index on, 300 s cache of verified passwords) except: plaintext
#            logins allowed, connection limits raised for the idle sessions. Accounts
#            with `portico user add`, mail with `portico deliver` (one per message).
#   Dovecot  Debian's packages (installed with apt-get if missing; a system Dovecot is
#            never touched: this one is `dovecot -F -c FILE` with its own base_dir,
#            state_dir and log), run as root with mail owned by nobody: passwd-file
#            users, static userdb, Maildir under the work directory, the same six
#            folders as Portico's, login services in Dovecot's documented
#            "high-performance mode" (service_count = 0, process_min_avail = nproc),
#            imap and pop3 processes that each serve up to 100 sessions in turn (one
#            at a time) with nproc kept ready, as its performance advice allows
#            (--dovecot-reuse 1: its default, a new process per session, about 4x
#            fewer logins/s here), no auth cache. Its
#            submission service relays to a Python SMTP sink that accepts and discards
#            (scripts/bench-vs-dovecot.py sink): Dovecot does not store what is
#            submitted, Portico stores each message durably in the recipient's
#            mailbox, so smtp-submit compares unequal work and says so. Mail is put
#            in over Dovecot's LMTP socket (indexed at delivery, like `portico
#            deliver`), one message per transaction.
#
# Passwords: Portico keeps argon2id hashes and remembers a verified password for
# 300 s; Dovecot re-verifies the hash at every login even with its auth cache. So that
# logins measure the servers and not the hash, Dovecot's passwd-file holds {SSHA256}
# (one SHA-256 per login) by default; --dovecot-scheme argon2id gives it Portico's own
# argon2id parameters (m=19456 KiB, t=2, p=1) instead, verified at every login.
#
# Scenarios (portico-load, crates/load), in this order, each run against Portico and
# Dovecot in turns (P D, D P, P D, ...), --runs times each (default 3; pop3-drain,
# whose runs last well under a second, 2 x runs - 1), the median kept; every run lasts
# --duration (default 10 s, --quick 3 s; imap-idle at least 10 s). Mailboxes are
# recreated and refilled before a run that needs them untouched.
#
#   login-one-imap    one client: connect, STARTTLS, LOGIN, LOGOUT, again (each step's
#                     latency on a server that is not saturated)
#   login-storm-imap  20 clients: the same at full speed
#   login-storm-pop3  N clients (one account each: POP3 locks the maildrop)
#   imap-idle         --idle-sessions (default 500) sessions in IDLE, opened over 2 s;
#                     memory per session = increase of the server's whole process
#                     tree (the process and every descendant: Dovecot's master,
#                     config, log, anvil, auth, login and the imap process of each
#                     session), PSS (shared pages split among their sharers; the
#                     headline figure) and summed RSS, read from /proc before the
#                     sessions open and once all are established plus 2 s, divided
#                     by the established sessions
#   pop3-keep         N clients, one account each: login, UIDL, RETR all, QUIT
#   imap-sync         --sync-clients (default 10) clients: LOGIN, LIST, SELECT, UID
#                     FETCH headers, bodies, STORE, APPEND to Sent, LOGOUT, again
#                     (refilled before each run)
#   imap-mix          --mix-clients (default 100) clients on N accounts, a weighted mix
#                     of commands, full speed, its short IDLEs 100 ms (refilled before
#                     each run). The IDLEs (3 in 80 commands) hold a client 100 ms
#                     whatever the server does, so each client sends at most about 265
#                     commands/s: 20 clients (the default until 2026-12) capped the rate
#                     near 5,300 commands/s and measured the IDLEs, not the server
#   imap-mix-busy     the same clients and mix without its IDLEs (--idle-weight 0):
#                     the rest of the mix at full speed
#   pop3-drain        N clients drain their own full mailbox once: RETR and DELE all,
#                     QUIT (bounded by --ops, so the run ends when the mailboxes are
#                     empty; refilled before each run). It lasts well under a second
#                     here (N x 119 messages), so its rate is rough; clients done
#                     first start a few empty sessions meanwhile, so the commit of
#                     the deletions shows in QUIT's max, not its median
#   smtp-submit       --submit-clients (default 8) clients, AUTH PLAIN, 10 messages
#                     per connection to the N accounts (Portico: stored; Dovecot:
#                     relayed to the sink). One command per round trip, unless
#                     --submit-pipelining: then MAIL, RCPT and DATA go as one group
#                     (RFC 2920), which both servers offer
#
# Before each run the script waits (up to 120 s) until the server's process tree is
# nearly idle (under 3 % of a core over a second), so what the refill or the previous
# run left to do (Portico's full-text indexing, Dovecot's exiting processes) is not
# counted in, or competing with, the next run.
#
# Besides rates and latencies, each run reads the CPU time the server used (its whole
# process tree, including finished Dovecot session processes, until the tree is quiet
# again, at least 2 s after the run, so background work such as Portico's indexing
# counts): "server CPU ms per" login,
# message, sync or command is the cost figure to compare; the latencies are measured
# with every client at full speed, so they include queueing on the 2-core-class
# machines this runs on, and a faster server also makes the load tool busier.
#
# Output: the table (Portico, Dovecot, Portico/Dovecot, which is better) on standard
# output, and in --out DIR (default ./bench-vs-dovecot-DATE): summary.md (also every
# command's median rate and latency side by side), summary.json, and each run's
# portico-load JSON and text. Everything started here (both servers, the sink) is
# stopped on exit, however the script ends. Needs root (Dovecot's master starts its
# processes as other users), python3, openssl.
#
# Dovecot watches a mailbox for IDLE with one inotify instance per session process; past
# /proc/sys/fs/inotify/max_user_instances (often 128) for its mail user it polls
# instead. The script leaves that system setting alone and says so in the notes.
#
# On a Debian machine with systemd, installing the packages also starts (and enables)
# Debian's own dovecot.service: this script neither starts nor stops that one; its
# instance uses other ports and directories. Install the packages beforehand and stop
# the service yourself if you do not want it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
me=${0##*/}
helper=$repo/scripts/bench-vs-dovecot.py
# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
corpus=$repo/tests/corpus
command_line="scripts/$me${*:+ $*}"

duration=10
runs=3
accounts=10
sync_clients=10
mix_clients=100
submit_clients=8
submit_pipelining=()
idle_sessions=500
scheme=ssha256
reuse=100
keep=0
out=""
all_scenarios="login-one-imap login-storm-imap login-storm-pop3 imap-idle pop3-keep imap-sync imap-mix imap-mix-busy pop3-drain smtp-submit"
scenarios=$all_scenarios

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
    case $1 in
    --quick) duration=3 ;;
    --duration) duration=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    --accounts) accounts=${2:?}; shift ;;
    --idle-sessions) idle_sessions=${2:?}; shift ;;
    --dovecot-scheme) scheme=${2:?}; shift ;;
    --dovecot-reuse) reuse=${2:?}; shift ;;
    --scenarios) scenarios=${2//,/ }; shift ;;
    --sync-clients) sync_clients=${2:?}; shift ;;
    --mix-clients) mix_clients=${2:?}; shift ;;
    --submit-clients) submit_clients=${2:?}; shift ;;
    --submit-pipelining) submit_pipelining=(--pipelining) ;;
    --out) out=${2:?}; shift ;;
    --keep) keep=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$me: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for s in $scenarios; do
    [[ " $all_scenarios " == *" $s "* ]] || { echo "$me: unknown scenario $s (one of: $all_scenarios)" >&2; exit 2; }
done
[[ $reuse =~ ^[0-9]+$ ]] || { echo "$me: --dovecot-reuse takes a number" >&2; exit 2; }
[[ $scheme == ssha256 || $scheme == argon2id ]] || { echo "$me: --dovecot-scheme is ssha256 or argon2id" >&2; exit 2; }
((EUID == 0)) || { echo "$me: run as root (Dovecot's master process needs it)" >&2; exit 2; }
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "$me: $tool is needed" >&2; exit 2; }
done

# ------------------------------------------------------------------ what we run

if ! command -v dovecot >/dev/null || [[ ! -x /usr/lib/dovecot/submission || ! -x /usr/lib/dovecot/pop3 || ! -x /usr/lib/dovecot/lmtp ]]; then
    log "installing Dovecot from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        dovecot-imapd dovecot-pop3d dovecot-submissiond dovecot-lmtpd >/dev/null
fi

bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
portico=$bin_dir/portico
load=$bin_dir/portico-load
if [[ ! -x $portico || ! -x $load ]]; then
    log "building portico and portico-load (release)"
    (cd "$repo" && nice -n 19 cargo build --release -q -p portico -p portico-load)
fi

out=${out:-$PWD/bench-vs-dovecot-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
results=$out/runs
mkdir -p "$results"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-dovecot.XXXXXX")
chmod 755 "$work" # Dovecot's login and mail users must reach their directories below
password=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export BENCH_PASSWORD=$password PORTICO_LOAD_PASSWORD=$password

# ------------------------------------------------------------------ stopping

portico_pid=""
dovecot_pid=""
sink_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop portico "$portico_pid"
    stop dovecot "$dovecot_pid"
    stop sink "$sink_pid"
    portico_pid="" dovecot_pid="" sink_pid=""
    if ((keep)); then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

py() { python3 "$helper" "$@"; }

# ------------------------------------------------------------------ set-up

read -r p_imap p_pop3 p_sub d_imap d_pop3 d_sub sink_port < <(py free-ports 7)
declare -A port=(
    [portico.imap]=$p_imap [portico.pop3]=$p_pop3 [portico.submission]=$p_sub
    [dovecot.imap]=$d_imap [dovecot.pop3]=$d_pop3 [dovecot.submission]=$d_sub
)

mkdir -p "$work/tls"
bench_certificate "$work/tls"

users=()
for ((i = 1; i <= accounts; i++)); do users+=("user$i@example.com"); done
messages=("$corpus"/*.eml)
corpus_count=${#messages[@]}

# Portico ---------------------------------------------------------------------------

pw=$work/portico
mkdir -p "$pw/data"
pconf=$pw/portico.toml
{
    echo "# Written by $me for one benchmark run."
    bench_node_config "$pw/data" "$work/tls" 100000 pop3="$p_pop3" imap="$p_imap" submission="$p_sub"
    cat <<EOF

[pop3]
enabled = true
login = "plaintext"

[imap]
enabled = true
login = "plaintext"

[smtp]
enabled = true
hostname = "mail.example.com"
login = "plaintext"
EOF
} >"$pconf"

portico_cli() { "$portico" --config "$pconf" "$@"; }

log "starting Portico on 127.0.0.1: imap $p_imap, pop3 $p_pop3, submission $p_sub"
"$portico" --config "$pconf" serve >"$pw/portico.log" 2>&1 &
portico_pid=$!
py wait-banner --port "$p_imap" || { tail -20 "$pw/portico.log" >&2; exit 1; }

# Dovecot ---------------------------------------------------------------------------

dv=$work/dovecot
mkdir -p "$dv/run" "$dv/state" "$dv/home"
chown nobody:nogroup "$dv/home"
cores=$(nproc)
login_clients=$((idle_sessions + 1000))
cat >"$dv/dovecot.conf" <<EOF
# Written by $me for one benchmark run; nothing else reads it.
instance_name = bench-vs-dovecot-$$
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/dovecot.log
protocols = imap pop3 submission lmtp
listen = 127.0.0.1
hostname = mail.example.com
postmaster_address = postmaster@example.com

ssl = yes
ssl_cert = <$work/tls/cert.pem
ssl_key = <$work/tls/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login

passdb {
  driver = passwd-file
  args = $dv/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$dv/home/%u
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox "Deleted Items" {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox "Junk Email" {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

submission_relay_host = 127.0.0.1
submission_relay_port = $sink_port
submission_relay_ssl = no

protocol imap {
  mail_max_userip_connections = 100000
}
protocol pop3 {
  mail_max_userip_connections = 100000
}

# Dovecot's "high-performance mode" for the login services.
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $d_imap
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = $cores
  client_limit = $login_clients
  vsz_limit = 1G
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $d_pop3
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = $cores
  client_limit = $login_clients
  vsz_limit = 1G
}
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = $d_sub
  }
  service_count = 0
  process_min_avail = $cores
  client_limit = $login_clients
  vsz_limit = 1G
}
service imap {
  process_limit = $login_clients
  service_count = $reuse
  process_min_avail = $((reuse != 1 ? cores : 0))
  # Processes left idle by a run exit soon, so that imap-idle measures from a tree
  # without them (they would serve its sessions without growing it).
  idle_kill = 5 secs
}
service pop3 {
  process_limit = 1000
  service_count = $reuse
  process_min_avail = $((reuse != 1 ? cores : 0))
  # Processes left idle by a run exit soon, so that imap-idle measures from a tree
  # without them (they would serve its sessions without growing it).
  idle_kill = 5 secs
}
service submission {
  process_limit = 1000
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
service anvil {
  client_limit = $((login_clients * 3))
}
service auth {
  client_limit = $((login_clients * 3))
}
service stats {
  client_limit = $((login_clients * 3))
}
EOF
py passwd --scheme "$scheme" --user 'user%d@example.com' --accounts "$accounts" --out "$dv/users"

log "starting the SMTP sink on 127.0.0.1:$sink_port"
python3 "$helper" sink --port "$sink_port" >"$work/sink.log" 2>&1 &
sink_pid=$!
py wait-banner --port "$sink_port" --expect 220

log "starting $(dovecot --version | cut -d' ' -f1) on 127.0.0.1: imap $d_imap, pop3 $d_pop3, submission $d_sub"
dovecot -F -c "$dv/dovecot.conf" >"$dv/stdout.log" 2>&1 &
dovecot_pid=$!
py wait-banner --port "$d_imap" || { cat "$dv/stdout.log" "$dv/dovecot.log" >&2 || true; exit 1; }

# ------------------------------------------------------------------ mailboxes

# reset SERVER: every account recreated with only the corpus in its INBOX.
reset() {
    local addr f
    case $1 in
    portico)
        for addr in "${users[@]}"; do
            portico_cli user del "$addr" >/dev/null 2>&1 || true
            printf '%s\n' "$password" | portico_cli user add "$addr" --password-stdin >/dev/null
            for f in "${messages[@]}"; do
                portico_cli deliver "$addr" <"$f" >/dev/null
            done
        done
        ;;
    dovecot)
        for addr in "${users[@]}"; do rm -rf "${dv:?}/home/$addr"; done
        py lmtp-fill --socket "$dv/run/lmtp" --corpus "$corpus" "${users[@]}"
        ;;
    esac
    py warm --port "${port[$1.imap]}" "${users[@]}"
    pristine[$1]=1
}

declare -A pristine
for server in portico dovecot; do
    started=$SECONDS
    reset "$server"
    log "$server: $accounts accounts with $corpus_count messages each ($((SECONDS - started)) s)"
done

# The size of Dovecot's tree at rest, which imap-idle waits to get back to.
dovecot_rest=$(py treemem "$dovecot_pid" | python3 -c 'import json, sys; print(json.load(sys.stdin)["processes"])')

# ------------------------------------------------------------------ runs

# The scenarios that change the mailboxes, and those that need them as filled.
changes_mail=" imap-sync imap-mix imap-mix-busy pop3-drain smtp-submit "
needs_pristine=" imap-sync imap-mix imap-mix-busy pop3-drain pop3-keep imap-idle "
busy_runs=0
total_runs=0

# run_one SCENARIO SERVER RUN
run_one() {
    local scenario=$1 server=$2 run=$3 name
    name=$results/${scenario}__${server}__$run
    if [[ $needs_pristine == *" $scenario "* ]] && ((!pristine[$server])); then
        reset "$server"
    fi
    local pid=$portico_pid
    [[ $server == dovecot ]] && pid=$dovecot_pid
    local run_secs=$duration
    [[ $scenario == imap-idle ]] && run_secs=$((duration > 10 ? duration : 10))
    local args=(--duration "${run_secs}s" --accounts "$accounts" --quiet --tolerate-errors
        --json "$name.load.json")
    case $scenario in
    login-one-imap) args=(login-storm --protocol imap --port "${port[$server.imap]}" --clients 1 "${args[@]}") ;;
    login-storm-imap) args=(login-storm --protocol imap --port "${port[$server.imap]}" --clients 20 "${args[@]}") ;;
    login-storm-pop3) args=(login-storm --protocol pop3 --port "${port[$server.pop3]}" --clients "$accounts" "${args[@]}") ;;
    pop3-keep) args=(pop3-drain --keep --port "${port[$server.pop3]}" --clients "$accounts" "${args[@]}") ;;
    pop3-drain)
        # One session per client drains it all: connect, USER, PASS, UIDL, RETR and
        # DELE each message, QUIT.
        args=(pop3-drain --port "${port[$server.pop3]}" --clients "$accounts"
            --ops $((accounts * (2 * corpus_count + 5))) "${args[@]}")
        ;;
    imap-sync) args=(imap-sync --port "${port[$server.imap]}" --clients "$sync_clients" "${args[@]}") ;;
    imap-mix) args=(imap-mix --port "${port[$server.imap]}" --clients "$mix_clients" --max-idle 100ms "${args[@]}") ;;
    imap-mix-busy) args=(imap-mix --port "${port[$server.imap]}" --clients "$mix_clients" --idle-weight 0 "${args[@]}") ;;
    smtp-submit)
        args=(smtp-submit --port "${port[$server.submission]}" --clients "$submit_clients" --per-connection 10
            --to 'user%d@example.com' --recipients "$accounts" "${submit_pipelining[@]}" "${args[@]}")
        ;;
    imap-idle)
        args=(imap-idle --port "${port[$server.imap]}" --sessions "$idle_sessions" --ramp-up 2s "${args[@]}")
        [[ $server == portico ]] && args+=(--pid "$portico_pid")
        ;;
    esac
    if pgrep -x rustc >/dev/null || pgrep -x cc1plus >/dev/null; then
        busy_runs=$((busy_runs + 1))
        log "note: a compiler is running during this run"
    fi
    total_runs=$((total_runs + 1))
    log "$scenario: $server, run $run"
    if [[ $scenario == imap-idle && $server == dovecot ]]; then
        py settle --pid "$pid" --processes "$dovecot_rest" --timeout 60 ||
            log "  Dovecot's tree has not shrunk back to $dovecot_rest processes"
    fi
    # Work left by the refill or the last run (Portico indexing the refilled mail for
    # full-text search, Dovecot's processes winding down) is not this run's.
    py quiet --pid "$pid" || log "  $server is still busy after 120 s; measuring anyway"
    local cpu_before
    cpu_before=$(py cpu "$pid")
    if [[ $scenario == imap-idle ]]; then
        py idle-run --pid "$pid" --port "${port[$server.imap]}" --sessions "$idle_sessions" \
            --out "$name.mem.json" -- "$load" "${args[@]}" >"$name.txt" 2>&1 ||
            log "  portico-load exited with status $? (see $name.txt)"
    else
        "$load" "${args[@]}" >"$name.txt" 2>&1 || log "  portico-load exited with status $? (see $name.txt)"
    fi
    if [[ $changes_mail == *" $scenario "* ]]; then pristine[$server]=0; fi
    # Let the server finish what the run left (sessions closing, processes exiting,
    # mail being indexed): that work belongs to the run's CPU time.
    sleep 2
    py quiet --pid "$pid" || log "  $server is still busy 120 s after the run"
    echo "$cpu_before $(py cpu "$pid")" >"$name.cpu"
}

# How busy the machine is with other work, before and after the runs.
busy_before=$(py busy --exclude $$)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
# A drain lasts 0.2-0.4 s here: single runs vary by a quarter, so it gets more of them.
drain_runs=$((2 * runs - 1))
for scenario in $scenarios; do
    scenario_runs=$runs
    [[ $scenario == pop3-drain ]] && scenario_runs=$drain_runs
    for ((run = 1; run <= scenario_runs; run++)); do
        if ((run % 2)); then order="portico dovecot"; else order="dovecot portico"; fi
        for server in $order; do run_one "$scenario" "$server" "$run"; done
    done
done
elapsed=$((SECONDS - started))
busy_after=$(py busy --exclude $$)

# ------------------------------------------------------------------ summary

stop sink "$sink_pid"
sink_pid=""
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
{
    echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
    echo "Portico $(checkout_name "$repo") (release build), $(dovecot --version) (Debian package), portico-load with both"
    echo "Runs: $runs per server and scenario ($drain_runs for pop3-drain), alternating, ${duration} s each (imap-idle $((duration > 10 ? duration : 10)) s), medians; $accounts accounts, $corpus_count corpus messages each; $elapsed s in all"
    echo "Machine before the runs: $busy_before; load average $load_start"
    echo "Machine after the runs: $busy_after; load average $(cut -d' ' -f1-3 /proc/loadavg); runs during which a compiler (rustc) was running: $busy_runs of $total_runs"
    echo "Dovecot: login services in high-performance mode, imap and pop3 processes serve $reuse session(s) each (service_count = $reuse)"
    echo "Dovecot passwords: {$(tr '[:lower:]' '[:upper:]' <<<"$scheme")} in a passwd-file, no auth cache; Portico: argon2id, verified passwords cached 300 s"
    echo "smtp-submit: Portico stores each message in the recipient's mailbox (fdatasync before 250); Dovecot relays it to a Python sink that discards it ($(cat "$work/sink.log"))"
    if grep -q 'Inotify instance limit' "$dv/dovecot.log"; then
        echo "Dovecot ran out of inotify instances for user nobody (/proc/sys/fs/inotify/max_user_instances = $(cat /proc/sys/fs/inotify/max_user_instances), left as it is): its sessions beyond that many check their mailbox for IDLE by polling instead"
    fi
    echo "imap-idle: $idle_sessions sessions; memory = increase of the server's whole process tree after all sessions are established + 2 s, per session (PSS: shared pages divided among their sharers)"
} >"$out/notes.txt"
py summary --results "$results" --command-line "$command_line" --scenarios "$scenarios" \
    --notes "$out/notes.txt" --json "$out/summary.json" --markdown "$out/summary.md"
echo
cat "$out/notes.txt"
echo
if grep -Eiq 'panic|fatal' "$dv/dovecot.log" "$pw/portico.log" 2>/dev/null; then
    echo "server logs mention panics or fatal errors:"
    grep -Eih 'panic|fatal' "$dv/dovecot.log" "$pw/portico.log" | sort | uniq -c | sort -rn | head -10 || true
fi
# A subshell without pipefail: grep finding nothing, or head closing its pipe early,
# is not a failure of the script.
(
    set +o pipefail
    echo "Portico log, lines that are not INFO:"
    grep -v ' INFO ' "$pw/portico.log" | sed -E 's/^[0-9T:.-]+Z +//' | sort | uniq -c | sort -rn | head -30
    echo "Dovecot log, errors and warnings:"
    grep -Ei 'error|warning|fatal|panic' "$dv/dovecot.log" | sed -E 's/^[A-Z][a-z]{2} [0-9 ]+ [0-9:]+ //' |
        sort | uniq -c | sort -rn | head -30
    true
) >"$out/server-logs.txt"
echo "results: $out (summary.md, summary.json, server-logs.txt, runs/)"
