//! Log output: `RUST_LOG` decides; the server logs at info by default, the
//! administrative commands only warnings (and the embedded Raft library only warnings).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(serving: bool) {
    // openraft reports every step of its own at info: only its warnings by default.
    let default = if serving {
        "info,openraft=warn"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
