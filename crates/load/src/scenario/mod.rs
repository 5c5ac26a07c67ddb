//! The scenarios: what each simulated client does, written as sessions that
//! [`run_client`] runs until the end. Every measured exchange goes through
//! `timed!` (or `timed_soft!` where a refusal should not end the session).

use crate::cli::Scenario;
use crate::error::ClientError;
use crate::run::{Client, Stop};

/// Measures one exchange: takes an operation from the budget (or ends the session with
/// [`Stop::Done`]), awaits `$exchange`, records its latency under `$name`. Any error
/// ends the session.
macro_rules! timed {
    ($client:expr, $name:expr, $exchange:expr) => {{
        let started = $client.begin()?;
        let value = $exchange.await?;
        $client.record($name, started);
        value
    }};
}

/// Like `timed!`, but a refused command (NO, BAD, -ERR, 4xx/5xx) is counted and gives
/// `None`: the session goes on.
macro_rules! timed_soft {
    ($client:expr, $name:expr, $exchange:expr) => {{
        let started = $client.begin()?;
        match $exchange.await {
            Ok(value) => {
                $client.record($name, started);
                Some(value)
            }
            Err(error) if error.session_survives() => {
                $client.error(&error);
                None
            }
            Err(error) => return Err(error.into()),
        }
    }};
}

/// Ends a POP3 or SMTP session after `result`: a timed QUIT when it went well, an
/// untimed one when a refusal (or the end of the run) left the connection usable, none
/// when it is broken. Gives `result`.
macro_rules! end_with_quit {
    ($client:expr, $conn:expr, $result:expr) => {
        match $result {
            Ok(()) => {
                timed!($client, "QUIT", $conn.quit());
                Ok(())
            }
            result => {
                if $crate::scenario::connection_usable(&result) {
                    $conn.quit_quietly().await;
                }
                result
            }
        }
    };
}

mod imap_idle;
mod imap_mix;
mod imap_sync;
mod login_storm;
mod pop3_drain;
mod smtp_send;

/// Runs client `client` of the scenario until the end of the run: one session after
/// another.
pub async fn run_client(client: &mut Client) {
    let scenario = client.settings.scenario.clone();
    while !client.stopped() {
        let ended = match &scenario {
            Scenario::ImapIdle(_) => imap_idle::session(client).await,
            Scenario::ImapSync(args) => imap_sync::session(client, args).await,
            Scenario::ImapMix(args) => imap_mix::session(client, args).await,
            Scenario::Pop3Drain(args) => pop3_drain::session(client, args).await,
            Scenario::LoginStorm(args) => login_storm::session(client, args.protocol).await,
            Scenario::SmtpSubmit(args) => {
                smtp_send::session(client, &smtp_send::Plan::submission(args)).await
            }
            Scenario::SmtpInbound(args) => {
                smtp_send::session(client, &smtp_send::Plan::inbound(args)).await
            }
            Scenario::Lmtp(args) => smtp_send::session(client, &smtp_send::Plan::lmtp(args)).await,
        };
        if !client.carry_on(ended).await {
            break;
        }
    }
}

/// Whether a session that ended with `result` still has a working connection worth a
/// polite goodbye (the run ended, or a command was refused), rather than a broken one.
fn connection_usable(result: &Result<(), Stop>) -> bool {
    match result {
        Ok(()) | Err(Stop::Done) => true,
        Err(Stop::Failed(error)) => error.session_survives(),
    }
}

/// A message from the corpus with From/To rewritten: the one at a random index.
fn pick_message(client: &mut Client, from: &str, to: &[&str]) -> Result<Vec<u8>, ClientError> {
    let corpus = client
        .settings
        .corpus
        .clone()
        .ok_or_else(|| ClientError::Unexpected {
            command: "corpus",
            text: "no corpus loaded".into(),
        })?;
    let index = client.rng.below(corpus.messages.len());
    Ok(crate::message::rewrite_addresses(
        &corpus.messages[index],
        from,
        to,
    ))
}
