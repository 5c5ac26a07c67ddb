//! imap-idle: many sessions sitting in IDLE, the way mail clients keep a connection per
//! account open all day. Each client: connect, LOGIN, SELECT INBOX, IDLE, then holds
//! (reading whatever the server pushes) until the end of the run; DONE and LOGOUT then
//! go unmeasured. If the server ends the IDLE itself, the client idles again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::client::imap::ImapClient;
use crate::error::ClientError;
use crate::run::{Client, Stop};
use crate::wire::imap::Kind;

use super::connection_usable;

/// How long the unmeasured DONE at the end may take.
const QUIET_DONE: Duration = Duration::from_secs(2);

pub async fn session(client: &mut Client) -> Result<(), Stop> {
    let mut imap = timed!(
        client,
        "connect",
        ImapClient::connect(&client.target, client.index)
    );
    let result = idle(client, &mut imap).await;
    if connection_usable(&result) {
        imap.quit_quietly().await;
    }
    result
}

async fn idle(client: &mut Client, imap: &mut ImapClient) -> Result<(), Stop> {
    let account = client.account();
    timed!(
        client,
        "LOGIN",
        imap.login(&account.address, &account.password.0)
    );
    timed!(client, "SELECT", imap.select("INBOX", false));
    loop {
        let tag = timed!(client, "IDLE", imap.idle());
        client.control.idle_sessions.fetch_add(1, Ordering::Relaxed);
        let held = hold(client, imap).await;
        client.control.idle_sessions.fetch_sub(1, Ordering::Relaxed);
        match held? {
            Held::UntilTheEnd => {
                let _ = tokio::time::timeout(QUIET_DONE, imap.done(&tag)).await;
                return Err(Stop::Done);
            }
            Held::EndedByServer => {}
        }
    }
}

enum Held {
    UntilTheEnd,
    EndedByServer,
}

/// Reads what the server pushes while idling, until the run ends or the server ends
/// the IDLE (a tagged answer).
async fn hold(client: &Client, imap: &mut ImapClient) -> Result<Held, ClientError> {
    loop {
        tokio::select! {
            _ = client.control.stop.cancelled() => return Ok(Held::UntilTheEnd),
            response = imap.idle_event() => {
                if let Kind::Tagged { .. } = response?.kind {
                    return Ok(Held::EndedByServer);
                }
            }
        }
    }
}
