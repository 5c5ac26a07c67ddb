//! Transcript tests: every file in `tests/transcripts/` is a conversation between
//! numbered clients and the session machine, run against an in-memory fake host with the
//! real store's semantics (no sockets, no store crate).
//!
//! Each transcript runs twice: once with every client write fed whole, once fed one
//! byte at a time, because TCP may deliver it either way.
//!
//! # Format
//!
//! ```text
//! # One comment line on top says what the scenario shows.
//! ! plain 1            connection 1 starts without TLS (default: implicit TLS)
//! ! plain              every connection starts without TLS
//! ! login-plaintext    LOGIN/AUTHENTICATE allowed without TLS
//! ! append-limit 100   ImapConfig::append_limit (also max-line N, max-bad N)
//! ! literal-minus      LITERAL- instead of LITERAL+ (`[imap] literal_plus = false`)
//! ! message alice INBOX 001 (\Seen $Work) "17-Jan-2026 10:00:00 +0100"
//!                      a corpus message (by file-name prefix) delivered to a folder,
//!                      flags and internal date optional; anywhere in the file (it is
//!                      then a delivery: sessions with the folder selected are told)
//! ! quota alice 4096   alice's storage limit from here on, in octets (`none`: no limit):
//!                      APPEND and COPY past it are refused with OVERQUOTA, as the store
//!                      refuses them (deliveries by `! message` are not checked)
//! ! clock "06-Feb-2026 09:00:00 +0000"
//!                      the host's time from here on (it starts at 05-Feb-2026 12:00:00
//!                      +0000): the internal date of what comes without one, the save
//!                      date of what is saved, WITHIN's now (a transcript with it cannot
//!                      run against the real binary, whose clock is the machine's)
//! 1 C: a1 LOGIN alice secret      client line; CRLF is appended
//! 1 S: a1 OK *                    the next server line of connection 1, exactly;
//!                                 a final `*` matches the rest of the line
//! 1 closed                        connection 1 has been closed by the server
//! ```
//!
//! Consecutive `C:` lines of one connection are one write (so a command pipelined after
//! STARTTLS or after IDLE's DONE is in the same write). After COMPRESS DEFLATE's OK the
//! lines are what each side means, before deflating and after inflating: the fake
//! host's compression copies (what the client sent behind COMPRESS in the same write is
//! fed back to the session as its first input), and the runner against the real binary
//! deflates and inflates. A literal's payload lines are
//! `C:` lines too. `$name` (lower case) in an `S:` line captures a token the first time
//! and must match it later; in a `C:` line it is replaced by the captured value.
//! Keywords such as `$Work` start with an upper-case letter and are not variables.
//!
//! Server output must be expected completely: before a connection's next `C:` line and
//! at the end of the file, every line it was sent must have been matched. The greeting
//! is skipped unless the first line of a connection is an `S:` line. Every response is
//! also checked for well-formed literals, quoting and parentheses.
//!
//! Accounts: alice/secret and bob/hunter2 (IMAP on), carol/carol (IMAP off), each with
//! INBOX, Sent, Drafts, Deleted Items, Junk Email and Archive (RFC 6154 uses), all
//! subscribed, and no storage limit. UIDVALIDITY values are handed out from 1001 in
//! creation order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use portico_imap::catenate::{PartSource, UrlMailbox};
use portico_imap::command::{CommandBody, DateTime, StoreMode};
use portico_imap::parser::parse_command;
use portico_imap::request::{
    AccountEvent, Copied, Detail, Fault, FlagsStored, FolderEvent, FolderId, FolderInfo,
    FolderList, FolderStatus, LoginFailure, MessageData, QuotaUsage, Reply, Request,
    SelectedFolder, ViewEntry, WatchedFolder,
};
use portico_imap::{Action, ImapConfig, Input, Session};
use portico_mime::MessageSummary;
use portico_testkit::{crlf, transcript_files};

const TRANSCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transcripts");

// ---- Flags as the store keeps them ----------------------------------------------------

const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// System flags case-insensitively in RFC order, then keywords in the order first set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Flags {
    system: [bool; 5],
    keywords: Vec<String>,
}

impl Flags {
    fn from_names<S: AsRef<str>>(names: &[S]) -> Flags {
        let mut flags = Flags::default();
        for name in names {
            flags.insert(name.as_ref());
        }
        flags
    }

    fn system_index(name: &str) -> Option<usize> {
        SYSTEM_FLAGS
            .iter()
            .position(|f| f.eq_ignore_ascii_case(name))
    }

    fn contains(&self, name: &str) -> bool {
        match Self::system_index(name) {
            Some(i) => self.system[i],
            None => self.keywords.iter().any(|k| k.eq_ignore_ascii_case(name)),
        }
    }

    fn insert(&mut self, name: &str) {
        match Self::system_index(name) {
            Some(i) => self.system[i] = true,
            None if !self.contains(name) => self.keywords.push(name.to_string()),
            None => {}
        }
    }

    fn remove(&mut self, name: &str) {
        match Self::system_index(name) {
            Some(i) => self.system[i] = false,
            None => self.keywords.retain(|k| !k.eq_ignore_ascii_case(name)),
        }
    }

    fn names(&self) -> Vec<String> {
        SYSTEM_FLAGS
            .iter()
            .zip(self.system)
            .filter(|(_, on)| *on)
            .map(|(name, _)| name.to_string())
            .chain(self.keywords.iter().cloned())
            .collect()
    }
}

// ---- The fake host ---------------------------------------------------------------------

struct Message {
    raw: Vec<u8>,
    summary: MessageSummary,
    flags: Flags,
    internal_date: DateTime,
    /// RFC 8514: the host's clock when the message entered the folder, as the store
    /// stamps it (an APPEND, a delivery, a COPY or a MOVE).
    save_date: DateTime,
    modseq: u64,
}

struct Folder {
    account: String,
    name: String,
    special_use: Option<&'static str>,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    messages: BTreeMap<u32, Message>,
    /// UIDs from here on are \Recent for the next session that selects read-write.
    recent_from: u32,
    /// (uid, modseq of its expunge), for QRESYNC.
    expunged: Vec<(u32, u64)>,
}

struct Account {
    password: &'static str,
    imap_enabled: bool,
    /// Octets the account's messages may take, all folders together.
    storage_limit: Option<u64>,
}

#[derive(Default)]
struct HostSession {
    user: Option<String>,
    /// (folder, read-only)
    selected: Option<(u64, bool)>,
    /// NOTIFY: hears of the account's changes.
    watching: bool,
}

const SPECIAL_USES: [&str; 5] = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/// An in-memory implementation of every [`Request`], with the real store's rules and
/// the mailbox actor's change pushes.
struct Host {
    accounts: BTreeMap<&'static str, Account>,
    folders: BTreeMap<u64, Folder>,
    /// (account, name) subscribed: a name outlives its folder, as in the store.
    subscriptions: BTreeSet<(String, String)>,
    /// (account, folder or "" for the server) → entry → value, as in the store.
    metadata: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    next_folder: u64,
    next_uidvalidity: u32,
    sessions: BTreeMap<usize, HostSession>,
    now: DateTime,
    /// NOTIFY: folders changed by the request under way (true: messages came or went),
    /// told as one STATUS each when it ends, as the server batches them.
    changed: BTreeMap<u64, bool>,
    /// NOTIFY: other changes by the request under way, with their account.
    named: Vec<(String, AccountEvent)>,
}

type Events = Vec<(usize, FolderEvent)>;

fn normalize_inbox(name: &str) -> String {
    portico_imap::names::normalize_inbox(name)
}

fn validate_name(name: &str) -> Result<(), Fault> {
    let invalid = |why: &str| Err(Fault::NotAllowed(why.to_string()));
    if name.is_empty() {
        return invalid("empty folder name");
    }
    if name.chars().any(char::is_control) {
        return invalid("control character in folder name");
    }
    if name.split('/').any(str::is_empty) {
        return invalid("empty level in folder name");
    }
    Ok(())
}

/// Parses flags and a date the way a client writes them in APPEND.
fn parse_append_args(args: &str) -> (Vec<String>, Option<DateTime>) {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("{args} ")
    };
    let raw = format!("x APPEND INBOX {args}{{0}}\r\n");
    match parse_command(raw.as_bytes()) {
        Ok(command) => match command.body {
            CommandBody::Append { mut messages, .. } => {
                let item = messages.remove(0);
                (item.flags, item.date)
            }
            other => panic!("not an APPEND: {other:?}"),
        },
        Err(e) => panic!("bad message arguments {args:?}: {e}"),
    }
}

impl Host {
    fn new() -> Host {
        let mut host = Host {
            accounts: BTreeMap::new(),
            folders: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
            metadata: BTreeMap::new(),
            next_folder: 1,
            next_uidvalidity: 1001,
            sessions: BTreeMap::new(),
            now: parse_append_args("\"05-Feb-2026 12:00:00 +0000\"")
                .1
                .expect("date"),
            changed: BTreeMap::new(),
            named: Vec::new(),
        };
        for (user, password, imap_enabled) in [
            ("alice", "secret", true),
            ("bob", "hunter2", true),
            ("carol", "carol", false),
        ] {
            host.accounts.insert(
                user,
                Account {
                    password,
                    imap_enabled,
                    storage_limit: None,
                },
            );
            host.create_folder(user, "INBOX", None);
            for (name, usage) in [
                ("Sent", "\\Sent"),
                ("Drafts", "\\Drafts"),
                ("Deleted Items", "\\Trash"),
                ("Junk Email", "\\Junk"),
                ("Archive", "\\Archive"),
            ] {
                host.create_folder(user, name, Some(usage));
            }
        }
        host.named.clear();
        host
    }

    fn create_folder(&mut self, account: &str, name: &str, special_use: Option<&'static str>) {
        let id = self.next_folder;
        self.next_folder += 1;
        let uidvalidity = self.next_uidvalidity;
        self.next_uidvalidity += 1;
        self.subscriptions
            .insert((account.to_string(), name.to_string()));
        self.named.push((
            account.to_string(),
            AccountEvent::Created {
                name: name.to_string(),
                subscribed: true,
                special_use: special_use.map(str::to_string),
            },
        ));
        self.folders.insert(
            id,
            Folder {
                account: account.to_string(),
                name: name.to_string(),
                special_use,
                uidvalidity,
                uidnext: 1,
                highest_modseq: 1,
                messages: BTreeMap::new(),
                recent_from: 1,
                expunged: Vec::new(),
            },
        );
    }

    fn folder_id(&self, account: &str, name: &str) -> Option<u64> {
        let name = normalize_inbox(name);
        self.folders
            .iter()
            .find(|(_, f)| f.account == account && f.name == name)
            .map(|(id, _)| *id)
    }

    fn status_of(&self, id: u64) -> FolderStatus {
        let f = &self.folders[&id];
        FolderStatus {
            messages: f.messages.len() as u32,
            recent: f.messages.range(f.recent_from..).count() as u32,
            uidnext: f.uidnext,
            uidvalidity: f.uidvalidity,
            unseen: f
                .messages
                .values()
                .filter(|m| !m.flags.contains("\\Seen"))
                .count() as u32,
            deleted: f
                .messages
                .values()
                .filter(|m| m.flags.contains("\\Deleted"))
                .count() as u32,
            deleted_storage: f
                .messages
                .values()
                .filter(|m| m.flags.contains("\\Deleted"))
                .map(|m| m.raw.len() as u64)
                .sum(),
            size: f.messages.values().map(|m| m.raw.len() as u64).sum(),
            highest_modseq: f.highest_modseq,
            mailbox_id: id,
        }
    }

    fn watched(&self, id: u64) -> WatchedFolder {
        let f = &self.folders[&id];
        WatchedFolder {
            folder: FolderId(id),
            name: f.name.clone(),
            subscribed: self
                .subscriptions
                .contains(&(f.account.clone(), f.name.clone())),
            status: self.status_of(id),
        }
    }

    /// NOTIFY: what the request just carried out changed, for every session of the
    /// account listening but `origin`; a session's selected folder is told otherwise.
    fn account_events(&mut self, origin: Option<usize>) -> Vec<(usize, AccountEvent)> {
        let changed = std::mem::take(&mut self.changed);
        let named = std::mem::take(&mut self.named);
        let mut out = Vec::new();
        for (conn, session) in &self.sessions {
            if !session.watching || Some(*conn) == origin {
                continue;
            }
            let Some(user) = &session.user else {
                continue;
            };
            for (&id, &messages) in &changed {
                let Some(f) = self.folders.get(&id) else {
                    continue;
                };
                if &f.account == user && session.selected.map(|(s, _)| s) != Some(id) {
                    let watched = self.watched(id);
                    out.push((*conn, AccountEvent::Status { watched, messages }));
                }
            }
            for (account, event) in &named {
                if account == user {
                    out.push((*conn, event.clone()));
                }
            }
        }
        out
    }

    /// Octets the account's messages take, every folder's, as the store counts them.
    fn usage(&self, account: &str) -> u64 {
        self.folders
            .values()
            .filter(|f| f.account == account)
            .flat_map(|f| f.messages.values())
            .map(|m| m.raw.len() as u64)
            .sum()
    }

    /// Refuses `size` more octets past the account's limit, as the store does.
    fn check_room(&self, account: &str, size: u64) -> Result<(), Fault> {
        match self.accounts.get(account).and_then(|a| a.storage_limit) {
            Some(limit) if self.usage(account) + size > limit => Err(Fault::OverQuota),
            _ => Ok(()),
        }
    }

    /// Makes those of `parents` (as the session names them) that are missing.
    fn create_parents(&mut self, account: &str, parents: &[String]) {
        for parent in parents {
            if self.folder_id(account, parent).is_none() {
                self.create_folder(account, parent, None);
            }
        }
    }

    /// Sessions with `folder` selected: (session, read-only).
    fn watchers(&self, folder: u64) -> Vec<(usize, bool)> {
        self.sessions
            .iter()
            .filter_map(|(conn, s)| match s.selected {
                Some((id, read_only)) if id == folder => Some((*conn, read_only)),
                _ => None,
            })
            .collect()
    }

    /// Appends and tells every watcher, the appending session too; the first
    /// read-write watcher sees the message as \Recent.
    fn append(
        &mut self,
        folder: u64,
        raw: &[u8],
        flags: Flags,
        date: Option<DateTime>,
        events: &mut Events,
    ) -> u32 {
        let raw = crlf(raw);
        let watchers = self.watchers(folder);
        let first = watchers
            .iter()
            .filter(|(_, read_only)| !read_only)
            .map(|(conn, _)| *conn)
            .min();
        let now = self.now;
        let f = self.folders.get_mut(&folder).expect("folder");
        let uid = f.uidnext;
        f.uidnext += 1;
        f.highest_modseq += 1;
        let modseq = f.highest_modseq;
        if first.is_some() {
            f.recent_from = f.recent_from.max(uid + 1);
        }
        let names = flags.names();
        self.changed.insert(folder, true);
        let f = self.folders.get_mut(&folder).expect("folder");
        f.messages.insert(
            uid,
            Message {
                summary: portico_mime::summarize(&raw),
                raw,
                flags,
                internal_date: date.unwrap_or(now),
                save_date: now,
                modseq,
            },
        );
        for (conn, _) in watchers {
            events.push((
                conn,
                FolderEvent::Appended {
                    folder: FolderId(folder),
                    uid,
                    flags: names.clone(),
                    modseq,
                    recent: Some(conn) == first,
                },
            ));
        }
        uid
    }

    /// Removes messages; every watcher but `origin` is told.
    fn remove(&mut self, folder: u64, uids: &[u32], origin: Option<usize>, events: &mut Events) {
        if uids.is_empty() {
            return;
        }
        self.changed.insert(folder, true);
        let f = self.folders.get_mut(&folder).expect("folder");
        for uid in uids {
            f.messages.remove(uid);
        }
        f.highest_modseq += 1;
        let modseq = f.highest_modseq;
        f.expunged.extend(uids.iter().map(|uid| (*uid, modseq)));
        for (conn, _) in self.watchers(folder) {
            if Some(conn) != origin {
                events.push((
                    conn,
                    FolderEvent::Expunged {
                        folder: FolderId(folder),
                        uids: uids.to_vec(),
                        modseq,
                    },
                ));
            }
        }
    }

    /// A message as a scan needs it. With `stream`, whenever the job allows it the
    /// message is left "in the store" (header only, literals streamed), whatever its
    /// size, so every transcript with BODY[] checks the streamed output too.
    fn message_data(uid: u32, m: &Message, detail: Detail, stream: bool) -> MessageData {
        let header = || m.raw[..m.summary.header_len().min(m.raw.len())].to_vec();
        if stream && detail == Detail::Full {
            return MessageData {
                raw: Some(header()),
                raw_in_store: true,
                ..Self::message_data(uid, m, Detail::Summary, false)
            };
        }
        MessageData {
            uid,
            flags: m.flags.names(),
            internal_date: m.internal_date,
            save_date: Some(m.save_date),
            size: m.raw.len() as u64,
            modseq: m.modseq,
            // The content's id: copies share it, as they share the store's body.
            email_id: m.raw.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }) >> 1,
            summary: (detail >= Detail::Summary).then(|| m.summary.clone()),
            fields: (detail == Detail::Fields).then(|| portico_mime::search_fields(&m.raw)),
            raw: match detail {
                Detail::KeptHeader => Some(portico_mime::kept_header_lines(&m.raw)),
                Detail::HeaderText | Detail::Header => Some(header()),
                Detail::Full => Some(m.raw.clone()),
                _ => None,
            },
            raw_in_store: false,
        }
    }

    fn user(&self, conn: usize) -> String {
        self.sessions
            .get(&conn)
            .and_then(|s| s.user.clone())
            .expect("a request before sign-in")
    }

    /// Carries out one request: the reply (None for Deselect) and the events to push.
    fn execute(&mut self, conn: usize, request: Request, events: &mut Events) -> Option<Reply> {
        let session = self.sessions.entry(conn).or_default();
        Some(match request {
            Request::Login { username, password } => {
                let result = match self.accounts.get(username.to_ascii_lowercase().as_str()) {
                    Some(account) if account.password == password.0 => {
                        if account.imap_enabled {
                            session.user = Some(username.to_ascii_lowercase());
                            Ok(())
                        } else {
                            Err(LoginFailure::Disabled)
                        }
                    }
                    _ => Err(LoginFailure::BadCredentials),
                };
                Reply::Login(result)
            }
            Request::ListFolders => {
                let user = self.user(conn);
                let mut folders: Vec<FolderInfo> = self
                    .folders
                    .values()
                    .filter(|f| f.account == user)
                    .map(|f| FolderInfo {
                        name: f.name.clone(),
                        special_use: f.special_use,
                    })
                    .collect();
                folders.sort_by(|a, b| a.name.cmp(&b.name));
                let subscriptions = self
                    .subscriptions
                    .iter()
                    .filter(|(account, _)| *account == user)
                    .map(|(_, name)| name.clone())
                    .collect();
                Reply::Folders(Ok(FolderList {
                    folders,
                    subscriptions,
                }))
            }
            Request::Status { folder, .. } => {
                let user = self.user(conn);
                Reply::Status(match self.folder_id(&user, &folder) {
                    None => Err(Fault::NotFound),
                    Some(id) => Ok(self.status_of(id)),
                })
            }
            Request::Notify { watch, statuses } => {
                let user = self.user(conn);
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.watching = watch;
                }
                let mut folders = Vec::new();
                if statuses {
                    let ids: Vec<u64> = self
                        .folders
                        .iter()
                        .filter(|(_, f)| f.account == user)
                        .map(|(id, _)| *id)
                        .collect();
                    folders = ids.into_iter().map(|id| self.watched(id)).collect();
                }
                Reply::Watched(Ok(folders))
            }
            Request::Quota { folder } => {
                let user = self.user(conn);
                if folder.is_some_and(|name| self.folder_id(&user, &name).is_none()) {
                    return Some(Reply::Quota(Err(Fault::NotFound)));
                }
                Reply::Quota(Ok(QuotaUsage {
                    used: self.usage(&user),
                    limit: self.accounts[user.as_str()].storage_limit,
                }))
            }
            Request::Vanished { folder, since } => {
                let f = self.folders.get(&folder.0).expect("folder");
                Reply::Vanished(Ok(Some(
                    f.expunged
                        .iter()
                        .filter(|(_, m)| *m > since)
                        .map(|(u, _)| *u)
                        .collect(),
                )))
            }
            Request::Select {
                folder,
                read_only,
                vanished_since,
            } => {
                session.selected = None;
                let user = self.user(conn);
                let Some(id) = self.folder_id(&user, &folder) else {
                    return Some(Reply::Selected(Err(Fault::NotFound)));
                };
                self.sessions.entry(conn).or_default().selected = Some((id, read_only));
                let f = self.folders.get_mut(&id).expect("folder");
                let recent = f
                    .messages
                    .range(f.recent_from..)
                    .map(|(uid, _)| *uid)
                    .collect();
                if !read_only {
                    f.recent_from = f.uidnext;
                }
                let mut keywords: Vec<String> = Vec::new();
                for m in f.messages.values() {
                    for k in &m.flags.keywords {
                        if !keywords.contains(k) {
                            keywords.push(k.clone());
                        }
                    }
                }
                Reply::Selected(Ok(SelectedFolder {
                    id: FolderId(id),
                    uidvalidity: f.uidvalidity,
                    uidnext: f.uidnext,
                    highest_modseq: f.highest_modseq,
                    uids: std::sync::Arc::new(f.messages.keys().copied().collect()),
                    first_unseen: f
                        .messages
                        .values()
                        .position(|m| !m.flags.names().iter().any(|f| f == "\\Seen"))
                        .map(|i| i as u32 + 1),
                    changed: f
                        .messages
                        .iter()
                        .filter(|(_, m)| vanished_since.is_some_and(|since| m.modseq > since))
                        .map(|(uid, m)| ViewEntry {
                            uid: *uid,
                            flags: m.flags.names(),
                            modseq: m.modseq,
                        })
                        .collect(),
                    recent,
                    keywords,
                    vanished: vanished_since.map(|since| {
                        f.expunged
                            .iter()
                            .filter(|(_, m)| *m > since)
                            .map(|(u, _)| *u)
                            .collect()
                    }),
                }))
            }
            Request::Deselect { .. } => {
                session.selected = None;
                return None;
            }
            Request::SignOut => {
                session.user = None;
                return None;
            }
            Request::Create {
                folder,
                special_use,
                parents,
            } => {
                let user = self.user(conn);
                // The session names only uses this host listed in its configuration.
                let usage = special_use.and_then(|attr| {
                    SPECIAL_USES
                        .iter()
                        .find(|u| u.eq_ignore_ascii_case(&attr))
                        .copied()
                });
                let folder = normalize_inbox(&folder);
                Reply::Created(validate_name(&folder).and_then(|()| {
                    if self.folder_id(&user, &folder).is_some() {
                        return Err(Fault::AlreadyExists);
                    }
                    self.create_parents(&user, &parents);
                    self.create_folder(&user, &folder, usage);
                    self.folder_id(&user, &folder)
                        .map(FolderId)
                        .ok_or(Fault::NotFound)
                }))
            }
            Request::Delete { folder } => {
                let user = self.user(conn);
                Reply::Done(match self.folder_id(&user, &folder) {
                    None => Err(Fault::NotFound),
                    Some(id) if self.folders[&id].name == "INBOX" => {
                        Err(Fault::NotAllowed("INBOX cannot be deleted".into()))
                    }
                    Some(id) => {
                        if let Some(gone) = self.folders.remove(&id) {
                            let name = gone.name;
                            self.metadata.remove(&(user.clone(), name.clone()));
                            self.named.push((user, AccountEvent::Deleted { name }));
                        }
                        Ok(())
                    }
                })
            }
            Request::Rename { from, to, parents } => {
                let user = self.user(conn);
                Reply::Done(self.rename(&user, &from, &to, &parents))
            }
            Request::RenameInbox { to, parents } => {
                let user = self.user(conn);
                Reply::Done(self.rename_inbox(&user, &to, &parents, events))
            }
            Request::GetMetadata { folder } => {
                let user = self.user(conn);
                if !folder.is_empty() && self.folder_id(&user, &folder).is_none() {
                    return Some(Reply::Metadata(Err(Fault::NotFound)));
                }
                let mut entries: Vec<(String, Vec<u8>)> = self
                    .metadata
                    .get(&(user, folder.clone()))
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                if folder.is_empty() {
                    entries.push((
                        "/shared/admin".into(),
                        b"mailto:postmaster@example.com".to_vec(),
                    ));
                    entries.sort();
                }
                Reply::Metadata(Ok(entries))
            }
            Request::SetMetadata { folder, changes } => {
                let user = self.user(conn);
                if !folder.is_empty() && self.folder_id(&user, &folder).is_none() {
                    return Some(Reply::Done(Err(Fault::NotFound)));
                }
                let mut entries = self
                    .metadata
                    .get(&(user.clone(), folder.clone()))
                    .cloned()
                    .unwrap_or_default();
                let names: Vec<String> = changes.iter().map(|(name, _)| name.clone()).collect();
                for (name, value) in changes {
                    match value {
                        Some(value) => entries.insert(name, value),
                        None => entries.remove(&name),
                    };
                }
                if entries.len() > 50 {
                    return Some(Reply::Done(Err(Fault::TooManyAnnotations)));
                }
                self.named.push((
                    user.clone(),
                    AccountEvent::Metadata {
                        folder: (!folder.is_empty()).then(|| folder.clone()),
                        entries: names,
                    },
                ));
                self.metadata.insert((user, folder), entries);
                Reply::Done(Ok(()))
            }
            Request::Subscribe { folder, subscribed } => {
                let user = self.user(conn);
                let folder = normalize_inbox(&folder);
                Reply::Done(validate_name(&folder).map(|()| {
                    let exists = self.folder_id(&user, &folder).is_some();
                    self.named.push((
                        user.clone(),
                        AccountEvent::Subscription {
                            name: folder.clone(),
                            subscribed,
                            exists,
                        },
                    ));
                    let entry = (user, folder);
                    if subscribed {
                        self.subscriptions.insert(entry);
                    } else {
                        self.subscriptions.remove(&entry);
                    }
                }))
            }
            Request::Append { folder, messages } => {
                let user = self.user(conn);
                Reply::Appended(match self.folder_id(&user, &folder) {
                    None => Err(Fault::NotFound),
                    Some(id) => {
                        let total: u64 =
                            messages.iter().map(|m| crlf(&m.message).len() as u64).sum();
                        self.check_room(&user, total).map(|()| {
                            let uids = messages
                                .into_iter()
                                .map(|item| {
                                    let flags = Flags::from_names(&item.flags);
                                    self.append(id, &item.message, flags, item.date, events)
                                })
                                .collect();
                            (self.folders[&id].uidvalidity, uids)
                        })
                    }
                })
            }
            Request::Catenate { job } => {
                let mut parts = HostParts {
                    user: self.user(conn),
                    host: self,
                };
                Reply::Catenated(job.run(&mut parts))
            }
            // No full-text index here: SEARCH reads every message.
            Request::TextIndex { queries, .. } => Reply::TextIndex(vec![None; queries.len()]),
            Request::Scan { folder, job } => {
                // A folder deleted under a session has no messages left (as in the store).
                let f = self.folders.get(&folder.0);
                let stream = job.stream_above.is_some();
                let read = |uid: u32, detail| {
                    Ok::<_, Fault>(
                        f.and_then(|f| f.messages.get(&uid))
                            .map(|m| Self::message_data(uid, m, detail, stream)),
                    )
                };
                Reply::Scanned(job.run(self.now.timestamp, read))
            }
            Request::StoreFlags {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let watchers = self.watchers(folder.0);
                let Some(f) = self.folders.get_mut(&folder.0) else {
                    return Some(Reply::FlagsStored(Err(Fault::NotFound)));
                };
                let mut stored = FlagsStored::default();
                let mut flags_changed = false;
                for uid in uids {
                    let Some(m) = f.messages.get_mut(&uid) else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|since| m.modseq > since) {
                        stored.modified.push(uid);
                    } else {
                        let before = m.flags.clone();
                        match mode {
                            StoreMode::Add => flags.iter().for_each(|n| m.flags.insert(n)),
                            StoreMode::Remove => flags.iter().for_each(|n| m.flags.remove(n)),
                            StoreMode::Replace => m.flags = Flags::from_names(&flags),
                        }
                        if m.flags != before {
                            flags_changed = true;
                            f.highest_modseq += 1;
                            m.modseq = f.highest_modseq;
                            for (watcher, _) in &watchers {
                                if *watcher != conn {
                                    events.push((
                                        *watcher,
                                        FolderEvent::FlagsChanged {
                                            folder,
                                            uid,
                                            flags: m.flags.names(),
                                            modseq: m.modseq,
                                        },
                                    ));
                                }
                            }
                        }
                    }
                    stored.current.push((uid, m.flags.names(), m.modseq));
                }
                if flags_changed {
                    self.changed.entry(folder.0).or_insert(false);
                }
                Reply::FlagsStored(Ok(stored))
            }
            Request::Expunge { folder, uids } => {
                let Some(f) = self.folders.get(&folder.0) else {
                    return Some(Reply::Expunged(Err(Fault::NotFound)));
                };
                let doomed: Vec<u32> = f
                    .messages
                    .iter()
                    .filter(|(uid, m)| {
                        m.flags.contains("\\Deleted")
                            && uids.as_ref().is_none_or(|wanted| wanted.contains(uid))
                    })
                    .map(|(uid, _)| *uid)
                    .collect();
                self.remove(folder.0, &doomed, Some(conn), events);
                Reply::Expunged(Ok(doomed))
            }
            Request::Copy {
                folder,
                uids,
                destination,
                moving,
            } => {
                let user = self.user(conn);
                let Some(target) = self.folder_id(&user, &destination) else {
                    return Some(Reply::Copied(Err(Fault::NotFound)));
                };
                if !self.folders.contains_key(&folder.0) {
                    return Some(Reply::Copied(Err(Fault::NotFound)));
                }
                let mut sources: Vec<u32> = uids
                    .into_iter()
                    .filter(|uid| self.folders[&folder.0].messages.contains_key(uid))
                    .collect();
                sources.sort_unstable();
                sources.dedup();
                // A MOVE stays within the account: only a COPY adds to its usage.
                if !moving {
                    let size = sources
                        .iter()
                        .map(|uid| self.folders[&folder.0].messages[uid].raw.len() as u64)
                        .sum();
                    if let Err(fault) = self.check_room(&user, size) {
                        return Some(Reply::Copied(Err(fault)));
                    }
                }
                let mut pairs = Vec::new();
                for uid in &sources {
                    let m = &self.folders[&folder.0].messages[uid];
                    let (raw, flags, date) = (m.raw.clone(), m.flags.clone(), m.internal_date);
                    let new_uid = self.append(target, &raw, flags, Some(date), events);
                    pairs.push((*uid, new_uid));
                }
                if moving {
                    self.remove(folder.0, &sources, Some(conn), events);
                }
                Reply::Copied(Ok(Copied {
                    uidvalidity: self.folders[&target].uidvalidity,
                    pairs,
                }))
            }
        })
    }

    /// Checks a RENAME's new name as the store does.
    fn check_new_name(&self, user: &str, to: &str) -> Result<String, Fault> {
        let to = normalize_inbox(to);
        validate_name(&to)?;
        if self.folder_id(user, &to).is_some() {
            return Err(Fault::AlreadyExists);
        }
        if to == "INBOX" {
            return Err(Fault::NotAllowed("INBOX cannot be renamed this way".into()));
        }
        Ok(to)
    }

    /// RFC 9051 §6.3.6: the messages move to the new folder; INBOX stays, empty. Every
    /// session with INBOX selected is told, the renaming one too: RENAME itself reports
    /// nothing about the selected folder.
    fn rename_inbox(
        &mut self,
        user: &str,
        to: &str,
        parents: &[String],
        events: &mut Events,
    ) -> Result<(), Fault> {
        let id = self.folder_id(user, "INBOX").ok_or(Fault::NotFound)?;
        let to = self.check_new_name(user, to)?;
        self.create_parents(user, parents);
        self.create_folder(user, &to, None);
        let target = self.folder_id(user, &to).ok_or(Fault::NotFound)?;
        let uids: Vec<u32> = self.folders[&id].messages.keys().copied().collect();
        for uid in &uids {
            let m = &self.folders[&id].messages[uid];
            let (raw, flags, date) = (m.raw.clone(), m.flags.clone(), m.internal_date);
            self.append(target, &raw, flags, Some(date), events);
        }
        self.remove(id, &uids, None, events);
        Ok(())
    }

    fn rename(
        &mut self,
        user: &str,
        from: &str,
        to: &str,
        parents: &[String],
    ) -> Result<(), Fault> {
        let Some(id) = self.folder_id(user, from) else {
            return Err(Fault::NotFound);
        };
        let to = self.check_new_name(user, to)?;
        let old = self.folders[&id].name.clone();
        let prefix = format!("{old}/");
        let moves: Vec<(u64, String)> = self
            .folders
            .iter()
            .filter(|(_, f)| f.account == user)
            .filter_map(|(fid, f)| {
                if *fid == id {
                    Some((*fid, to.clone()))
                } else {
                    f.name
                        .strip_prefix(&prefix)
                        .map(|rest| (*fid, format!("{to}/{rest}")))
                }
            })
            .collect();
        if moves
            .iter()
            .any(|(_, name)| self.folder_id(user, name).is_some())
        {
            return Err(Fault::AlreadyExists);
        }
        self.create_parents(user, parents);
        for (fid, name) in moves {
            let folder = self.folders.get_mut(&fid).expect("folder");
            // Subscriptions and annotations move with their folders, as in the store.
            let subscribed = self
                .subscriptions
                .remove(&(user.to_string(), folder.name.clone()));
            if subscribed {
                self.subscriptions.insert((user.to_string(), name.clone()));
            }
            self.named.push((
                user.to_string(),
                AccountEvent::Renamed {
                    from: folder.name.clone(),
                    to: name.clone(),
                    subscribed,
                },
            ));
            if let Some(entries) = self
                .metadata
                .remove(&(user.to_string(), folder.name.clone()))
            {
                self.metadata
                    .insert((user.to_string(), name.clone()), entries);
            }
            folder.name = name;
        }
        Ok(())
    }
}

/// The fake host's folders as a CATENATE job reads them: the user's own only.
struct HostParts<'a> {
    host: &'a Host,
    user: String,
}

impl HostParts<'_> {
    fn folder(&self, mailbox: &UrlMailbox) -> Option<&Folder> {
        match mailbox {
            UrlMailbox::Named(name) => self
                .host
                .folder_id(&self.user, name)
                .map(|id| &self.host.folders[&id]),
            UrlMailbox::Selected(id) => self
                .host
                .folders
                .get(&id.0)
                .filter(|f| f.account == self.user),
        }
    }

    fn message(&self, mailbox: &UrlMailbox, uid: u32) -> Option<&Message> {
        self.folder(mailbox)?.messages.get(&uid)
    }
}

impl PartSource for HostParts<'_> {
    type Error = Fault;

    fn uidvalidity(&mut self, mailbox: &UrlMailbox) -> Result<Option<u32>, Fault> {
        Ok(self.folder(mailbox).map(|f| f.uidvalidity))
    }

    fn summary(&mut self, mailbox: &UrlMailbox, uid: u32) -> Result<Option<MessageSummary>, Fault> {
        Ok(self.message(mailbox, uid).map(|m| m.summary.clone()))
    }

    fn read(
        &mut self,
        mailbox: &UrlMailbox,
        uid: u32,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, Fault> {
        let Some(m) = self.message(mailbox, uid) else {
            return Ok(None);
        };
        let (start, end) = (start as usize, (start + len) as usize);
        m.raw
            .get(start..end)
            .map(|bytes| Some(bytes.to_vec()))
            .ok_or_else(|| Fault::Damaged(format!("message UID {uid}")))
    }
}

fn corpus_message(prefix: &str) -> Vec<u8> {
    let corpus = Path::new(portico_testkit::TEST_DATA).join("corpus");
    let mut matches: Vec<PathBuf> = std::fs::read_dir(corpus)
        .expect("corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    matches.sort();
    assert_eq!(
        matches.len(),
        1,
        "corpus prefix {prefix:?} names {matches:?}"
    );
    std::fs::read(&matches[0]).expect("corpus message")
}

// ---- Transcripts -----------------------------------------------------------------------

#[derive(Debug)]
enum Step {
    Client { conn: usize, line: String },
    Server { conn: usize, pattern: String },
    Closed { conn: usize },
    Message { args: Vec<String> },
    Quota { account: String, limit: Option<u64> },
    Clock { now: DateTime },
}

struct Transcript {
    /// (line number, step)
    steps: Vec<(usize, Step)>,
    /// Connections that start without TLS; None: every one.
    plain: Option<BTreeSet<usize>>,
    config: ImapConfig,
}

fn parse_transcript(text: &str) -> Result<Transcript, String> {
    let mut transcript = Transcript {
        steps: Vec::new(),
        plain: None,
        config: ImapConfig::default(),
    };
    let mut plain_all = false;
    let mut plain = BTreeSet::new();
    let first = text.lines().next().unwrap_or_default();
    if !first.starts_with("# ") {
        return Err("the first line must be a `# ` comment saying what is shown".into());
    }
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(directive) = line.strip_prefix("! ") {
            let words: Vec<&str> = directive.split_whitespace().collect();
            let number_arg = |i: usize| -> Result<u64, String> {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("line {number}: a number is missing"))
            };
            match words.first().copied() {
                Some("plain") if words.len() == 1 => plain_all = true,
                Some("plain") => {
                    for w in &words[1..] {
                        plain.insert(w.parse().map_err(|_| format!("line {number}: bad conn"))?);
                    }
                }
                Some("login-plaintext") => transcript.config.plaintext_login_without_tls = true,
                Some("append-limit") => transcript.config.append_limit = number_arg(1)?,
                Some("max-line") => transcript.config.max_line = number_arg(1)? as usize,
                Some("max-bad") => transcript.config.max_bad_commands = number_arg(1)? as u32,
                Some("literal-minus") => transcript.config.literal_plus = false,
                Some("quota") => {
                    let account = words.get(1).ok_or("quota: account")?.to_string();
                    let limit = match words.get(2) {
                        Some(&"none") => None,
                        Some(_) => Some(number_arg(2)?),
                        None => return Err(format!("line {number}: quota: a limit")),
                    };
                    transcript
                        .steps
                        .push((number, Step::Quota { account, limit }));
                }
                Some("clock") => {
                    let date = directive["clock".len()..].trim();
                    // Read as APPEND's date-time, as `! message` dates are.
                    let raw = format!("x APPEND INBOX {date} {{0}}\r\n");
                    let now = match parse_command(raw.as_bytes()).map(|c| c.body) {
                        Ok(CommandBody::Append { messages, .. }) => {
                            messages.into_iter().next().and_then(|m| m.date)
                        }
                        _ => None,
                    }
                    .ok_or_else(|| format!("line {number}: clock: not a date-time {date:?}"))?;
                    transcript.steps.push((number, Step::Clock { now }));
                }
                Some("message") => {
                    // account folder prefix [rest]: the folder may be quoted.
                    let rest = directive["message".len()..].trim();
                    let mut args = Vec::new();
                    let (account, rest) = rest.split_once(' ').ok_or("message: account")?;
                    args.push(account.to_string());
                    let rest = rest.trim_start();
                    let (folder, rest) = if let Some(quoted) = rest.strip_prefix('"') {
                        let end = quoted.find('"').ok_or("message: unterminated folder")?;
                        (&quoted[..end], &quoted[end + 1..])
                    } else {
                        rest.split_once(' ').unwrap_or((rest, ""))
                    };
                    args.push(folder.to_string());
                    let rest = rest.trim_start();
                    let (prefix, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                    args.push(prefix.to_string());
                    args.push(rest.trim().to_string());
                    transcript.steps.push((number, Step::Message { args }));
                }
                _ => return Err(format!("line {number}: unknown directive {directive:?}")),
            }
            continue;
        }
        let (conn, rest) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {number}: cannot read {line:?}"))?;
        let conn: usize = conn
            .parse()
            .map_err(|_| format!("line {number}: no connection number in {line:?}"))?;
        let step = if let Some(text) = rest.strip_prefix("C:") {
            Step::Client {
                conn,
                line: text.strip_prefix(' ').unwrap_or(text).to_string(),
            }
        } else if let Some(text) = rest.strip_prefix("S:") {
            // `S:` alone (an editor may strip the space) is an empty line.
            Step::Server {
                conn,
                pattern: text.strip_prefix(' ').unwrap_or(text).to_string(),
            }
        } else if rest == "closed" {
            Step::Closed { conn }
        } else {
            return Err(format!("line {number}: cannot read {line:?}"));
        };
        transcript.steps.push((number, step));
    }
    // None: every connection starts without TLS.
    transcript.plain = if plain_all { None } else { Some(plain) };
    Ok(transcript)
}

/// `$name`: a lower-case letter, then letters, digits and `_`.
fn variable_at(s: &[u8], i: usize) -> Option<usize> {
    if s.get(i) != Some(&b'$') || !s.get(i + 1).is_some_and(u8::is_ascii_lowercase) {
        return None;
    }
    let mut end = i + 2;
    while s
        .get(end)
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        end += 1;
    }
    Some(end)
}

fn substitute(line: &str, vars: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, String> {
    let s = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if let Some(end) = variable_at(s, i) {
            let name = &line[i + 1..end];
            let value = vars
                .get(name)
                .ok_or_else(|| format!("variable ${name} is not set yet"))?;
            out.extend_from_slice(value);
            i = end;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Matches one server line against a pattern, binding new variables.
fn line_matches(pattern: &str, line: &[u8], vars: &mut BTreeMap<String, Vec<u8>>) -> bool {
    let p = pattern.as_bytes();
    let (p, wildcard) = if p.len() > 1 && p.ends_with(b"*") {
        (&p[..p.len() - 1], true)
    } else {
        (p, false)
    };
    let mut bound = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < p.len() {
        if let Some(end) = variable_at(p, i) {
            let name = String::from_utf8_lossy(&p[i + 1..end]).into_owned();
            let value = match vars.get(&name) {
                Some(value) => value.clone(),
                None => {
                    let len = line[j..]
                        .iter()
                        .take_while(|b| !matches!(b, b' ' | b')' | b']'))
                        .count();
                    let value = line[j..j + len].to_vec();
                    bound.push((name, value.clone()));
                    value
                }
            };
            if !line[j..].starts_with(&value) {
                return false;
            }
            j += value.len();
            i = end;
        } else {
            if line.get(j) != Some(&p[i]) {
                return false;
            }
            i += 1;
            j += 1;
        }
    }
    if !wildcard && j != line.len() {
        return false;
    }
    vars.extend(bound);
    true
}

/// Splits a connection's output into responses, checking literals, quoted strings and
/// parentheses of data responses.
fn check_syntax(out: &[u8]) -> Result<(), String> {
    let show = |at: usize| String::from_utf8_lossy(&out[at..out.len().min(at + 80)]).into_owned();
    let mut i = 0;
    while i < out.len() {
        let start = i;
        let Some(eol) = out[i..].windows(2).position(|w| w == b"\r\n") else {
            return Err(format!("output ends without CRLF: {:?}", show(start)));
        };
        let line = &out[i..i + eol];
        let status = match line.strip_prefix(b"* ") {
            None => true,
            Some(rest) => {
                let word: Vec<u8> = rest.iter().take_while(|b| **b != b' ').copied().collect();
                matches!(
                    word.as_slice(),
                    b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH"
                )
            }
        };
        if status {
            if line.iter().any(|b| *b == b'\r' || *b == b'\n' || *b == 0) {
                return Err(format!("control byte in status response {:?}", show(start)));
            }
            i += eol + 2;
            continue;
        }
        let mut depth: i32 = 0;
        loop {
            let Some(&b) = out.get(i) else {
                return Err(format!("response cut short: {:?}", show(start)));
            };
            match b {
                b'"' => {
                    i += 1;
                    loop {
                        match out.get(i) {
                            None | Some(b'\r' | b'\n') => {
                                return Err(format!(
                                    "unterminated quoted string: {:?}",
                                    show(start)
                                ));
                            }
                            Some(b'\\') => i += 2,
                            Some(b'"') => break,
                            Some(_) => i += 1,
                        }
                    }
                    i += 1;
                }
                b'{' => {
                    let digits: Vec<u8> = out[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .copied()
                        .collect();
                    let after = i + 1 + digits.len();
                    if digits.is_empty() || !out[after..].starts_with(b"}\r\n") {
                        i += 1;
                        continue;
                    }
                    let n: usize = String::from_utf8_lossy(&digits).parse().expect("digits");
                    i = after + 3 + n;
                    if i > out.len() {
                        return Err(format!("literal longer than the output: {:?}", show(start)));
                    }
                }
                b'(' => {
                    depth += 1;
                    i += 1;
                }
                b')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(format!("unbalanced ')': {:?}", show(start)));
                    }
                    i += 1;
                }
                b'\r' => {
                    if out.get(i + 1) != Some(&b'\n') {
                        return Err(format!("bare CR: {:?}", show(start)));
                    }
                    if depth != 0 {
                        return Err(format!("unbalanced '(': {:?}", show(start)));
                    }
                    i += 2;
                    break;
                }
                b'\n' | 0 => return Err(format!("bare LF or NUL: {:?}", show(start))),
                _ => i += 1,
            }
        }
    }
    Ok(())
}

// ---- Running ---------------------------------------------------------------------------

struct Conn {
    session: Session,
    /// Everything the server wrote, for the syntax check.
    written: Vec<u8>,
    /// Written but not yet cut into lines.
    partial: Vec<u8>,
    lines: VecDeque<Vec<u8>>,
    closed: bool,
    /// STARTTLS began during the current write: the rest of it was sent in plaintext
    /// and is lost (it would be garbage to the TLS layer).
    tls_started: bool,
}

impl Conn {
    fn write(&mut self, bytes: &[u8]) {
        self.written.extend_from_slice(bytes);
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.windows(2).position(|w| w == b"\r\n") {
            let line = self.partial[..pos].to_vec();
            self.partial.drain(..pos + 2);
            self.lines.push_back(line);
        }
    }
}

struct Harness {
    host: Host,
    conns: BTreeMap<usize, Conn>,
    config: ImapConfig,
    plain: Option<BTreeSet<usize>>,
    bytewise: bool,
}

impl Harness {
    fn conn(&mut self, i: usize) -> &mut Conn {
        self.conns.get_mut(&i).expect("open connection")
    }

    fn open(&mut self, i: usize, keep_greeting: bool) {
        if self.conns.contains_key(&i) {
            return;
        }
        let tls = match &self.plain {
            None => false,
            Some(plain) => !plain.contains(&i),
        };
        let session = Session::new(self.config.clone(), tls);
        self.conns.insert(
            i,
            Conn {
                session,
                written: Vec::new(),
                partial: Vec::new(),
                lines: VecDeque::new(),
                closed: false,
                tls_started: false,
            },
        );
        self.drive(i);
        if !keep_greeting {
            self.conn(i).lines.clear();
        }
    }

    /// Carries out a session's actions until it has none; requests are answered at once.
    fn drive(&mut self, i: usize) {
        while let Some(action) = self.conn(i).session.next_action() {
            match action {
                Action::Write(bytes) => self.conn(i).write(&bytes),
                Action::Close => {
                    self.conn(i).closed = true;
                    if let Some(session) = self.host.sessions.get_mut(&i) {
                        session.selected = None;
                    }
                }
                Action::StartTls => {
                    let conn = self.conn(i);
                    conn.tls_started = true;
                    conn.session.handle(Input::TlsEstablished);
                }
                Action::Compress { unread } => self.conn(i).session.handle(Input::Bytes(&unread)),
                Action::Stream {
                    folder,
                    uid,
                    start,
                    len,
                } => {
                    let raw = &self.host.folders[&folder.0].messages[&uid].raw;
                    let from = (start as usize).min(raw.len());
                    let bytes = raw[from..(from + len as usize).min(raw.len())].to_vec();
                    self.conn(i).write(&bytes);
                }
                Action::Request(id, request) => {
                    let mut events = Vec::new();
                    let reply = self.host.execute(i, request, &mut events);
                    for (target, event) in events {
                        if let Some(conn) = self.conns.get_mut(&target) {
                            conn.session.handle(Input::Event(event));
                            if target != i {
                                self.drive(target);
                            }
                        }
                    }
                    self.tell_account_events(Some(i));
                    if let Some(reply) = reply {
                        self.conn(i).session.handle(Input::Reply(id, reply));
                    }
                }
            }
        }
    }

    fn send(&mut self, i: usize, bytes: &[u8]) {
        self.conn(i).tls_started = false;
        if self.bytewise {
            for b in bytes {
                self.conn(i)
                    .session
                    .handle(Input::Bytes(std::slice::from_ref(b)));
                self.drive(i);
                if self.conn(i).tls_started {
                    break;
                }
            }
        } else {
            self.conn(i).session.handle(Input::Bytes(bytes));
            self.drive(i);
        }
    }

    fn deliver(&mut self, args: &[String]) -> Result<(), String> {
        let [account, folder, prefix, rest] = args else {
            return Err("message: account folder prefix [flags] [date]".into());
        };
        let (flags, date) = parse_append_args(rest);
        let id = self
            .host
            .folder_id(account, folder)
            .ok_or_else(|| format!("message: no folder {folder:?} for {account}"))?;
        let raw = corpus_message(prefix);
        let mut events = Vec::new();
        self.host
            .append(id, &raw, Flags::from_names(&flags), date, &mut events);
        for (target, event) in events {
            if let Some(conn) = self.conns.get_mut(&target) {
                conn.session.handle(Input::Event(event));
                self.drive(target);
            }
        }
        self.tell_account_events(None);
        Ok(())
    }

    /// NOTIFY: hands each listening session what the last request (of `origin`) or
    /// delivery changed elsewhere in its account.
    fn tell_account_events(&mut self, origin: Option<usize>) {
        for (target, event) in self.host.account_events(origin) {
            if let Some(conn) = self.conns.get_mut(&target) {
                conn.session.handle(Input::Account(event));
                self.drive(target);
            }
        }
    }
}

fn show_lines(lines: &VecDeque<Vec<u8>>) -> String {
    lines
        .iter()
        .map(|l| format!("\n      {}", String::from_utf8_lossy(l)))
        .collect()
}

/// Runs one transcript; `record` prints what the server said instead of checking it.
fn run(transcript: &Transcript, bytewise: bool, record: bool) -> Result<(), String> {
    let mut harness = Harness {
        host: Host::new(),
        conns: BTreeMap::new(),
        config: transcript.config.clone(),
        plain: transcript.plain.clone(),
        bytewise,
    };
    let mut vars = BTreeMap::new();
    let steps = &transcript.steps;
    let mut k = 0;
    while k < steps.len() {
        let (number, step) = &steps[k];
        match step {
            Step::Message { args } => {
                harness
                    .deliver(args)
                    .map_err(|e| format!("line {number}: {e}"))?;
                k += 1;
            }
            Step::Quota { account, limit } => {
                let account = harness
                    .host
                    .accounts
                    .get_mut(account.as_str())
                    .ok_or_else(|| format!("line {number}: quota: no account {account:?}"))?;
                account.storage_limit = *limit;
                k += 1;
            }
            Step::Clock { now } => {
                harness.host.now = *now;
                k += 1;
            }
            Step::Client { conn, .. } => {
                let conn = *conn;
                harness.open(conn, false);
                if record {
                    let lines: Vec<_> = harness.conn(conn).lines.drain(..).collect();
                    for l in lines {
                        println!("{conn} S: {}", String::from_utf8_lossy(&l));
                    }
                }
                if !harness.conn(conn).lines.is_empty() {
                    return Err(format!(
                        "line {number}: connection {conn} has unexpected output:{}",
                        show_lines(&harness.conn(conn).lines)
                    ));
                }
                if harness.conn(conn).closed {
                    return Err(format!("line {number}: connection {conn} is closed"));
                }
                let mut bytes = Vec::new();
                while let Some((n, Step::Client { conn: c, line })) = steps.get(k) {
                    if *c != conn {
                        break;
                    }
                    if record {
                        println!("{conn} C: {line}");
                    }
                    bytes.extend(substitute(line, &vars).map_err(|e| format!("line {n}: {e}"))?);
                    bytes.extend_from_slice(b"\r\n");
                    k += 1;
                }
                harness.send(conn, &bytes);
            }
            Step::Server { conn, pattern } => {
                harness.open(*conn, true);
                if record {
                    k += 1;
                    continue;
                }
                let Some(line) = harness.conn(*conn).lines.pop_front() else {
                    return Err(format!(
                        "line {number}: connection {conn} expected {pattern:?}, got nothing"
                    ));
                };
                if !line_matches(pattern, &line, &mut vars) {
                    return Err(format!(
                        "line {number}: connection {conn}\n  expected {pattern}\n  got      {}{}",
                        String::from_utf8_lossy(&line),
                        show_lines(&harness.conn(*conn).lines)
                    ));
                }
                k += 1;
            }
            Step::Closed { conn } => {
                harness.open(*conn, true);
                if record {
                    let lines: Vec<_> = harness.conn(*conn).lines.drain(..).collect();
                    for l in lines {
                        println!("{conn} S: {}", String::from_utf8_lossy(&l));
                    }
                    println!("{conn} closed");
                }
                let c = harness.conn(*conn);
                if !c.closed || !c.lines.is_empty() {
                    return Err(format!(
                        "line {number}: connection {conn} is not closed, or has output:{}",
                        show_lines(&c.lines)
                    ));
                }
                k += 1;
            }
        }
    }
    for (i, conn) in &mut harness.conns {
        if record {
            for l in conn.lines.drain(..) {
                println!("{i} S: {}", String::from_utf8_lossy(&l));
            }
        }
        if !conn.lines.is_empty() {
            return Err(format!(
                "end: connection {i} has unexpected output:{}",
                show_lines(&conn.lines)
            ));
        }
        check_syntax(&conn.written).map_err(|e| format!("connection {i}: {e}"))?;
    }
    Ok(())
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every transcript, fed whole and byte by byte. `TRANSCRIPT=name` runs one;
/// `TRANSCRIPT_RECORD=name` prints what the server says to its client lines
/// (for writing a new transcript; every line must still be checked by hand).
#[test]
fn transcripts() {
    if let Ok(name) = std::env::var("TRANSCRIPT_RECORD") {
        let path = Path::new(TRANSCRIPTS).join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&path).expect("transcript");
        let transcript = parse_transcript(&text).expect("transcript syntax");
        if let Err(e) = run(&transcript, false, true) {
            println!("!! {e}");
        }
        return;
    }
    let only = std::env::var("TRANSCRIPT").ok();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in transcript_files(TRANSCRIPTS) {
        let name = name_of(&path);
        if only.as_ref().is_some_and(|only| *only != name) {
            continue;
        }
        count += 1;
        let text = std::fs::read_to_string(&path).expect("transcript");
        let transcript = match parse_transcript(&text) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for bytewise in [false, true] {
            if let Err(e) = run(&transcript, bytewise, false) {
                let how = if bytewise { "byte by byte" } else { "whole" };
                failures.push(format!("{name} ({how}): {e}"));
            }
        }
    }
    assert!(count > 0, "no transcripts found");
    assert!(
        failures.is_empty(),
        "{} transcript failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn matcher_and_syntax_check() {
    let mut vars = BTreeMap::new();
    assert!(line_matches("a1 OK *", b"a1 OK LOGIN completed", &mut vars));
    assert!(!line_matches("a1 OK", b"a1 OK LOGIN completed", &mut vars));
    assert!(line_matches(
        "b2 OK [APPENDUID $uidv 1] *",
        b"b2 OK [APPENDUID 1001 1] APPEND completed",
        &mut vars
    ));
    assert_eq!(vars["uidv"], b"1001");
    assert!(!line_matches(
        "* OK [UIDVALIDITY $uidv] x",
        b"* OK [UIDVALIDITY 7] x",
        &mut vars
    ));
    assert!(line_matches(
        "* 1 FETCH (FLAGS ($Work))",
        b"* 1 FETCH (FLAGS ($Work))",
        &mut vars
    ));
    assert!(check_syntax(b"* 1 FETCH (BODY[] {5}\r\n((((()\r\na OK done\r\n").is_ok());
    assert!(check_syntax(b"* 1 FETCH (BODY[] {4}\r\n((((()\r\n").is_err());
    assert!(check_syntax(b"* LIST (\\Noselect \"/\" x\r\n").is_err());
}
