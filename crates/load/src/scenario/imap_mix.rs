//! imap-mix: a busy office. Each client logs in once (LOGIN, LIST "" "*", SELECT INBOX)
//! and then, until the end, sends commands drawn at random with these weights:
//!
//! | weight | command |
//! |---|---|
//! | 25 | FETCH a random range of up to 20 messages: `(FLAGS)` or `(FLAGS ENVELOPE)` |
//! | 10 | NOOP |
//! | 10 | STORE +FLAGS/-FLAGS \Seen or +FLAGS \Flagged on one message |
//! | 10 | STATUS of another folder (MESSAGES UNSEEN UIDNEXT) |
//! | 8 | SELECT (7 in 10) or EXAMINE (3 in 10) of INBOX (6 in 10) or another folder |
//! | 6 | SEARCH UNSEEN |
//! | 4 | SEARCH SUBJECT with a word from the corpus's subjects |
//! | 4 | APPEND of a corpus message to --append-to |
//! | 3 | IDLE for 100 ms to --max-idle, then DONE (--idle-weight) |
//!
//! The IDLEs hold a client for 100 ms or more each whatever the server does: with the
//! default weight they take most of a fast server's client time and cap the rate of
//! commands (20 clients, 3 IDLEs in 80 commands of 100 ms: under 5,400/s), so
//! `--idle-weight 0` measures the rest of the mix on its own.
//!
//! A FETCH or STORE in an empty folder becomes a NOOP, a STORE in a folder opened with
//! EXAMINE a SELECT INBOX.

use std::time::Duration;

use crate::cli::MixArgs;
use crate::client::imap::ImapClient;
use crate::run::{Client, Stop};
use crate::wire::imap::quoted;

use super::{connection_usable, pick_message};

#[derive(Debug, Clone, Copy)]
enum Op {
    Fetch,
    Noop,
    Store,
    Status,
    Select,
    SearchUnseen,
    SearchSubject,
    Append,
    Idle,
}

const WEIGHTS: &[(Op, usize)] = &[
    (Op::Fetch, 25),
    (Op::Noop, 10),
    (Op::Store, 10),
    (Op::Status, 10),
    (Op::Select, 8),
    (Op::SearchUnseen, 6),
    (Op::SearchSubject, 4),
    (Op::Append, 4),
    (Op::Idle, 3),
];

/// The weight of `op`: IDLE's is `idle_weight` (--idle-weight), the others' as listed.
fn weight(op: Op, weight: usize, idle_weight: usize) -> usize {
    match op {
        Op::Idle => idle_weight,
        _ => weight,
    }
}

fn draw(roll: usize, idle_weight: usize) -> Op {
    let total: usize = WEIGHTS
        .iter()
        .map(|&(op, w)| weight(op, w, idle_weight))
        .sum();
    let mut roll = roll % total;
    for &(op, w) in WEIGHTS {
        let w = weight(op, w, idle_weight);
        if roll < w {
            return op;
        }
        roll -= w;
    }
    Op::Noop
}

/// The session's state besides the connection.
struct Office {
    /// Selectable folders other than INBOX (quotable names only).
    folders: Vec<String>,
    selected: String,
}

pub async fn session(client: &mut Client, args: &MixArgs) -> Result<(), Stop> {
    let mut imap = timed!(
        client,
        "connect",
        ImapClient::connect(&client.target, client.index)
    );
    let result = work(client, &mut imap, args).await;
    if connection_usable(&result) {
        imap.quit_quietly().await;
    }
    result
}

async fn work(client: &mut Client, imap: &mut ImapClient, args: &MixArgs) -> Result<(), Stop> {
    let account = client.account();
    timed!(
        client,
        "LOGIN",
        imap.login(&account.address, &account.password.0)
    );
    let listed = timed!(client, "LIST", imap.command("LIST", "LIST \"\" \"*\""));
    let folders: Vec<String> = listed
        .iter()
        .filter_map(|r| r.list_mailbox())
        .filter(|m| m.selectable() && !m.name.eq_ignore_ascii_case("INBOX"))
        .map(|m| m.name)
        .filter(|name| quoted(name).is_some())
        .collect();
    timed!(client, "SELECT", imap.select("INBOX", false));
    let mut office = Office {
        folders,
        selected: "INBOX".to_string(),
    };
    loop {
        let roll = client.rng.below(usize::MAX);
        one(
            client,
            imap,
            &mut office,
            args,
            draw(roll, args.idle_weight),
        )
        .await?;
        if !args.think.is_zero() {
            client.pause(args.think).await;
        }
        if client.stopped() {
            return Err(Stop::Done);
        }
    }
}

async fn one(
    client: &mut Client,
    imap: &mut ImapClient,
    office: &mut Office,
    args: &MixArgs,
    op: Op,
) -> Result<(), Stop> {
    match op {
        Op::Noop => noop(client, imap).await,
        Op::Fetch => {
            if imap.exists == 0 {
                return noop(client, imap).await;
            }
            let first = client.rng.between(1, u64::from(imap.exists));
            let last = (first + client.rng.between(0, 19)).min(u64::from(imap.exists));
            let (name, items) = if client.rng.below(2) == 0 {
                ("FETCH flags", "(FLAGS)")
            } else {
                ("FETCH envelope", "(FLAGS ENVELOPE)")
            };
            let line = format!("FETCH {first}:{last} {items}");
            timed_soft!(client, name, imap.command("FETCH", &line));
            Ok(())
        }
        Op::Store => {
            if !imap.writable {
                return select(client, imap, office, "INBOX", false).await;
            }
            if imap.exists == 0 {
                return noop(client, imap).await;
            }
            let n = client.rng.between(1, u64::from(imap.exists));
            let change = match client.rng.below(3) {
                0 => "+FLAGS (\\Seen)",
                1 => "-FLAGS (\\Seen)",
                _ => "+FLAGS (\\Flagged)",
            };
            let line = format!("STORE {n} {change}");
            timed_soft!(client, "STORE", imap.command("STORE", &line));
            Ok(())
        }
        Op::Status => {
            let candidates: Vec<&String> = office
                .folders
                .iter()
                .filter(|f| **f != office.selected)
                .collect();
            let folder = match client.rng.pick(&candidates) {
                Some(folder) => (*folder).clone(),
                None if office.selected != "INBOX" => "INBOX".to_string(),
                None => return noop(client, imap).await,
            };
            let line = format!(
                "STATUS {} (MESSAGES UNSEEN UIDNEXT)",
                quoted(&folder).unwrap_or_default()
            );
            timed_soft!(client, "STATUS", imap.command("STATUS", &line));
            Ok(())
        }
        Op::Select => {
            let other = client.rng.pick(&office.folders).cloned();
            let folder = match other {
                Some(folder) if client.rng.below(10) >= 6 => folder,
                _ => "INBOX".to_string(),
            };
            let read_only = client.rng.below(10) >= 7;
            select(client, imap, office, &folder, read_only).await
        }
        Op::SearchUnseen => {
            timed_soft!(
                client,
                "SEARCH UNSEEN",
                imap.command("SEARCH", "SEARCH UNSEEN")
            );
            Ok(())
        }
        Op::SearchSubject => {
            let word = client
                .settings
                .corpus
                .as_ref()
                .and_then(|c| client.rng.pick(&c.subject_words).cloned())
                .unwrap_or_else(|| "test".to_string());
            let line = format!("SEARCH SUBJECT {}", quoted(&word).unwrap_or_default());
            timed_soft!(client, "SEARCH SUBJECT", imap.command("SEARCH", &line));
            Ok(())
        }
        Op::Append => {
            let account = client.account();
            let message = pick_message(client, &account.address, &[&account.address])?;
            timed_soft!(
                client,
                "APPEND",
                imap.append(&args.append_to, "\\Seen", &message)
            );
            Ok(())
        }
        Op::Idle => idle_briefly(client, imap, args.max_idle).await,
    }
}

async fn noop(client: &mut Client, imap: &mut ImapClient) -> Result<(), Stop> {
    timed_soft!(client, "NOOP", imap.command("NOOP", "NOOP"));
    Ok(())
}

async fn select(
    client: &mut Client,
    imap: &mut ImapClient,
    office: &mut Office,
    folder: &str,
    read_only: bool,
) -> Result<(), Stop> {
    let name = if read_only { "EXAMINE" } else { "SELECT" };
    if timed_soft!(client, name, imap.select(folder, read_only)).is_some() {
        office.selected = folder.to_string();
    }
    Ok(())
}

/// IDLE (measured up to the server's `+`), a short wait that reads what the server
/// pushes, then DONE (measured up to its tagged OK; sent unmeasured if the run ended).
async fn idle_briefly(
    client: &mut Client,
    imap: &mut ImapClient,
    max_idle: Duration,
) -> Result<(), Stop> {
    let tag = timed!(client, "IDLE", imap.idle());
    let longest = max_idle.as_millis().max(100) as u64;
    let wait = Duration::from_millis(client.rng.between(100, longest));
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = client.control.stop.cancelled() => break,
            response = imap.idle_event() => {
                if let crate::wire::imap::Kind::Tagged { .. } = response?.kind {
                    // The server ended the IDLE itself.
                    return Ok(());
                }
            }
        }
    }
    let started = client.begin();
    imap.done(&tag).await.map_err(Stop::from)?;
    match started {
        Ok(started) => client.record("DONE", started),
        Err(stop) => return Err(stop),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_can_be_drawn() {
        let total: usize = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut seen = std::collections::BTreeSet::new();
        for roll in 0..total {
            seen.insert(format!("{:?}", draw(roll, 3)));
        }
        assert_eq!(seen.len(), WEIGHTS.len());
    }

    #[test]
    fn an_idle_weight_of_zero_never_draws_idle() {
        let total: usize = WEIGHTS.iter().map(|(_, w)| w).sum::<usize>() - 3;
        let drawn: Vec<_> = (0..total)
            .map(|roll| format!("{:?}", draw(roll, 0)))
            .collect();
        assert!(!drawn.iter().any(|op| op == "Idle"));
        assert_eq!(
            drawn
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            WEIGHTS.len() - 1
        );
    }
}
