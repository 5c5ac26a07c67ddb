#!/usr/bin/env bash
# How many idle IMAP sessions one Portico node holds, and what each costs (issue 15).
#
#   scripts/bench-idle-sessions.sh [--sessions N] [--tls plain|starttls|implicit]
#                                  [--accounts N] [--messages N] [--rate N]
#                                  [--hold SECS] [--settle SECS] [--per-source N]
#                                  [--bin-dir DIR] [--out DIR] [--keep]
#
# A private Portico node on loopback (its own temporary directory and configuration,
# IMAP and IMAPS on ports picked free at run time, a self-signed ECDSA P-256
# certificate made for the run with openssl, plaintext logins allowed so --tls plain
# can log in, the connection limits raised to --sessions), with --accounts accounts
# user1..userN@example.com (default 1000), each INBOX holding the first --messages
# messages of tests/corpus (default 0). portico-load (crates/load) then opens
# --sessions sessions (default 100000), each: connect (and STARTTLS, or TLS from the
# first byte on the IMAPS port), LOGIN, SELECT INBOX, IDLE, then holds; session i uses
# account ((i-1) mod N)+1. They are started evenly over sessions/--rate seconds
# (--rate default 2000 a second), from as many loopback source addresses
# (127.0.0.2, 127.0.0.3, ...) as needed to keep each at --per-source connections or
# fewer (default: half the ephemeral port range, net.ipv4.ip_local_port_range, less
# 1000: 13,116 here). portico-load binds each socket to its source address with port
# 0 before connecting, and Linux gives such binds ports of one parity first: past
# that half, every bind scans all of them (portico-load then burns both cores in the
# kernel and the sessions open seconds late). All of 127.0.0.0/8 is on the loopback
# interface already: nothing is configured for them.
#
# Before the measured run every account logs in once and selects its INBOX (the same
# portico-load scenario, one session per account, closed again), so that the password
# cache and the accounts' state are warm, as in scripts/bench-vs-dovecot.sh.
#
# Memory is read from the server process (/proc/PID/smaps_rollup for Rss and Pss,
# /proc/PID/status for VmRSS, threads and open files) before the sessions open, and
# again once the server holds all --sessions connections (or the ramp-up plus 120 s
# have passed), its CPU use has fallen below 2 % for a second (the last logins are
# done), and --settle more seconds (default 2) have passed. KiB per session is the
# increase divided by the connections the server then holds. The sessions are then
# held --hold more seconds (default 10) and counted again, before portico-load is
# told to end (SIGINT: DONE, LOGOUT) and reports its latencies and errors. Also
# shown: portico-load's own memory per session, and the kernel's (TCP buffer pages
# from /proc/net/sockstat and Slab from /proc/meminfo, for both ends of every
# connection).
#
# Limits: the server and portico-load each need an open file per session. The script
# sets its own open-file limit (`ulimit -Hn`, then `ulimit -Sn`) to --sessions + 1000
# (never lower than it was), and the server and portico-load inherit it. Raising the
# hard limit needs CAP_SYS_RESOURCE (root normally has it, up to fs.nr_open); where
# it cannot be raised the script says so and names the most --sessions it can take.
# It also checks that fs.nr_open and fs.file-max (minus the files already open) leave
# room for both processes, and that net.core.somaxconn is at least the listener's
# backlog (1024, tokio's). It changes no sysctl. Needs python3 (free ports, waiting
# for the banner) and openssl.
#
# Binaries: --bin-dir (default ${CARGO_TARGET_DIR:-target}/release, built with
# `cargo build --release -p portico -p portico-load` if missing) is copied to the
# work directory first, so a rebuild during the run does not change what runs.
#
# Output: a summary on standard output, and in --out DIR (default
# ./bench-idle-sessions-DATE-MODE): summary.txt, summary.json, portico-load's text
# and JSON (load.txt, load.json), and the server log's lines that are not INFO
# (server-log.txt). Everything started here is stopped on exit, however the script
# ends; the work directory is removed unless --keep.
#
# Example: scripts/bench-idle-sessions.sh --sessions 100000 --tls starttls
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
me=${0##*/}
helper=$repo/scripts/bench-vs-dovecot.py
# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
corpus=$repo/tests/corpus
command_line="scripts/$me${*:+ $*}"

sessions=100000
mode=starttls
accounts=1000
messages=0
rate=2000
hold=10
settle=2
bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
out=""
keep=0
# Connections per loopback source address [default: set below from the port range].
per_source=""
# The listener's accept backlog (tokio's TcpListener::bind).
backlog=1024

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

number() { [[ $2 =~ ^[0-9]+$ ]] || { echo "$me: $1 takes a number" >&2; exit 2; }; }

while (($#)); do
    case $1 in
    --sessions) sessions=${2:?}; number "$1" "$2"; shift ;;
    --tls) mode=${2:?}; shift ;;
    --accounts) accounts=${2:?}; number "$1" "$2"; shift ;;
    --messages) messages=${2:?}; number "$1" "$2"; shift ;;
    --rate) rate=${2:?}; number "$1" "$2"; shift ;;
    --hold) hold=${2:?}; number "$1" "$2"; shift ;;
    --settle) settle=${2:?}; number "$1" "$2"; shift ;;
    --per-source) per_source=${2:?}; number "$1" "$2"; shift ;;
    --bin-dir) bin_dir=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --keep) keep=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$me: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $mode in
plain) load_tls=none ;;
starttls | implicit) load_tls=$mode ;;
*) echo "$me: --tls is plain, starttls or implicit" >&2; exit 2 ;;
esac
((sessions > 0 && accounts > 0 && rate > 0)) || { echo "$me: --sessions, --accounts and --rate must be above 0" >&2; exit 2; }
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "$me: $tool is needed" >&2; exit 2; }
done

# ------------------------------------------------------------------ the machine

if pgrep -x portico-load >/dev/null; then
    echo "$me: another portico-load is running (pid $(pgrep -x portico-load | tr '\n' ' ')): wait for it to finish" >&2
    exit 2
fi

# Open files each process needs: one per session, and the rest (listeners, the store's
# files, logs, the runtime's own) well within this margin.
fd_margin=1000
nofile=$((sessions + fd_margin))
nr_open=$(cat /proc/sys/fs/nr_open)
file_max=$(cat /proc/sys/fs/file-max)
files_open=$(cut -f1 /proc/sys/fs/file-nr)
somaxconn=$(cat /proc/sys/net/core/somaxconn)
read -r port_low port_high </proc/sys/net/ipv4/ip_local_port_range
if ((nofile > nr_open)); then
    echo "$me: $nofile open files per process are needed, fs.nr_open is $nr_open" >&2
    exit 2
fi
if ((file_max - files_open < 2 * nofile)); then
    echo "$me: fs.file-max ($file_max, $files_open open) leaves no room for 2 x $nofile files" >&2
    exit 2
fi
if ((somaxconn < backlog)); then
    echo "$me: net.core.somaxconn is $somaxconn, under the listener's backlog of $backlog" >&2
    exit 2
fi
soft_was=$(ulimit -Sn)
hard_was=$(ulimit -Hn)
[[ $hard_was == unlimited ]] && hard_was=$nr_open
[[ $soft_was == unlimited ]] && soft_was=$nr_open
nofile_was="$soft_was/$hard_was"
if ((nofile > hard_was)) && ! ulimit -Hn "$nofile" 2>/dev/null; then
    echo "$me: --sessions $sessions needs $nofile open files per process, but the hard limit is" \
        "$hard_was and this shell may not raise it (that needs CAP_SYS_RESOURCE: see CapEff in" \
        "/proc/self/status); the most here is --sessions $((hard_was - fd_margin))" >&2
    exit 2
fi
((nofile >= soft_was)) || nofile=$soft_was
ulimit -Sn "$nofile"
nofile_now="$(ulimit -Sn)/$(ulimit -Hn)"

# bind() to an address with port 0 (how portico-load picks its source address) takes
# ports of one parity first and, once those are used up, scans them all on every
# further bind before taking the other half: past half the range each connect costs
# portico-load a scan of ~14,000 ports in the kernel and both cores stall. So each
# source address stays under half the range.
per_source=${per_source:-$(((port_high - port_low + 1) / 2 - 1000))}
((per_source > 0)) || { echo "$me: --per-source must be above 0" >&2; exit 2; }
source_count=$(((sessions + per_source - 1) / per_source))
((source_count <= 250)) || { echo "$me: more than 250 source addresses needed" >&2; exit 2; }
if ((per_source > port_high - port_low + 1)); then
    echo "$me: the ephemeral port range $port_low-$port_high is under $per_source ports" >&2
    exit 2
fi
sources=""
for ((i = 0; i < source_count; i++)); do sources+="${sources:+,}127.0.0.$((i + 2))"; done

# ------------------------------------------------------------------ what we run

if [[ ! -x $bin_dir/portico || ! -x $bin_dir/portico-load ]]; then
    log "building portico and portico-load (release)"
    (cd "$repo" && nice -n 19 cargo build --release -q -p portico -p portico-load)
    bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
fi

out=${out:-$PWD/bench-idle-sessions-$(date +%Y%m%d-%H%M%S)-$mode}
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-idle-sessions.XXXXXX")
mkdir -p "$work/bin" "$work/data" "$work/tls"
cp "$bin_dir/portico" "$bin_dir/portico-load" "$work/bin/"
portico=$work/bin/portico
load=$work/bin/portico-load
password=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export PORTICO_LOAD_PASSWORD=$password

# ------------------------------------------------------------------ stopping

portico_pid=""
load_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop portico-load "$load_pid" INT
    stop portico "$portico_pid" TERM
    load_pid="" portico_pid=""
    if [[ -f $work/portico.log ]]; then
        grep -v ' INFO ' "$work/portico.log" | sed -E 's/^[0-9T:.-]+Z +//' |
            sort | uniq -c | sort -rn | head -40 >"$out/server-log.txt" || true
    fi
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

# ------------------------------------------------------------------ /proc readings

# smaps_rollup_kib PID FIELD
smaps_kib() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/smaps_rollup"; }
status_value() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"; }
open_files() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# CPU time (user + system) in clock ticks; the fields after the command name's ")".
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
sockstat_tcp_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
# Connections refused because a listener's accept queue was full (system-wide): each
# makes its client send the SYN again 1 s, 3 s, 7 s ... later.
listen_overflows() { awk '$1 == "TcpExt:" { if (!seen) { split($0, name); seen = 1 } else for (i = 2; i <= NF; i++) if (name[i] == "ListenOverflows") print $i }' /proc/net/netstat; }
compilers() { if pgrep -x rustc >/dev/null || pgrep -x cc1 >/dev/null; then echo yes; else echo no; fi; }
meminfo_kib() { awk -v f="$1:" '$1 == f { print $2 }' /proc/meminfo; }

# reading ARRAY PID: the server's figures (and the kernel's) into an associative array.
# shellcheck disable=SC2034,SC2154 # `into` is a reference to the caller's array
reading() {
    local -n into=$1
    local pid=$2
    into[rss]=$(smaps_kib "$pid" Rss)
    into[pss]=$(smaps_kib "$pid" Pss)
    into[vmrss]=$(status_value "$pid" VmRSS)
    into[threads]=$(status_value "$pid" Threads)
    into[fds]=$(open_files "$pid")
    into[tcp_kib]=$(($(sockstat_tcp_pages) * page_kib))
    into[slab]=$(meminfo_kib Slab)
}
declare -A before after
page_kib=$(($(getconf PAGESIZE) / 1024))

# ------------------------------------------------------------------ the server

read -r imap_port imaps_port < <(python3 "$helper" free-ports 2)
bench_certificate "$work/tls"
conf=$work/portico.toml
{
    echo "# Written by $me for one run."
    bench_node_config "$work/data" "$work/tls" $((sessions + 1000)) imap="$imap_port" imaps="$imaps_port"
    cat <<EOF

[imap]
enabled = true
login = "plaintext"
EOF
} >"$conf"

log "starting Portico on 127.0.0.1: imap $imap_port, imaps $imaps_port (open files soft/hard: $nofile_now, was $nofile_was)"
"$portico" --config "$conf" serve >"$work/portico.log" 2>&1 &
portico_pid=$!
python3 "$helper" wait-banner --port "$imap_port" || { tail -20 "$work/portico.log" >&2; exit 1; }
server_nofile=$(awk '/^Max open files/ { print $4 "/" $5 }' "/proc/$portico_pid/limits")

started=$SECONDS
# shellcheck disable=SC2016 # expanded by the inner sh
seq 1 "$accounts" | xargs -P 4 -I '{}' sh -c \
    'printf "%s\n" "$1" | "$2" --config "$3" user add "user$4@example.com" --password-stdin >/dev/null' \
    sh "$password" "$portico" "$conf" '{}'
mail=()
if ((messages > 0)); then
    mapfile -t mail < <(find "$corpus" -name '*.eml' | sort | head -n "$messages")
    for f in "${mail[@]}"; do
        # shellcheck disable=SC2016 # expanded by the inner sh
        seq 1 "$accounts" | xargs -P 4 -I '{}' sh -c \
            '"$1" --config "$2" deliver "user$3@example.com" <"$4" >/dev/null' \
            sh "$portico" "$conf" '{}' "$f"
    done
fi
log "$accounts accounts with ${#mail[@]} messages each ($((SECONDS - started)) s)"

port=$imap_port
[[ $mode == implicit ]] && port=$imaps_port
load_common=(imap-idle --port "$port" --tls "$load_tls" --source "$sources" --quiet)

# One session per account, closed again: warm password cache and account state.
warm_ramp=$(((accounts + rate - 1) / rate))
"$load" "${load_common[@]}" --sessions "$accounts" --accounts "$accounts" \
    --ramp-up "${warm_ramp}s" --duration "$((warm_ramp + 5))s" >"$out/warm.txt" 2>&1 ||
    { log "the warm-up failed:"; cat "$out/warm.txt" >&2; exit 1; }
sleep 3

# ------------------------------------------------------------------ the run

reading before "$portico_pid"
base_fds=${before[fds]}
ramp=$(((sessions + rate - 1) / rate))
give_up=$((ramp + 120))
cpu_start=$(cpu_ticks "$portico_pid")
overflows_start=$(listen_overflows)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
compiler_before=$(compilers)
log "opening $sessions sessions ($mode) over $ramp s from $source_count source address(es): $sources"
t0=$(date +%s.%N)
"$load" "${load_common[@]}" --sessions "$sessions" --accounts "$accounts" \
    --pid "$portico_pid" --settle "${settle}s" --ramp-up "${ramp}s" \
    --duration "$((give_up + hold + 600))s" --json "$out/load.json" >"$out/load.txt" 2>&1 &
load_pid=$!

# Until the server holds every connection (or give up), then until it is quiet.
ticks=$(getconf CLK_TCK)
held=0
established_s=""
while kill -0 "$load_pid" 2>/dev/null; do
    held=$(($(open_files "$portico_pid") - base_fds))
    elapsed=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
    if ((held >= sessions)); then
        established_s=$elapsed
        break
    fi
    if ((${elapsed%.*} >= give_up)); then break; fi
    sleep 0.5
done
kill -0 "$load_pid" 2>/dev/null || { log "portico-load ended early:"; tail -30 "$out/load.txt" >&2; exit 1; }
log "server holds $held connections after ${elapsed} s"
for ((i = 0; i < 60; i++)); do
    c0=$(cpu_ticks "$portico_pid")
    sleep 1
    c1=$(cpu_ticks "$portico_pid")
    ((100 * (c1 - c0) < 2 * ticks)) && break
done
quiet_s=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
sleep "$settle"
cpu_end=$(cpu_ticks "$portico_pid")
overflows=$(($(listen_overflows) - overflows_start))
compiler_after=$(compilers)
reading after "$portico_pid"
held=$((after[fds] - base_fds))
load_rss=$(status_value "$load_pid" VmRSS)
log "measured: $held sessions; holding them $hold s more"
sleep "$hold"
held_later=$(($(open_files "$portico_pid") - base_fds))
stop portico-load "$load_pid" INT
load_pid=""

# ------------------------------------------------------------------ summary

per() { python3 -c "print(f'{($2 - $1) / max($3, 1):.1f}')"; }
pss_per=$(per "${before[pss]}" "${after[pss]}" "$held")
rss_per=$(per "${before[rss]}" "${after[rss]}" "$held")
tcp_per=$(per "${before[tcp_kib]}" "${after[tcp_kib]}" "$held")
slab_per=$(per "${before[slab]}" "${after[slab]}" "$held")
load_per=$(python3 -c "print(f'{$load_rss / max($held, 1):.1f}')")
cpu_ms_per=$(python3 -c "print(f'{($cpu_end - $cpu_start) * 1000 / $ticks / max($held, 1):.3f}')")
load_json=$out/load.json
errors=$(python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(sum(r['errors'].values()) + r['abandoned_clients'])" "$load_json" 2>/dev/null || echo '?')
error_kinds=$(python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(', '.join(f'{k} {v}' for k, v in r['errors'].items()) or 'none')" "$load_json" 2>/dev/null || echo '?')
latencies=$(python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print('; '.join(f'{k} p50 {c[\"p50_ms\"]} ms, p99 {c[\"p99_ms\"]} ms, max {c[\"max_ms\"]} ms' for k, c in r['commands'].items()))" "$load_json" 2>/dev/null || echo '?')
own_reading=$(python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print(f'{r[\"kib_per_session\"]} KiB per session over {r[\"idle_sessions\"]} sessions in IDLE')" "$load_json" 2>/dev/null || echo 'none')
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

{
    echo "Command: $command_line"
    echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr); load average before the sessions $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); a compiler running at the start: $compiler_before, once all were open: $compiler_after"
    echo "Script from checkout $(checkout_name "$repo"); binaries from $bin_dir"
    echo "Open files: soft/hard limit $nofile_now for the script, the server ($server_nofile) and portico-load, set with ulimit in the script (it was $nofile_was; fs.nr_open $nr_open, fs.file-max $file_max); sysctls unchanged"
    echo "Mode: $mode; $accounts accounts, ${#mail[@]} messages per INBOX; sessions from $source_count source address(es)"
    echo "Sessions asked: $sessions, ramp-up $ramp s ($rate/s)"
    echo "Sessions held by the server when measured: $held (all connected after ${established_s:-never} s, server quiet after $quiet_s s); $hold s later: $held_later"
    echo "Accept queue overflows while the sessions opened (TcpExt ListenOverflows, system-wide; the client sends its SYN again 1, 3, 7 s later): $overflows"
    echo "portico-load: errors $errors ($error_kinds); $latencies"
    echo "Server before: Rss $(mib "${before[rss]}") MiB, Pss $(mib "${before[pss]}") MiB, VmRSS $(mib "${before[vmrss]}") MiB, threads ${before[threads]}, open files ${before[fds]}"
    echo "Server after:  Rss $(mib "${after[rss]}") MiB, Pss $(mib "${after[pss]}") MiB, VmRSS $(mib "${after[vmrss]}") MiB, threads ${after[threads]}, open files ${after[fds]}"
    echo "portico-load's own reading of the server (VmRSS once all its sessions idled, --settle ${settle}s): $own_reading"
    echo "Per session (server): PSS $pss_per KiB, RSS $rss_per KiB; server CPU $cpu_ms_per ms per session opened (connect, TLS, LOGIN, SELECT, IDLE)"
    echo "Per session (kernel, both ends): TCP buffers $tcp_per KiB, slab $slab_per KiB; portico-load: $load_per KiB RSS per session"
} | tee "$out/summary.txt"
python3 - "$out/summary.json" <<EOF
import json, sys
json.dump({
    "mode": "$mode", "sessions_asked": $sessions, "sessions_held": $held,
    "sessions_held_after_hold": $held_later, "accounts": $accounts, "messages": ${#mail[@]},
    "sources": $source_count, "ramp_up_s": $ramp,
    "all_connected_s": ${established_s:-None}, "quiet_s": $quiet_s,
    "errors": "$errors", "listen_overflows": $overflows, "error_kinds": "$error_kinds", "nofile": "$nofile_now",
    "server_before": {"rss_kib": ${before[rss]}, "pss_kib": ${before[pss]}, "vmrss_kib": ${before[vmrss]},
                      "threads": ${before[threads]}, "open_files": ${before[fds]}},
    "server_after": {"rss_kib": ${after[rss]}, "pss_kib": ${after[pss]}, "vmrss_kib": ${after[vmrss]},
                     "threads": ${after[threads]}, "open_files": ${after[fds]}},
    "pss_kib_per_session": $pss_per, "rss_kib_per_session": $rss_per,
    "server_cpu_ms_per_session": $cpu_ms_per,
    "kernel_tcp_kib_per_session": $tcp_per, "kernel_slab_kib_per_session": $slab_per,
    "load_rss_kib_per_session": $load_per,
}, open(sys.argv[1], "w"), indent=2)
EOF
echo "results: $out"
