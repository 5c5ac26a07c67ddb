#!/usr/bin/env bash
# Runs one fuzz target for a bounded time: scripts/fuzz.sh TARGET SECONDS
#   TARGET: imap (command reader + parser), mime (MIME indexer), pop3 (POP3 session
#   machine), smtp (SMTP session machine).
# Installs cargo-fuzz if missing. Builds without a sanitizer (`-s none`: no nightly
# toolchain here); findings go to crates/<crate>/fuzz/artifacts/ and each one becomes a
# regression test. The corpus grows in crates/<crate>/fuzz/corpus/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh imap|mime|pop3|smtp SECONDS}
seconds=${2:?usage: scripts/fuzz.sh imap|mime|pop3|smtp SECONDS}
case "$target" in
    imap) crate=crates/imap; bin=parse_command ;;
    mime) crate=crates/mime; bin=summarize ;;
    pop3) crate=crates/pop3; bin=session ;;
    smtp) crate=crates/smtp; bin=session ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
esac
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
seeds=()
if [ "$target" = mime ]; then seeds=("$PWD/tests/corpus"); fi
cd "$crate"
mkdir -p "fuzz/corpus/$bin"
exec cargo fuzz run -s none "$bin" "fuzz/corpus/$bin" "${seeds[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1
