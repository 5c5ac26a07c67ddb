//! imap-sync: what a desktop mail client does each time it syncs, repeated by every
//! client: connect, LOGIN, LIST "" "*", SELECT INBOX, UID FETCH 1:* of every message's
//! flags, date, size and main header fields, UID FETCH BODY.PEEK[] of a few messages
//! at random, one UID STORE +FLAGS (\Seen) of a few others, APPEND of a message from
//! the corpus to the Sent folder, LOGOUT.

use crate::cli::SyncArgs;
use crate::client::imap::ImapClient;
use crate::run::{Client, Stop};

use super::{connection_usable, pick_message};

/// The header fetch of a sync, as Thunderbird-like clients send it.
const HEADERS_FETCH: &str = "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])";

pub async fn session(client: &mut Client, args: &SyncArgs) -> Result<(), Stop> {
    let mut imap = timed!(
        client,
        "connect",
        ImapClient::connect(&client.target, client.index)
    );
    let result = sync(client, &mut imap, args).await;
    if connection_usable(&result) {
        imap.quit_quietly().await;
    }
    result
}

async fn sync(client: &mut Client, imap: &mut ImapClient, args: &SyncArgs) -> Result<(), Stop> {
    let account = client.account();
    timed!(
        client,
        "LOGIN",
        imap.login(&account.address, &account.password.0)
    );
    timed!(client, "LIST", imap.command("LIST", "LIST \"\" \"*\""));
    timed!(client, "SELECT", imap.select("INBOX", false));
    let responses = timed!(
        client,
        "UID FETCH headers",
        imap.command("UID FETCH", HEADERS_FETCH)
    );
    let uids: Vec<u32> = responses.iter().filter_map(|r| r.fetch_uid()).collect();
    for i in client.rng.distinct(uids.len(), args.bodies) {
        let line = format!("UID FETCH {} (BODY.PEEK[])", uids[i]);
        timed_soft!(client, "UID FETCH body", imap.command("UID FETCH", &line));
    }
    let marked: Vec<String> = client
        .rng
        .distinct(uids.len(), args.mark_seen)
        .into_iter()
        .map(|i| uids[i].to_string())
        .collect();
    if !marked.is_empty() {
        let line = format!("UID STORE {} +FLAGS (\\Seen)", marked.join(","));
        timed_soft!(client, "UID STORE", imap.command("UID STORE", &line));
    }
    let to = client
        .rng
        .pick(&client.settings.recipients)
        .cloned()
        .unwrap_or_else(|| account.address.clone());
    let message = pick_message(client, &account.address, &[&to])?;
    timed_soft!(
        client,
        "APPEND",
        imap.append(&args.append_to, "\\Seen", &message)
    );
    timed!(client, "LOGOUT", imap.logout());
    Ok(())
}
