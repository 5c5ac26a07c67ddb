//! Commands on folders as a whole: SELECT/EXAMINE (with CONDSTORE/QRESYNC
//! catch-up), CREATE, SUBSCRIBE/UNSUBSCRIBE and STATUS lines, and how a command's
//! mailbox name is read.

use crate::command::*;
use crate::names;
use crate::request::*;
use crate::response::{Code, Data, ListEntry, Status};
use crate::session::*;
use crate::view::View;

/// RFC 7162 §3.2.5.1: what changed since the client's cached MODSEQ: one
/// `VANISHED (EARLIER)` line, then a FETCH for every message changed after it.
pub(crate) fn qresync_catch_up(
    out: &mut Vec<u8>,
    folder: &SelectedFolder,
    view: &View,
    qresync: &QresyncParams,
) {
    let known = |uid: u32| {
        qresync.known_uids.as_ref().is_none_or(|set| {
            set.0.iter().any(|range| {
                let bound = |b: SeqBound| match b {
                    SeqBound::Value(v) => v,
                    SeqBound::Star => u32::MAX,
                };
                let (a, b) = (bound(range.start), bound(range.end));
                (a.min(b)..=a.max(b)).contains(&uid)
            })
        })
    };
    let mut vanished: Vec<u32> = match &folder.vanished {
        Some(uids) => uids.iter().copied().filter(|&uid| known(uid)).collect(),
        // History too short: every UID the client may know that is not here is gone.
        None => (1..folder.uidnext)
            .filter(|&uid| view.seq_of(uid).is_none() && known(uid))
            .collect(),
    };
    vanished.sort_unstable();
    vanished.dedup();
    if !vanished.is_empty() {
        let data = Data::Vanished {
            earlier: true,
            uids: &vanished,
        };
        data.encode(out, false);
    }
    for message in &folder.changed {
        let Some(seq) = view.seq_of(message.uid) else {
            continue;
        };
        if message.modseq > qresync.modseq {
            let data = Data::FlagFetch {
                seq,
                uid: Some(message.uid),
                flags: Some(&message.flags),
                modseq: Some(message.modseq),
            };
            data.encode(out, false);
        }
    }
}

impl Session {
    /// The mailbox a command names, or its answer: a name that does not decode names
    /// no mailbox, and a mailbox cannot be made under it. That is `NO`, not `BAD`: the
    /// command is well formed, and many clients give up on a session at a `BAD`.
    pub(crate) fn mailbox_name(&mut self, tag: &str, raw: &[u8]) -> Option<String> {
        self.named(tag, raw, Code::NonExistent)
    }

    /// [`Self::mailbox_name`] for a name to be made (CREATE, RENAME's new name).
    pub(crate) fn new_mailbox_name(&mut self, tag: &str, raw: &[u8]) -> Option<String> {
        self.named(tag, raw, Code::Cannot)
    }

    pub(crate) fn named(&mut self, tag: &str, raw: &[u8], code: Code) -> Option<String> {
        match names::decode(raw, self.utf8()) {
            Ok(name) => Some(name),
            Err(why) => {
                self.complete(tag, Status::no(why.to_string()).code(code));
                None
            }
        }
    }

    pub(crate) fn select(
        &mut self,
        tag: String,
        raw: &[u8],
        read_only: bool,
        params: SelectParams,
    ) {
        let Some(name) = self.mailbox_name(&tag, raw) else {
            return;
        };
        if params.qresync.is_some() && !self.enabled.qresync {
            // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC first.
            return self.bad(&tag, "QRESYNC is not enabled");
        }
        // NOTIFY's FETCH of the previous folder's new messages is moot.
        self.notify_fetch.clear();
        // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
        if let State::Selected(selected) = &self.state {
            let folder = selected.id;
            self.actions
                .push_back(Action::Request(0, Request::Deselect { folder }));
            self.state = State::Authenticated;
            // RFC 7162 §3.2.11: tell the client the old mailbox is closed.
            self.untagged(Status::ok("Previous mailbox closed").code(Code::Closed));
        }
        self.request(
            Running::Select {
                tag,
                name: name.clone(),
                read_only,
                condstore: params.condstore,
                qresync: params.qresync.clone(),
            },
            Request::Select {
                folder: name,
                read_only,
                vanished_since: params.qresync.as_ref().map(|q| q.modseq),
            },
        );
    }

    pub(crate) fn select_reply(
        &mut self,
        tag: String,
        name: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
        result: Result<SelectedFolder, Fault>,
    ) {
        let mut folder = match result {
            Ok(folder) => folder,
            Err(fault) => {
                self.early_events.clear();
                return self.complete(&tag, fault_status(&fault, false));
            }
        };
        if condstore {
            self.enabled.condstore = true;
        }
        let first_unseen = folder.first_unseen;
        let view = View::new(std::mem::take(&mut folder.uids), folder.recent.clone())
            .since(folder.highest_modseq);
        let out = &mut self.out;
        Data::Exists(view.exists()).encode(out, false);
        if !self.enabled.rev2 {
            Data::Recent(view.recent_count()).encode(out, false);
            if let Some(unseen) = first_unseen {
                Status::ok("First unseen")
                    .code(Code::Unseen(unseen))
                    .encode(out, None);
            }
        }
        write_flags(out, &folder.keywords, read_only);
        let untagged = [
            Status::ok("UIDs valid").code(Code::UidValidity(folder.uidvalidity)),
            Status::ok("Predicted next UID").code(Code::UidNext(folder.uidnext)),
            // RFC 8474 §4.2.
            Status::ok("Ok").code(Code::MailboxId(folder.id.0)),
        ];
        for status in untagged {
            status.encode(out, None);
        }
        if self.enabled.condstore {
            Status::ok("Highest")
                .code(Code::HighestModSeq(folder.highest_modseq))
                .encode(out, None);
        }
        if let Some(qresync) = qresync.filter(|q| q.uidvalidity == folder.uidvalidity) {
            qresync_catch_up(out, &folder, &view, &qresync);
        }
        if self.enabled.rev2 {
            // RFC 9051 §6.3.2: the LIST response names the mailbox as it is spelt here.
            let entry = ListEntry {
                lsub: false,
                attributes: &[],
                name: &name,
                subscribed_child: false,
                old_name: None,
            };
            Data::List(entry).encode(out, true);
        }
        let (code, command) = if read_only {
            (Code::ReadOnly, "EXAMINE")
        } else {
            (Code::ReadWrite, "SELECT")
        };
        Status::ok(format!("{command} completed"))
            .code(code)
            .encode(out, Some(&tag));
        let mut selected = Selected {
            id: folder.id,
            read_only,
            view,
            keywords: std::mem::take(&mut folder.keywords),
            saved: Vec::new(),
            contexts: Default::default(),
        };
        // Changes the snapshot already holds are harmless to replay: appends at or
        // below its highest UID are ignored, expunges of missing UIDs skipped.
        for event in std::mem::take(&mut self.early_events) {
            let for_this = match &event {
                FolderEvent::Appended { folder, .. }
                | FolderEvent::FlagsChanged { folder, .. }
                | FolderEvent::Expunged { folder, .. } => *folder == selected.id,
            };
            if for_this {
                selected.view.queue(event);
            }
        }
        self.state = State::Selected(Box::new(selected));
    }

    pub(crate) fn create(&mut self, tag: String, raw: &[u8], special_use: Vec<String>) {
        let Some(folder) = self.new_mailbox_name(&tag, raw) else {
            return;
        };
        let folder = folder.trim_end_matches(names::SEPARATOR).to_string();
        if special_use.len() > 1 {
            let status = Status::no("Only one special-use attribute per mailbox");
            self.complete(&tag, status.code(Code::UseAttr));
            return;
        }
        // RFC 6154 §3: a use the server does not keep is refused by name.
        let special_use = match special_use.into_iter().next() {
            None => None,
            Some(asked) => match self
                .config
                .special_uses
                .iter()
                .find(|known| known.eq_ignore_ascii_case(&asked))
            {
                Some(known) => Some(known.clone()),
                None => {
                    let status = Status::no("Unsupported special-use attribute");
                    return self.complete(&tag, status.code(Code::UseAttr));
                }
            },
        };
        let parents = names::parents(&folder).map(str::to_string).collect();
        self.request(
            Running::Create { tag },
            Request::Create {
                folder,
                special_use,
                parents,
            },
        );
    }

    pub(crate) fn subscribe(&mut self, tag: String, raw: &[u8], subscribed: bool) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        let command = if subscribed {
            "SUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        self.request(
            Running::Simple { tag, command },
            Request::Subscribe { folder, subscribed },
        );
    }

    pub(crate) fn status_line(&mut self, name: &str, items: &[StatusItem], status: &FolderStatus) {
        let values: Vec<(StatusItem, u64)> = items
            .iter()
            .map(|&item| {
                let value = match item {
                    StatusItem::Messages => status.messages.into(),
                    StatusItem::Recent => status.recent.into(),
                    StatusItem::UidNext => status.uidnext.into(),
                    StatusItem::UidValidity => status.uidvalidity.into(),
                    StatusItem::Unseen => status.unseen.into(),
                    StatusItem::Deleted => status.deleted.into(),
                    StatusItem::DeletedStorage => status.deleted_storage,
                    StatusItem::Size => status.size,
                    StatusItem::HighestModSeq => status.highest_modseq,
                    StatusItem::MailboxId => status.mailbox_id,
                };
                (item, value)
            })
            .collect();
        self.data(Data::Status {
            mailbox: name,
            items: &values,
        });
    }
}
