#!/usr/bin/env bash
# Fails when a crate depends on something its layer must not (STYLE.md "Layers"):
# protocol crates and the MIME/SASL/tally helpers know nothing of sockets, async
# runtimes, TLS, actors, sled or the metrics facade (they expose counts; the server
# publishes them); the store knows nothing of protocols or metrics; nothing depends on
# the server crate.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
deps_of() {
    cargo tree --offline -q -p "$1" -e normal --prefix none 2>/dev/null | awk '{print $1}' | sort -u
}
forbid() {
    local crate=$1; shift
    local deps
    deps=$(deps_of "$crate")
    for banned in "$@"; do
        if grep -qx "$banned" <<<"$deps"; then
            echo "layer violation: $crate depends on $banned"
            status=1
        fi
    done
}

runtime=(actix actix-rt tokio tokio-rustls rustls sled metrics portico-server portico-store portico-cluster)
for crate in portico-pop3 portico-imap portico-smtp portico-mime portico-sasl portico-tally; do
    forbid "$crate" "${runtime[@]}"
done
forbid portico-store portico-pop3 portico-imap portico-smtp portico-server actix tokio rustls metrics
forbid portico-cluster portico-server portico-store actix tokio sled
forbid portico-fts portico-server portico-store portico-imap actix tokio sled rustls
forbid portico-directory portico-server portico-store portico-imap portico-pop3 portico-smtp actix actix-rt rustls
forbid portico-internode portico-server portico-store portico-imap portico-pop3 portico-smtp actix actix-rt
# The HTTPS service's documents and pages: no sockets, no runtime, no TLS stack (aws-lc-rs
# alone, for HMAC and random, is fine).
forbid portico-web portico-server portico-store actix actix-web actix-rt tokio sled rustls
# The load generator measures servers from the outside, the same way for every server:
# its own protocol clients, none of Portico's crates.
forbid portico-load portico-server portico-store portico-imap portico-pop3 portico-smtp portico-cluster

if [ "$status" -eq 0 ]; then
    echo "layers: ok"
fi
exit "$status"
