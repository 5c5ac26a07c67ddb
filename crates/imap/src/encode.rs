//! Commands back to wire bytes: what a client (or Portico as a proxy to another server)
//! would send. [`crate::parser::parse_command`] reads every encoding back to the same
//! value, for the values the grammar can express (see below).
//!
//! Strings are written as an atom when they can be, else quoted, else (CR, LF, NUL or
//! 8-bit bytes) as a synchronizing literal `{n}\r\n…`, which a live sender must only
//! send after the server's `+`. Encoding never fails and never panics; a value the
//! grammar cannot express comes out as bytes the parser rejects.
//!
//! Values with no wire form, or several values with one wire form (the round trip
//! normalises them):
//! - an empty [`SequenceSet`], a sequence number 0, an empty FETCH list, an empty
//!   SEARCH `And`, an empty SASL initial response, flags or atoms that are not atoms:
//!   no wire form;
//! - `SearchKey::And` of one key parses back as that key; `a:a` as `a`;
//! - `List { extended: false }` with anything that needs LIST-EXTENDED syntax parses
//!   back with `extended: true`; an empty selection with `extended: true` is written
//!   `LIST () …`;
//! - a [`DateTime`] offset is written in whole minutes (at most ±99:59), and its local
//!   time must fall in years 0000–9999;
//! - STORE flags are always written as a list, and `\Seen` stays as written (flags
//!   are not case-folded);
//! - SORT criteria: an empty list has no wire form, and a key given twice parses back
//!   once;
//! - an empty CATENATE list (RFC 4469) has no wire form.

use crate::command::{
    AppendData, AppendMessage, CatPart, Command, CommandBody, Date, DateTime, EventGroup,
    FetchAttr, FetchItems, ListReturn, ListSelection, MailboxFilter, MetadataDepth, NotifyEvent,
    Partial, PreviewForm, SearchKey, SearchReturn, Section, SectionText, SelectParams, SeqBound,
    SequenceSet, SortCriterion, SortKey, StatusItem, StoreMode, ThreadAlgorithm,
};
use crate::parser::{MONTHS, civil_from_days, is_astring_char, is_list_char};

impl Command {
    /// The command as wire bytes, ending in CRLF.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.raw(self.tag.0.as_bytes());
        w.raw(b" ");
        w.body(&self.body);
        w.raw(b"\r\n");
        w.0
    }
}

struct Writer(Vec<u8>);

fn quotable(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| matches!(b, 0x01..=0x7f) && b != b'\r' && b != b'\n')
}

impl Writer {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn num(&mut self, n: impl ToString) {
        self.raw(n.to_string().as_bytes());
    }

    /// quoted if possible, else a literal.
    fn string(&mut self, s: &[u8]) {
        if quotable(s) {
            self.raw(b"\"");
            for &b in s {
                if b == b'"' || b == b'\\' {
                    self.raw(b"\\");
                }
                self.0.push(b);
            }
            self.raw(b"\"");
        } else {
            self.raw(format!("{{{}}}\r\n", s.len()).as_bytes());
            self.raw(s);
        }
    }

    /// `{n}` CRLF and the bytes, whatever they are.
    fn literal(&mut self, s: &[u8]) {
        self.raw(format!("{{{}}}\r\n", s.len()).as_bytes());
        self.raw(s);
    }

    fn astring(&mut self, s: &[u8]) {
        if !s.is_empty() && s.iter().all(|&b| is_astring_char(b)) {
            self.raw(s);
        } else {
            self.string(s);
        }
    }

    fn list_mailbox(&mut self, s: &[u8]) {
        if !s.is_empty() && s.iter().all(|&b| is_list_char(b)) {
            self.raw(s);
        } else {
            self.string(s);
        }
    }

    fn nstring(&mut self, s: Option<&[u8]>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw(b"NIL"),
        }
    }

    /// `(a b c)` with `item` writing each element.
    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.raw(b"(");
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.raw(b" ");
            }
            item(self, x);
        }
        self.raw(b")");
    }

    fn seq_set(&mut self, set: &SequenceSet) {
        if set.is_saved() {
            return self.raw(b"$");
        }
        for (i, range) in set.0.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            self.seq_bound(range.start);
            if range.end != range.start {
                self.raw(b":");
                self.seq_bound(range.end);
            }
        }
    }

    fn seq_bound(&mut self, bound: SeqBound) {
        match bound {
            SeqBound::Value(n) => self.num(n),
            SeqBound::Star => self.raw(b"*"),
        }
    }

    fn flag_list(&mut self, flags: &[String]) {
        self.list(flags, |w, f| w.raw(f.as_bytes()));
    }

    fn month(&mut self, month: u32) {
        let name = usize::try_from(month)
            .ok()
            .and_then(|m| m.checked_sub(1))
            .and_then(|m| MONTHS.get(m))
            .unwrap_or(&"Jan");
        self.raw(name.as_bytes());
    }

    fn date(&mut self, date: Date) {
        self.raw(format!("{}-", date.day).as_bytes());
        self.month(u32::from(date.month));
        self.raw(format!("-{:04}", date.year).as_bytes());
    }

    fn date_time(&mut self, dt: DateTime) {
        let offset_minutes = i64::from(dt.offset) / 60;
        let local = dt.timestamp.saturating_add(offset_minutes * 60);
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let secs = local.rem_euclid(86_400);
        self.raw(format!("\"{day:02}-").as_bytes());
        self.month(month);
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let zone = offset_minutes.unsigned_abs();
        self.raw(
            format!(
                "-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
                year,
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                zone / 60,
                zone % 60
            )
            .as_bytes(),
        );
    }

    fn status_item(&mut self, item: &StatusItem) {
        self.raw(match item {
            StatusItem::Messages => b"MESSAGES".as_slice(),
            StatusItem::Recent => b"RECENT",
            StatusItem::UidNext => b"UIDNEXT",
            StatusItem::UidValidity => b"UIDVALIDITY",
            StatusItem::Unseen => b"UNSEEN",
            StatusItem::Deleted => b"DELETED",
            StatusItem::DeletedStorage => b"DELETED-STORAGE",
            StatusItem::Size => b"SIZE",
            StatusItem::HighestModSeq => b"HIGHESTMODSEQ",
            StatusItem::MailboxId => b"MAILBOXID",
        });
    }

    fn uid_prefix(&mut self, uid: bool) {
        if uid {
            self.raw(b"UID ");
        }
    }

    fn body(&mut self, body: &CommandBody) {
        match body {
            CommandBody::Capability
            | CommandBody::Noop
            | CommandBody::Logout
            | CommandBody::StartTls
            | CommandBody::Namespace
            | CommandBody::Idle
            | CommandBody::Check
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Unauthenticate
            | CommandBody::Expunge => self.raw(body.name().as_bytes()),
            CommandBody::Login { username, password } => {
                self.raw(b"LOGIN ");
                self.astring(username);
                self.raw(b" ");
                self.astring(&password.0);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                self.raw(b"AUTHENTICATE ");
                self.raw(mechanism.as_bytes());
                if let Some(ir) = initial_response {
                    self.raw(b" ");
                    self.raw(&ir.0);
                }
            }
            CommandBody::CancelUpdate { tags } => {
                self.raw(b"CANCELUPDATE");
                // A tag has no quote or backslash to escape.
                for tag in tags {
                    self.raw(format!(" \"{tag}\"").as_bytes());
                }
            }
            CommandBody::Compress { mechanism } => {
                self.raw(b"COMPRESS ");
                self.raw(mechanism.as_bytes());
            }
            CommandBody::Enable { capabilities } => {
                self.raw(b"ENABLE");
                for cap in capabilities {
                    self.raw(b" ");
                    self.raw(cap.as_bytes());
                }
            }
            CommandBody::Select { mailbox, params } | CommandBody::Examine { mailbox, params } => {
                self.raw(body.name().as_bytes());
                self.raw(b" ");
                self.astring(mailbox);
                self.select_params(params);
            }
            CommandBody::Create {
                mailbox,
                special_use,
            } => {
                self.raw(b"CREATE ");
                self.astring(mailbox);
                if !special_use.is_empty() {
                    self.raw(b" (USE ");
                    self.flag_list(special_use);
                    self.raw(b")");
                }
            }
            CommandBody::Delete { mailbox }
            | CommandBody::Subscribe { mailbox }
            | CommandBody::Unsubscribe { mailbox } => {
                self.raw(body.name().as_bytes());
                self.raw(b" ");
                self.astring(mailbox);
            }
            CommandBody::GetMetadata {
                mailbox,
                max_size,
                depth,
                entries,
            } => {
                self.raw(b"GETMETADATA ");
                let mut options = Vec::new();
                if let Some(max) = max_size {
                    options.push(format!("MAXSIZE {max}"));
                }
                match depth {
                    MetadataDepth::Zero => {}
                    MetadataDepth::One => options.push("DEPTH 1".into()),
                    MetadataDepth::Infinity => options.push("DEPTH infinity".into()),
                }
                if !options.is_empty() {
                    self.raw(format!("({}) ", options.join(" ")).as_bytes());
                }
                self.astring(mailbox);
                self.raw(b" ");
                self.list(entries, |w, e| w.astring(e.as_bytes()));
            }
            CommandBody::SetMetadata { mailbox, entries } => {
                self.raw(b"SETMETADATA ");
                self.astring(mailbox);
                self.raw(b" ");
                self.list(entries, |w, (entry, value)| {
                    w.astring(entry.as_bytes());
                    w.raw(b" ");
                    match value {
                        Some(v) if v.contains(&0) => {
                            w.raw(format!("~{{{}}}\r\n", v.len()).as_bytes());
                            w.raw(v);
                        }
                        other => w.nstring(other.as_deref()),
                    }
                });
            }
            CommandBody::Rename { from, to } => {
                self.raw(b"RENAME ");
                self.astring(from);
                self.raw(b" ");
                self.astring(to);
            }
            CommandBody::List {
                reference,
                patterns,
                selection,
                returns,
                extended,
            } => self.list_command(reference, patterns, selection, returns, *extended),
            CommandBody::Lsub { reference, pattern } => {
                self.raw(b"LSUB ");
                self.astring(reference);
                self.raw(b" ");
                self.list_mailbox(pattern);
            }
            CommandBody::Status { mailbox, items } => {
                self.raw(b"STATUS ");
                self.astring(mailbox);
                self.raw(b" ");
                self.list(items, Self::status_item);
            }
            CommandBody::Append { mailbox, messages } => {
                self.raw(b"APPEND ");
                self.astring(mailbox);
                for AppendMessage { flags, date, data } in messages {
                    if !flags.is_empty() {
                        self.raw(b" ");
                        self.flag_list(flags);
                    }
                    if let Some(date) = date {
                        self.raw(b" ");
                        self.date_time(*date);
                    }
                    match data {
                        AppendData::Literal(message) => {
                            self.raw(b" ");
                            self.literal(message);
                        }
                        AppendData::Catenate(parts) => {
                            self.raw(b" CATENATE ");
                            self.list(parts, |w, part| match part {
                                CatPart::Text(text) => {
                                    w.raw(b"TEXT ");
                                    w.literal(text);
                                }
                                CatPart::Url(url) => {
                                    w.raw(b"URL ");
                                    w.astring(url);
                                }
                            });
                        }
                    }
                }
            }
            CommandBody::UidExpunge { set } => {
                self.raw(b"UID EXPUNGE ");
                self.seq_set(set);
            }
            CommandBody::Search {
                uid,
                charset,
                returns,
                criteria,
            } => {
                self.uid_prefix(*uid);
                self.raw(b"SEARCH ");
                self.search_returns(returns.as_deref());
                if let Some(charset) = charset {
                    self.raw(b"CHARSET ");
                    self.astring(charset.as_bytes());
                    self.raw(b" ");
                }
                self.search_keys(criteria);
            }
            CommandBody::Sort {
                uid,
                returns,
                criteria,
                charset,
                search,
            } => {
                self.uid_prefix(*uid);
                self.raw(b"SORT ");
                self.search_returns(returns.as_deref());
                self.list(criteria, Self::sort_criterion);
                self.raw(b" ");
                self.astring(charset.as_bytes());
                self.raw(b" ");
                self.search_keys(search);
            }
            CommandBody::Thread {
                uid,
                algorithm,
                charset,
                search,
            } => {
                self.uid_prefix(*uid);
                self.raw(match algorithm {
                    ThreadAlgorithm::OrderedSubject => b"THREAD ORDEREDSUBJECT ".as_slice(),
                    ThreadAlgorithm::References => b"THREAD REFERENCES ",
                    ThreadAlgorithm::Refs => b"THREAD REFS ",
                });
                self.astring(charset.as_bytes());
                self.raw(b" ");
                self.search_keys(search);
            }
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                self.uid_prefix(*uid);
                self.raw(b"FETCH ");
                self.seq_set(set);
                self.raw(b" ");
                match items {
                    FetchItems::All => self.raw(b"ALL"),
                    FetchItems::Fast => self.raw(b"FAST"),
                    FetchItems::Full => self.raw(b"FULL"),
                    FetchItems::List(attrs) if attrs.len() == 1 => {
                        attrs.iter().for_each(|a| self.fetch_attr(a));
                    }
                    FetchItems::List(attrs) => self.list(attrs, Self::fetch_attr),
                }
                match (changed_since, vanished) {
                    (Some(modseq), true) => {
                        self.raw(format!(" (CHANGEDSINCE {modseq} VANISHED)").as_bytes());
                    }
                    (Some(modseq), false) => {
                        self.raw(format!(" (CHANGEDSINCE {modseq})").as_bytes());
                    }
                    (None, true) => self.raw(b" (VANISHED)"),
                    (None, false) => {}
                }
            }
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => {
                self.uid_prefix(*uid);
                self.raw(b"STORE ");
                self.seq_set(set);
                if let Some(modseq) = unchanged_since {
                    self.raw(format!(" (UNCHANGEDSINCE {modseq})").as_bytes());
                }
                self.raw(match mode {
                    StoreMode::Add => b" +FLAGS".as_slice(),
                    StoreMode::Remove => b" -FLAGS",
                    StoreMode::Replace => b" FLAGS",
                });
                if *silent {
                    self.raw(b".SILENT");
                }
                self.raw(b" ");
                self.flag_list(flags);
            }
            CommandBody::Copy { uid, set, mailbox } | CommandBody::Move { uid, set, mailbox } => {
                self.uid_prefix(*uid);
                self.raw(match body {
                    CommandBody::Copy { .. } => b"COPY ".as_slice(),
                    _ => b"MOVE ",
                });
                self.seq_set(set);
                self.raw(b" ");
                self.astring(mailbox);
            }
            CommandBody::GetQuota { root } => {
                self.raw(b"GETQUOTA ");
                self.astring(root);
            }
            CommandBody::GetQuotaRoot { mailbox } => {
                self.raw(b"GETQUOTAROOT ");
                self.astring(mailbox);
            }
            CommandBody::SetQuota { root, limits } => {
                self.raw(b"SETQUOTA ");
                self.astring(root);
                self.raw(b" ");
                self.list(limits, |w, (name, limit)| {
                    w.raw(name.as_bytes());
                    w.raw(b" ");
                    w.num(limit);
                });
            }
            CommandBody::Notify(None) => self.raw(b"NOTIFY NONE"),
            CommandBody::Notify(Some(set)) => {
                self.raw(b"NOTIFY SET");
                if set.status {
                    self.raw(b" STATUS");
                }
                for group in &set.groups {
                    self.raw(b" ");
                    self.event_group(group);
                }
            }
            CommandBody::Id { params } => {
                self.raw(b"ID ");
                match params {
                    None => self.raw(b"NIL"),
                    Some(params) => self.list(params, |w, (field, value)| {
                        w.string(field.as_bytes());
                        w.raw(b" ");
                        w.nstring(value.as_deref().map(str::as_bytes));
                    }),
                }
            }
        }
    }

    fn event_group(&mut self, group: &EventGroup) {
        self.raw(b"(");
        match &group.filter {
            MailboxFilter::Selected => self.raw(b"SELECTED"),
            MailboxFilter::SelectedDelayed => self.raw(b"SELECTED-DELAYED"),
            MailboxFilter::Inboxes => self.raw(b"INBOXES"),
            MailboxFilter::Personal => self.raw(b"PERSONAL"),
            MailboxFilter::Subscribed => self.raw(b"SUBSCRIBED"),
            MailboxFilter::Subtree(names) | MailboxFilter::Mailboxes(names) => {
                self.raw(match &group.filter {
                    MailboxFilter::Subtree(_) => b"SUBTREE ".as_slice(),
                    _ => b"MAILBOXES ",
                });
                self.list(names, |w, name| w.astring(name));
            }
        }
        self.raw(b" ");
        if group.events.is_empty() {
            self.raw(b"NONE");
        } else {
            self.list(&group.events, |w, event| match event {
                NotifyEvent::MessageNew(items) => {
                    w.raw(b"MessageNew");
                    if let Some(FetchItems::List(attrs)) = items {
                        w.raw(b" ");
                        w.list(attrs, Self::fetch_attr);
                    }
                }
                NotifyEvent::MessageExpunge => w.raw(b"MessageExpunge"),
                NotifyEvent::FlagChange => w.raw(b"FlagChange"),
                NotifyEvent::AnnotationChange => w.raw(b"AnnotationChange"),
                NotifyEvent::MailboxName => w.raw(b"MailboxName"),
                NotifyEvent::SubscriptionChange => w.raw(b"SubscriptionChange"),
                NotifyEvent::MailboxMetadataChange => w.raw(b"MailboxMetadataChange"),
                NotifyEvent::ServerMetadataChange => w.raw(b"ServerMetadataChange"),
                NotifyEvent::Other(name) => w.raw(name.as_bytes()),
            });
        }
        self.raw(b")");
    }

    fn select_params(&mut self, params: &SelectParams) {
        if !params.condstore && params.qresync.is_none() {
            return;
        }
        self.raw(b" (");
        if params.condstore {
            self.raw(b"CONDSTORE");
            if params.qresync.is_some() {
                self.raw(b" ");
            }
        }
        if let Some(q) = &params.qresync {
            self.raw(format!("QRESYNC ({} {}", q.uidvalidity, q.modseq).as_bytes());
            if let Some(known) = &q.known_uids {
                self.raw(b" ");
                self.seq_set(known);
            }
            if let Some((seqs, uids)) = &q.seq_match {
                self.raw(b" (");
                self.seq_set(seqs);
                self.raw(b" ");
                self.seq_set(uids);
                self.raw(b")");
            }
            self.raw(b")");
        }
        self.raw(b")");
    }

    fn list_command(
        &mut self,
        reference: &[u8],
        patterns: &[Vec<u8>],
        selection: &[ListSelection],
        returns: &[ListReturn],
        extended: bool,
    ) {
        self.raw(b"LIST ");
        if !selection.is_empty() || (extended && returns.is_empty() && patterns.len() == 1) {
            self.list(selection, |w, s| {
                w.raw(match s {
                    ListSelection::Subscribed => b"SUBSCRIBED".as_slice(),
                    ListSelection::Remote => b"REMOTE",
                    ListSelection::RecursiveMatch => b"RECURSIVEMATCH",
                    ListSelection::SpecialUse => b"SPECIAL-USE",
                })
            });
            self.raw(b" ");
        }
        self.astring(reference);
        self.raw(b" ");
        match patterns {
            [pattern] => self.list_mailbox(pattern),
            _ => self.list(patterns, |w, p| w.list_mailbox(p)),
        }
        if !returns.is_empty() {
            self.raw(b" RETURN ");
            self.list(returns, |w, r| match r {
                ListReturn::Subscribed => w.raw(b"SUBSCRIBED"),
                ListReturn::Children => w.raw(b"CHILDREN"),
                ListReturn::SpecialUse => w.raw(b"SPECIAL-USE"),
                ListReturn::Status(items) => {
                    w.raw(b"STATUS ");
                    w.list(items, Self::status_item);
                }
            });
        }
    }

    /// `RETURN (…) ` when there are return options.
    fn search_returns(&mut self, returns: Option<&[SearchReturn]>) {
        let Some(returns) = returns else {
            return;
        };
        self.raw(b"RETURN ");
        self.list(returns, |w, r| match r {
            SearchReturn::Min => w.raw(b"MIN"),
            SearchReturn::Max => w.raw(b"MAX"),
            SearchReturn::All => w.raw(b"ALL"),
            SearchReturn::Count => w.raw(b"COUNT"),
            SearchReturn::Save => w.raw(b"SAVE"),
            SearchReturn::Partial(range) => w.raw(format!("PARTIAL {range}").as_bytes()),
            SearchReturn::Update => w.raw(b"UPDATE"),
            SearchReturn::Context => w.raw(b"CONTEXT"),
        });
        self.raw(b" ");
    }

    /// The keys of a search program: an `And` at the top is written as keys in a row.
    fn search_keys(&mut self, criteria: &SearchKey) {
        match criteria {
            SearchKey::And(keys) if !keys.is_empty() => {
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        self.raw(b" ");
                    }
                    self.search_key(key);
                }
            }
            key => self.search_key(key),
        }
    }

    fn sort_criterion(&mut self, criterion: &SortCriterion) {
        if criterion.reverse {
            self.raw(b"REVERSE ");
        }
        self.raw(match criterion.key {
            SortKey::Arrival => b"ARRIVAL".as_slice(),
            SortKey::Cc => b"CC",
            SortKey::Date => b"DATE",
            SortKey::From => b"FROM",
            SortKey::Size => b"SIZE",
            SortKey::Subject => b"SUBJECT",
            SortKey::To => b"TO",
            SortKey::DisplayFrom => b"DISPLAYFROM",
            SortKey::DisplayTo => b"DISPLAYTO",
        });
    }

    /// One search key; an `And` of several keys is parenthesized.
    fn search_key(&mut self, key: &SearchKey) {
        let word = |w: &mut Self, name: &str, value: &str| {
            w.raw(name.as_bytes());
            w.raw(b" ");
            w.astring(value.as_bytes());
        };
        let dated = |w: &mut Self, name: &str, date: Date| {
            w.raw(name.as_bytes());
            w.raw(b" ");
            w.date(date);
        };
        match key {
            SearchKey::All => self.raw(b"ALL"),
            SearchKey::And(keys) => self.list(keys, Self::search_key),
            SearchKey::Answered => self.raw(b"ANSWERED"),
            SearchKey::Bcc(s) => word(self, "BCC", s),
            SearchKey::Before(d) => dated(self, "BEFORE", *d),
            SearchKey::Body(s) => word(self, "BODY", s),
            SearchKey::Cc(s) => word(self, "CC", s),
            SearchKey::Deleted => self.raw(b"DELETED"),
            SearchKey::Draft => self.raw(b"DRAFT"),
            SearchKey::Flagged => self.raw(b"FLAGGED"),
            SearchKey::From(s) => word(self, "FROM", s),
            SearchKey::Header(field, value) => {
                word(self, "HEADER", field);
                self.raw(b" ");
                self.astring(value.as_bytes());
            }
            SearchKey::Keyword(k) => {
                self.raw(b"KEYWORD ");
                self.raw(k.as_bytes());
            }
            SearchKey::Larger(n) => self.raw(format!("LARGER {n}").as_bytes()),
            SearchKey::Older(n) => self.raw(format!("OLDER {n}").as_bytes()),
            SearchKey::Younger(n) => self.raw(format!("YOUNGER {n}").as_bytes()),
            SearchKey::ModSeq(n) => self.raw(format!("MODSEQ {n}").as_bytes()),
            SearchKey::New => self.raw(b"NEW"),
            SearchKey::Not(k) => {
                self.raw(b"NOT ");
                self.search_key(k);
            }
            SearchKey::Old => self.raw(b"OLD"),
            SearchKey::On(d) => dated(self, "ON", *d),
            SearchKey::Or(a, b) => {
                self.raw(b"OR ");
                self.search_key(a);
                self.raw(b" ");
                self.search_key(b);
            }
            SearchKey::Recent => self.raw(b"RECENT"),
            SearchKey::SavedBefore(d) => dated(self, "SAVEDBEFORE", *d),
            SearchKey::SavedOn(d) => dated(self, "SAVEDON", *d),
            SearchKey::SavedSince(d) => dated(self, "SAVEDSINCE", *d),
            SearchKey::SaveDateSupported => self.raw(b"SAVEDATESUPPORTED"),
            SearchKey::Seen => self.raw(b"SEEN"),
            SearchKey::SentBefore(d) => dated(self, "SENTBEFORE", *d),
            SearchKey::SentOn(d) => dated(self, "SENTON", *d),
            SearchKey::SentSince(d) => dated(self, "SENTSINCE", *d),
            SearchKey::SequenceSet(set) => self.seq_set(set),
            SearchKey::Since(d) => dated(self, "SINCE", *d),
            SearchKey::Smaller(n) => self.raw(format!("SMALLER {n}").as_bytes()),
            SearchKey::Subject(s) => word(self, "SUBJECT", s),
            SearchKey::Text(s) => word(self, "TEXT", s),
            SearchKey::To(s) => word(self, "TO", s),
            SearchKey::Uid(set) => {
                self.raw(b"UID ");
                self.seq_set(set);
            }
            SearchKey::Unanswered => self.raw(b"UNANSWERED"),
            SearchKey::Undeleted => self.raw(b"UNDELETED"),
            SearchKey::Undraft => self.raw(b"UNDRAFT"),
            SearchKey::Unflagged => self.raw(b"UNFLAGGED"),
            SearchKey::Unkeyword(k) => {
                self.raw(b"UNKEYWORD ");
                self.raw(k.as_bytes());
            }
            SearchKey::Unseen => self.raw(b"UNSEEN"),
        }
    }

    fn fetch_attr(&mut self, attr: &FetchAttr) {
        match attr {
            FetchAttr::Envelope => self.raw(b"ENVELOPE"),
            FetchAttr::Flags => self.raw(b"FLAGS"),
            FetchAttr::InternalDate => self.raw(b"INTERNALDATE"),
            FetchAttr::Rfc822Size => self.raw(b"RFC822.SIZE"),
            FetchAttr::Rfc822 => self.raw(b"RFC822"),
            FetchAttr::Rfc822Header => self.raw(b"RFC822.HEADER"),
            FetchAttr::Rfc822Text => self.raw(b"RFC822.TEXT"),
            FetchAttr::Uid => self.raw(b"UID"),
            FetchAttr::Body => self.raw(b"BODY"),
            FetchAttr::BodyStructure => self.raw(b"BODYSTRUCTURE"),
            FetchAttr::ModSeq => self.raw(b"MODSEQ"),
            FetchAttr::EmailId => self.raw(b"EMAILID"),
            FetchAttr::ThreadId => self.raw(b"THREADID"),
            FetchAttr::SaveDate => self.raw(b"SAVEDATE"),
            FetchAttr::Preview(PreviewForm::Rfc8970) => self.raw(b"PREVIEW"),
            FetchAttr::Preview(PreviewForm::Fuzzy) => self.raw(b"PREVIEW (FUZZY)"),
            FetchAttr::Preview(PreviewForm::Snippet) => self.raw(b"SNIPPET (FUZZY)"),
            FetchAttr::BodySection {
                peek,
                section,
                partial,
            } => {
                self.raw(if *peek {
                    b"BODY.PEEK["
                } else {
                    b"BODY[".as_slice()
                });
                self.section(section);
                self.raw(b"]");
                self.partial(*partial);
            }
            FetchAttr::Binary {
                peek,
                part,
                partial,
            } => {
                self.raw(if *peek {
                    b"BINARY.PEEK["
                } else {
                    b"BINARY[".as_slice()
                });
                self.part(part);
                self.raw(b"]");
                self.partial(*partial);
            }
            FetchAttr::BinarySize { part } => {
                self.raw(b"BINARY.SIZE[");
                self.part(part);
                self.raw(b"]");
            }
        }
    }

    fn part(&mut self, part: &[u32]) {
        for (i, n) in part.iter().enumerate() {
            if i > 0 {
                self.raw(b".");
            }
            self.num(n);
        }
    }

    fn section(&mut self, section: &Section) {
        self.part(&section.part);
        let Some(text) = &section.text else {
            return;
        };
        if !section.part.is_empty() {
            self.raw(b".");
        }
        let fields = |w: &mut Self, name: &[u8], fields: &[String]| {
            w.raw(name);
            w.raw(b" ");
            w.list(fields, |w, f| w.astring(f.as_bytes()));
        };
        match text {
            SectionText::Header => self.raw(b"HEADER"),
            SectionText::HeaderFields(f) => fields(self, b"HEADER.FIELDS", f),
            SectionText::HeaderFieldsNot(f) => fields(self, b"HEADER.FIELDS.NOT", f),
            SectionText::Text => self.raw(b"TEXT"),
            SectionText::Mime => self.raw(b"MIME"),
        }
    }

    fn partial(&mut self, partial: Option<Partial>) {
        if let Some(Partial { origin, count }) = partial {
            self.raw(format!("<{origin}.{count}>").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{NotifySet, PartialRange, QresyncParams, Secret, SeqRange, Tag};
    use crate::parser::parse_command;
    use crate::reader::{CommandReader, ReadEvent, ReaderLimits};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn encoded(body: CommandBody) -> String {
        String::from_utf8_lossy(
            &Command {
                tag: Tag("t1".into()),
                body,
            }
            .encode(),
        )
        .into_owned()
    }

    #[test]
    fn strings_pick_the_lightest_form() {
        let login = |u: &[u8], p: &[u8]| {
            encoded(CommandBody::Login {
                username: u.to_vec(),
                password: Secret(p.to_vec()),
            })
        };
        assert_eq!(login(b"alice", b"NIL"), "t1 LOGIN alice NIL\r\n");
        assert_eq!(login(b"a b", b""), "t1 LOGIN \"a b\" \"\"\r\n");
        assert_eq!(login(b"q\"\\", b"x"), "t1 LOGIN \"q\\\"\\\\\" x\r\n");
        assert_eq!(
            login("ü".as_bytes(), b"a\r\nb"),
            "t1 LOGIN {2}\r\nü {4}\r\na\r\nb\r\n"
        );
    }

    #[test]
    fn examples() {
        assert_eq!(
            encoded(CommandBody::Fetch {
                uid: true,
                set: SequenceSet(vec![
                    SeqRange {
                        start: SeqBound::Value(1),
                        end: SeqBound::Star
                    },
                    SeqRange {
                        start: SeqBound::Value(7),
                        end: SeqBound::Value(7)
                    }
                ]),
                items: FetchItems::List(vec![
                    FetchAttr::Uid,
                    FetchAttr::BodySection {
                        peek: true,
                        section: Section {
                            part: vec![1, 2],
                            text: Some(SectionText::HeaderFields(vec!["From".into()]))
                        },
                        partial: Some(Partial {
                            origin: 0,
                            count: 10
                        })
                    }
                ]),
                changed_since: Some(5),
                vanished: true,
            }),
            "t1 UID FETCH 1:*,7 (UID BODY.PEEK[1.2.HEADER.FIELDS (From)]<0.10>) \
             (CHANGEDSINCE 5 VANISHED)\r\n"
        );
        assert_eq!(
            encoded(CommandBody::Append {
                mailbox: b"Sent".to_vec(),
                messages: vec![
                    AppendMessage {
                        flags: vec!["\\Seen".into()],
                        date: Some(DateTime {
                            timestamp: 837_596_665,
                            offset: -7 * 3600
                        }),
                        data: AppendData::Literal(b"hi".to_vec()),
                    },
                    AppendMessage {
                        flags: vec![],
                        date: None,
                        data: AppendData::Literal(b"yo".to_vec()),
                    }
                ],
            }),
            "t1 APPEND Sent (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {2}\r\nhi {2}\r\nyo\r\n"
        );
        assert_eq!(
            encoded(CommandBody::Append {
                mailbox: b"Drafts".to_vec(),
                messages: vec![AppendMessage {
                    flags: vec![],
                    date: None,
                    data: AppendData::Catenate(vec![
                        CatPart::Url(b"/Drafts;UIDVALIDITY=385759045/;UID=20".to_vec()),
                        CatPart::Text(b"\r\n--x--\r\n".to_vec()),
                        CatPart::Url(b";UID=2".to_vec()),
                    ]),
                }],
            }),
            "t1 APPEND Drafts CATENATE (URL /Drafts;UIDVALIDITY=385759045/;UID=20 \
             TEXT {9}\r\n\r\n--x--\r\n URL ;UID=2)\r\n"
        );
        assert_eq!(
            encoded(CommandBody::Select {
                mailbox: b"INBOX".to_vec(),
                params: SelectParams {
                    condstore: true,
                    qresync: Some(QresyncParams {
                        uidvalidity: 67890007,
                        modseq: 20050715194045000,
                        known_uids: None,
                        seq_match: Some((
                            SequenceSet(vec![SeqRange {
                                start: SeqBound::Value(1),
                                end: SeqBound::Value(5)
                            }]),
                            SequenceSet(vec![SeqRange {
                                start: SeqBound::Value(3),
                                end: SeqBound::Value(9)
                            }])
                        )),
                    }),
                },
            }),
            "t1 SELECT INBOX (CONDSTORE QRESYNC (67890007 20050715194045000 (1:5 3:9)))\r\n"
        );
        assert_eq!(
            encoded(CommandBody::List {
                reference: vec![],
                patterns: vec![b"%".to_vec()],
                selection: vec![],
                returns: vec![],
                extended: true,
            }),
            "t1 LIST () \"\" %\r\n"
        );
        assert_eq!(
            encoded(CommandBody::Sort {
                uid: true,
                returns: Some(vec![
                    SearchReturn::Count,
                    SearchReturn::Partial(PartialRange::Last(1, 100))
                ]),
                criteria: vec![
                    SortCriterion {
                        reverse: true,
                        key: SortKey::Date
                    },
                    SortCriterion {
                        reverse: false,
                        key: SortKey::DisplayFrom
                    }
                ],
                charset: "UTF-8".into(),
                search: SearchKey::And(vec![SearchKey::Undeleted, SearchKey::Seen]),
            }),
            "t1 UID SORT RETURN (COUNT PARTIAL -1:-100) (REVERSE DATE DISPLAYFROM) UTF-8 \
             UNDELETED SEEN\r\n"
        );
        assert_eq!(
            encoded(CommandBody::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::References,
                charset: "US-ASCII".into(),
                search: SearchKey::All,
            }),
            "t1 THREAD REFERENCES US-ASCII ALL\r\n"
        );
    }

    // ---- Strategies over the AST, producing only values with one wire form ----------

    fn bytes_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[A-Za-z0-9/._-]{1,12}".prop_map(String::into_bytes),
            "[ -~]{0,12}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..16),
        ]
    }

    /// A message literal, or a CATENATE list of one to three parts.
    fn append_data() -> impl Strategy<Value = AppendData> {
        prop_oneof![
            vec(any::<u8>(), 0..64).prop_map(AppendData::Literal),
            vec(
                prop_oneof![
                    vec(any::<u8>(), 0..32).prop_map(CatPart::Text),
                    bytes_value().prop_map(CatPart::Url),
                ],
                1..4
            )
            .prop_map(AppendData::Catenate),
        ]
    }

    fn text_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9._-]{1,12}",
            "[ -~]{0,12}",
            any::<String>().prop_map(|s| s.chars().take(10).collect()),
        ]
    }

    fn atom_value() -> impl Strategy<Value = String> {
        "[A-Za-z0-9$._+-]{1,10}"
    }

    fn flag() -> impl Strategy<Value = String> {
        prop_oneof![
            prop_oneof![
                Just("\\Seen"),
                Just("\\Answered"),
                Just("\\Flagged"),
                Just("\\Deleted"),
                Just("\\Draft")
            ]
            .prop_map(str::to_string),
            atom_value(),
            atom_value().prop_map(|a| format!("\\{a}")),
        ]
    }

    fn seq_bound() -> impl Strategy<Value = SeqBound> {
        prop_oneof![
            4 => (1u32..).prop_map(SeqBound::Value),
            1 => Just(SeqBound::Star),
        ]
    }

    fn seq_set() -> impl Strategy<Value = SequenceSet> {
        prop_oneof![
            9 => vec(
                (seq_bound(), seq_bound()).prop_map(|(start, end)| SeqRange { start, end }),
                1..5,
            )
            .prop_map(SequenceSet),
            1 => Just(SequenceSet::saved()),
        ]
    }

    fn date() -> impl Strategy<Value = Date> {
        (1900u16..2100, 1u8..=12, 1u8..=28).prop_map(|(year, month, day)| Date { year, month, day })
    }

    fn date_time() -> impl Strategy<Value = DateTime> {
        (-2_000_000_000i64..4_000_000_000, -14 * 60..=14 * 60i32).prop_map(|(timestamp, m)| {
            DateTime {
                timestamp,
                offset: m * 60,
            }
        })
    }

    fn status_items() -> impl Strategy<Value = Vec<StatusItem>> {
        vec(
            prop_oneof![
                Just(StatusItem::Messages),
                Just(StatusItem::Recent),
                Just(StatusItem::UidNext),
                Just(StatusItem::UidValidity),
                Just(StatusItem::Unseen),
                Just(StatusItem::Deleted),
                Just(StatusItem::DeletedStorage),
                Just(StatusItem::Size),
                Just(StatusItem::HighestModSeq),
                Just(StatusItem::MailboxId),
            ],
            1..4,
        )
    }

    fn search_key() -> impl Strategy<Value = SearchKey> {
        let leaf = prop_oneof![
            Just(SearchKey::All),
            Just(SearchKey::Answered),
            Just(SearchKey::Deleted),
            Just(SearchKey::Draft),
            Just(SearchKey::Flagged),
            Just(SearchKey::New),
            Just(SearchKey::Old),
            Just(SearchKey::Recent),
            Just(SearchKey::Seen),
            Just(SearchKey::Unanswered),
            Just(SearchKey::Undeleted),
            Just(SearchKey::Undraft),
            Just(SearchKey::Unflagged),
            Just(SearchKey::Unseen),
            Just(SearchKey::SaveDateSupported),
            text_value().prop_map(SearchKey::Bcc),
            text_value().prop_map(SearchKey::Body),
            text_value().prop_map(SearchKey::Cc),
            text_value().prop_map(SearchKey::From),
            text_value().prop_map(SearchKey::Subject),
            text_value().prop_map(SearchKey::Text),
            text_value().prop_map(SearchKey::To),
            (text_value(), text_value()).prop_map(|(f, v)| SearchKey::Header(f, v)),
            date().prop_map(SearchKey::Before),
            date().prop_map(SearchKey::On),
            date().prop_map(SearchKey::Since),
            date().prop_map(SearchKey::SentBefore),
            date().prop_map(SearchKey::SentOn),
            date().prop_map(SearchKey::SentSince),
            date().prop_map(SearchKey::SavedBefore),
            date().prop_map(SearchKey::SavedOn),
            date().prop_map(SearchKey::SavedSince),
            atom_value().prop_map(SearchKey::Keyword),
            atom_value().prop_map(SearchKey::Unkeyword),
            any::<u64>().prop_map(SearchKey::Larger),
            (1..=u32::MAX).prop_map(SearchKey::Older),
            (1..=u32::MAX).prop_map(SearchKey::Younger),
            any::<u64>().prop_map(SearchKey::Smaller),
            any::<u64>().prop_map(SearchKey::ModSeq),
            seq_set().prop_map(SearchKey::SequenceSet),
            seq_set().prop_map(SearchKey::Uid),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|k| SearchKey::Not(Box::new(k))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| SearchKey::Or(Box::new(a), Box::new(b))),
                vec(inner, 2..4).prop_map(SearchKey::And),
            ]
        })
    }

    /// ESEARCH/ESORT return options the parser accepts: at most one PARTIAL, and then
    /// no ALL (RFC 9394 §3.1).
    fn search_returns() -> impl Strategy<Value = Vec<SearchReturn>> {
        let range = (any::<bool>(), 1u32.., 1u32..).prop_map(|(last, a, b)| match last {
            true => PartialRange::Last(a, b),
            false => PartialRange::First(a, b),
        });
        let option = prop_oneof![
            Just(SearchReturn::Min),
            Just(SearchReturn::Max),
            Just(SearchReturn::All),
            Just(SearchReturn::Count),
            Just(SearchReturn::Save),
            Just(SearchReturn::Update),
            Just(SearchReturn::Context),
            range.prop_map(SearchReturn::Partial),
        ];
        vec(option, 0..4).prop_map(|returns| {
            let mut kept: Vec<SearchReturn> = Vec::new();
            for r in returns {
                let partial = |r: &SearchReturn| matches!(r, SearchReturn::Partial(_));
                let clash = match r {
                    SearchReturn::Partial(_) => {
                        kept.iter().any(|k| partial(k) || *k == SearchReturn::All)
                    }
                    SearchReturn::All => kept.iter().any(partial),
                    _ => false,
                };
                if !clash {
                    kept.push(r);
                }
            }
            kept
        })
    }

    /// Non-empty, each key once (the parser drops repeats).
    fn sort_criteria() -> impl Strategy<Value = Vec<SortCriterion>> {
        let key = prop_oneof![
            Just(SortKey::Arrival),
            Just(SortKey::Cc),
            Just(SortKey::Date),
            Just(SortKey::From),
            Just(SortKey::Size),
            Just(SortKey::Subject),
            Just(SortKey::To),
            Just(SortKey::DisplayFrom),
            Just(SortKey::DisplayTo),
        ];
        vec((any::<bool>(), key), 1..5).prop_map(|criteria| {
            let mut kept: Vec<SortCriterion> = Vec::new();
            for (reverse, key) in criteria {
                if !kept.iter().any(|c| c.key == key) {
                    kept.push(SortCriterion { reverse, key });
                }
            }
            kept
        })
    }

    fn partial() -> impl Strategy<Value = Option<Partial>> {
        proptest::option::of(
            (any::<u32>(), 1u32..).prop_map(|(origin, count)| Partial { origin, count }),
        )
    }

    fn part() -> impl Strategy<Value = Vec<u32>> {
        vec(1u32.., 0..4)
    }

    fn section() -> impl Strategy<Value = Section> {
        let fields = || vec(text_value(), 1..4);
        (
            part(),
            proptest::option::of(prop_oneof![
                Just(SectionText::Header),
                Just(SectionText::Text),
                Just(SectionText::Mime),
                fields().prop_map(SectionText::HeaderFields),
                fields().prop_map(SectionText::HeaderFieldsNot),
            ]),
        )
            .prop_map(|(part, text)| {
                // MIME needs a part number.
                let text = match text {
                    Some(SectionText::Mime) if part.is_empty() => Some(SectionText::Text),
                    text => text,
                };
                Section { part, text }
            })
    }

    const KNOWN_EVENTS: [&str; 8] = [
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    ];

    fn event_group() -> impl Strategy<Value = EventGroup> {
        let names = || vec(bytes_value(), 1..3);
        let filter = prop_oneof![
            Just(MailboxFilter::Selected),
            Just(MailboxFilter::SelectedDelayed),
            Just(MailboxFilter::Inboxes),
            Just(MailboxFilter::Personal),
            Just(MailboxFilter::Subscribed),
            names().prop_map(MailboxFilter::Subtree),
            names().prop_map(MailboxFilter::Mailboxes),
        ];
        let event = prop_oneof![
            Just(NotifyEvent::MessageNew(None)),
            fetch_attr().prop_map(|a| NotifyEvent::MessageNew(Some(FetchItems::List(vec![a])))),
            Just(NotifyEvent::MessageExpunge),
            Just(NotifyEvent::FlagChange),
            Just(NotifyEvent::AnnotationChange),
            Just(NotifyEvent::MailboxName),
            Just(NotifyEvent::SubscriptionChange),
            Just(NotifyEvent::MailboxMetadataChange),
            Just(NotifyEvent::ServerMetadataChange),
            atom_value()
                .prop_filter("a known event name", |name| !KNOWN_EVENTS
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(name)))
                .prop_map(NotifyEvent::Other),
        ];
        (filter, vec(event, 0..4)).prop_map(|(filter, events)| EventGroup { filter, events })
    }

    fn fetch_attr() -> impl Strategy<Value = FetchAttr> {
        prop_oneof![
            Just(FetchAttr::Envelope),
            Just(FetchAttr::Flags),
            Just(FetchAttr::InternalDate),
            Just(FetchAttr::Rfc822Size),
            Just(FetchAttr::Rfc822),
            Just(FetchAttr::Rfc822Header),
            Just(FetchAttr::Rfc822Text),
            Just(FetchAttr::Uid),
            Just(FetchAttr::Body),
            Just(FetchAttr::BodyStructure),
            Just(FetchAttr::ModSeq),
            Just(FetchAttr::EmailId),
            Just(FetchAttr::ThreadId),
            Just(FetchAttr::SaveDate),
            Just(FetchAttr::Preview(PreviewForm::Rfc8970)),
            Just(FetchAttr::Preview(PreviewForm::Fuzzy)),
            Just(FetchAttr::Preview(PreviewForm::Snippet)),
            (any::<bool>(), section(), partial()).prop_map(|(peek, section, partial)| {
                FetchAttr::BodySection {
                    peek,
                    section,
                    partial,
                }
            }),
            (any::<bool>(), part(), partial()).prop_map(|(peek, part, partial)| {
                FetchAttr::Binary {
                    peek,
                    part,
                    partial,
                }
            }),
            part().prop_map(|part| FetchAttr::BinarySize { part }),
        ]
    }

    fn select_params() -> impl Strategy<Value = SelectParams> {
        let qresync = (
            1u32..,
            any::<u64>(),
            proptest::option::of(seq_set()),
            proptest::option::of((seq_set(), seq_set())),
        )
            .prop_map(
                |(uidvalidity, modseq, known_uids, seq_match)| QresyncParams {
                    uidvalidity,
                    modseq,
                    known_uids,
                    seq_match,
                },
            );
        (any::<bool>(), proptest::option::of(qresync))
            .prop_map(|(condstore, qresync)| SelectParams { condstore, qresync })
    }

    fn list_command() -> impl Strategy<Value = CommandBody> {
        let selection = vec(
            prop_oneof![
                Just(ListSelection::Subscribed),
                Just(ListSelection::Remote),
                Just(ListSelection::RecursiveMatch),
                Just(ListSelection::SpecialUse),
            ],
            0..3,
        );
        let returns = vec(
            prop_oneof![
                Just(ListReturn::Subscribed),
                Just(ListReturn::Children),
                Just(ListReturn::SpecialUse),
                status_items().prop_map(ListReturn::Status),
            ],
            0..3,
        );
        (
            bytes_value(),
            vec(bytes_value(), 1..3),
            selection,
            returns,
            any::<bool>(),
        )
            .prop_map(|(reference, patterns, mut selection, returns, extended)| {
                if selection.contains(&ListSelection::RecursiveMatch)
                    && !selection.contains(&ListSelection::Subscribed)
                    && !selection.contains(&ListSelection::SpecialUse)
                {
                    selection.push(ListSelection::Subscribed);
                }
                let extended =
                    extended || !selection.is_empty() || !returns.is_empty() || patterns.len() != 1;
                CommandBody::List {
                    reference,
                    patterns,
                    selection,
                    returns,
                    extended,
                }
            })
    }

    fn body() -> impl Strategy<Value = CommandBody> {
        let simple = prop_oneof![
            Just(CommandBody::Capability),
            Just(CommandBody::Noop),
            Just(CommandBody::Logout),
            Just(CommandBody::StartTls),
            Just(CommandBody::Namespace),
            Just(CommandBody::Idle),
            Just(CommandBody::Check),
            Just(CommandBody::Close),
            Just(CommandBody::Unselect),
            Just(CommandBody::Unauthenticate),
            Just(CommandBody::Expunge),
        ];
        let mailbox_commands = prop_oneof![
            (bytes_value(), bytes_value()).prop_map(|(username, password)| CommandBody::Login {
                username,
                password: Secret(password)
            }),
            (
                "[A-Z0-9-]{1,12}",
                proptest::option::of(prop_oneof![
                    Just("=".to_string()),
                    "[A-Za-z0-9+/]{1,16}={0,2}"
                ])
            )
                .prop_map(|(mechanism, ir)| CommandBody::Authenticate {
                    mechanism,
                    initial_response: ir.map(|ir| Secret(ir.into_bytes()))
                }),
            vec(atom_value(), 1..4).prop_map(|capabilities| CommandBody::Enable { capabilities }),
            atom_value().prop_map(|mechanism| CommandBody::Compress { mechanism }),
            vec("[A-Za-z0-9.]{1,8}", 1..4).prop_map(|tags| CommandBody::CancelUpdate { tags }),
            (bytes_value(), select_params())
                .prop_map(|(mailbox, params)| CommandBody::Select { mailbox, params }),
            (bytes_value(), select_params())
                .prop_map(|(mailbox, params)| CommandBody::Examine { mailbox, params }),
            (
                bytes_value(),
                vec(atom_value().prop_map(|a| format!("\\{a}")), 0..3)
            )
                .prop_map(|(mailbox, special_use)| CommandBody::Create {
                    mailbox,
                    special_use
                }),
            bytes_value().prop_map(|mailbox| CommandBody::Delete { mailbox }),
            (bytes_value(), bytes_value()).prop_map(|(from, to)| CommandBody::Rename { from, to }),
            bytes_value().prop_map(|mailbox| CommandBody::Subscribe { mailbox }),
            bytes_value().prop_map(|mailbox| CommandBody::Unsubscribe { mailbox }),
            list_command(),
            (bytes_value(), bytes_value())
                .prop_map(|(reference, pattern)| CommandBody::Lsub { reference, pattern }),
            (bytes_value(), status_items())
                .prop_map(|(mailbox, items)| CommandBody::Status { mailbox, items }),
            (
                bytes_value(),
                vec(
                    (
                        vec(flag(), 0..3),
                        proptest::option::of(date_time()),
                        append_data()
                    )
                        .prop_map(|(flags, date, data)| AppendMessage {
                            flags,
                            date,
                            data
                        }),
                    1..3
                )
            )
                .prop_map(|(mailbox, messages)| CommandBody::Append { mailbox, messages }),
            seq_set().prop_map(|set| CommandBody::UidExpunge { set }),
            bytes_value().prop_map(|root| CommandBody::GetQuota { root }),
            bytes_value().prop_map(|mailbox| CommandBody::GetQuotaRoot { mailbox }),
            Just(CommandBody::Notify(None)),
            (any::<bool>(), vec(event_group(), 1..4)).prop_map(|(status, groups)| {
                CommandBody::Notify(Some(NotifySet { status, groups }))
            }),
            (
                bytes_value(),
                vec(
                    (
                        atom_value().prop_map(|a| a.to_ascii_uppercase()),
                        0..=i64::MAX as u64
                    ),
                    0..3
                )
            )
                .prop_map(|(root, limits)| CommandBody::SetQuota { root, limits }),
        ];
        let message_commands = prop_oneof![
            (
                any::<bool>(),
                proptest::option::of(prop_oneof![Just("UTF-8"), Just("utf-8"), Just("US-ASCII")]),
                proptest::option::of(search_returns()),
                search_key()
            )
                .prop_map(|(uid, charset, returns, criteria)| CommandBody::Search {
                    uid,
                    charset: charset.map(str::to_string),
                    returns,
                    criteria
                }),
            (
                any::<bool>(),
                proptest::option::of(search_returns()),
                sort_criteria(),
                prop_oneof![Just("UTF-8"), Just("us-ascii")],
                search_key()
            )
                .prop_map(|(uid, returns, criteria, charset, search)| {
                    CommandBody::Sort {
                        uid,
                        returns,
                        criteria,
                        charset: charset.to_string(),
                        search,
                    }
                }),
            (
                any::<bool>(),
                prop_oneof![
                    Just(ThreadAlgorithm::OrderedSubject),
                    Just(ThreadAlgorithm::References),
                    Just(ThreadAlgorithm::Refs)
                ],
                prop_oneof![Just("UTF-8"), Just("US-ASCII")],
                search_key()
            )
                .prop_map(|(uid, algorithm, charset, search)| CommandBody::Thread {
                    uid,
                    algorithm,
                    charset: charset.to_string(),
                    search,
                }),
            (
                any::<bool>(),
                seq_set(),
                prop_oneof![
                    Just(FetchItems::All),
                    Just(FetchItems::Fast),
                    Just(FetchItems::Full),
                    // The parser collapses repeated items, so a list to round-trip has
                    // none.
                    vec(fetch_attr(), 1..4).prop_map(|attrs| {
                        let mut distinct: Vec<FetchAttr> = Vec::new();
                        for attr in attrs {
                            if !distinct.contains(&attr) {
                                distinct.push(attr);
                            }
                        }
                        FetchItems::List(distinct)
                    }),
                ],
                proptest::option::of(any::<u64>()),
                any::<bool>()
            )
                .prop_map(|(uid, set, items, changed_since, vanished)| {
                    CommandBody::Fetch {
                        uid,
                        set,
                        items,
                        changed_since,
                        // RFC 7162: VANISHED only with UID FETCH and CHANGEDSINCE.
                        vanished: vanished && uid && changed_since.is_some(),
                    }
                }),
            (
                any::<bool>(),
                seq_set(),
                prop_oneof![
                    Just(StoreMode::Add),
                    Just(StoreMode::Remove),
                    Just(StoreMode::Replace)
                ],
                any::<bool>(),
                vec(flag(), 0..4),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(uid, set, mode, silent, flags, unchanged_since)| {
                    CommandBody::Store {
                        uid,
                        set,
                        mode,
                        silent,
                        flags,
                        unchanged_since,
                    }
                }),
            (any::<bool>(), seq_set(), bytes_value())
                .prop_map(|(uid, set, mailbox)| CommandBody::Copy { uid, set, mailbox }),
            (any::<bool>(), seq_set(), bytes_value())
                .prop_map(|(uid, set, mailbox)| CommandBody::Move { uid, set, mailbox }),
            proptest::option::of(vec(
                (text_value(), proptest::option::of(text_value())),
                0..4
            ))
            .prop_map(|params| CommandBody::Id { params }),
        ];
        prop_oneof![simple, mailbox_commands, message_commands]
    }

    fn command() -> impl Strategy<Value = Command> {
        ("[A-Za-z0-9.]{1,8}", body()).prop_map(|(tag, body)| Command {
            tag: Tag(tag),
            body,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encode_then_parse_is_identity(cmd in command()) {
            let wire = cmd.encode();
            prop_assert_eq!(parse_command(&wire), Ok(cmd));
        }

        /// The reader frames an encoded command as exactly one command, asking for a
        /// continuation before each literal.
        #[test]
        fn reader_frames_encoded_commands(cmds in vec(command(), 1..4)) {
            let mut wire = Vec::new();
            for cmd in &cmds {
                wire.extend(cmd.encode());
            }
            let mut reader = CommandReader::new(ReaderLimits::default());
            reader.push(&wire);
            let mut got = Vec::new();
            while let Some(event) = reader.next_event() {
                match event {
                    ReadEvent::NeedContinuation { .. } => reader.continuation_answered(true),
                    ReadEvent::Command(raw) => got.push(parse_command(&raw)),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(got, cmds.into_iter().map(Ok).collect::<Vec<_>>());
        }
    }
}
