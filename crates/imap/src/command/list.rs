//! LIST and LSUB: the request, then the lines [`crate::listing`] decides, each
//! followed by its STATUS when LIST-STATUS asked (RFC 5819).

use crate::command::*;
use crate::listing::{self, ListQuery};
use crate::names;
use crate::request::*;
use crate::response::{Data, ListEntry, Status};
use crate::session::*;
use std::collections::VecDeque;

pub(crate) struct ListJob {
    pub(crate) tag: String,
    pub(crate) command: &'static str,
    pub(crate) query: ListQuery,
    pub(crate) status: Option<Vec<StatusItem>>,
    /// LIST lines not yet written, each with the folder whose STATUS must follow it
    /// (LIST-STATUS, RFC 5819 §2: a mailbox's STATUS comes right after its LIST).
    pub(crate) pending: VecDeque<(Vec<u8>, Option<String>)>,
    /// The folder whose STATUS was asked for last.
    pub(crate) awaiting_status: Option<String>,
}

impl Session {
    pub(crate) fn list(
        &mut self,
        tag: String,
        reference: &[u8],
        patterns: &[Vec<u8>],
        selection: &[ListSelection],
        returns: &[ListReturn],
        extended: bool,
    ) {
        let utf8 = self.utf8();
        let Ok(reference) = names::decode(reference, utf8) else {
            return self.bad(&tag, "Invalid reference name");
        };
        // A pattern that does not decode matches no mailbox (RFC 9051 §6.3.9: LIST
        // answers OK with what matches).
        let decoded: Vec<String> = patterns
            .iter()
            .filter_map(|pattern| names::decode(pattern, utf8).ok())
            .collect();
        if decoded.is_empty() && !patterns.is_empty() {
            return self.finish(&tag, Status::ok("LIST completed"), true);
        }
        // RFC 9051 §6.3.9: LIST "" "" asks for the hierarchy delimiter.
        if !extended && decoded.len() == 1 && decoded[0].is_empty() {
            self.data(Data::List(ListEntry {
                lsub: false,
                attributes: &["\\Noselect"],
                name: "",
                subscribed_child: false,
                old_name: None,
            }));
            return self.finish(&tag, Status::ok("LIST completed"), true);
        }
        let patterns = decoded
            .into_iter()
            .map(|pattern| names::join_reference(&reference, &pattern))
            .collect();
        let mut status = None;
        let mut return_subscribed = false;
        let mut return_special_use = false;
        for option in returns {
            match option {
                ListReturn::Subscribed => return_subscribed = true,
                ListReturn::SpecialUse => return_special_use = true,
                ListReturn::Children => {}
                ListReturn::Status(items) => status = Some(items.clone()),
            }
        }
        let job = ListJob {
            tag,
            command: "LIST",
            query: ListQuery {
                lsub: false,
                patterns,
                subscribed_only: selection.contains(&ListSelection::Subscribed),
                special_use_only: selection.contains(&ListSelection::SpecialUse),
                recursive_match: selection.contains(&ListSelection::RecursiveMatch),
                return_subscribed,
                return_special_use,
            },
            status,
            pending: VecDeque::new(),
            awaiting_status: None,
        };
        self.request(Running::List(job), Request::ListFolders);
    }

    pub(crate) fn lsub(&mut self, tag: String, reference: &[u8], pattern: &[u8]) {
        let utf8 = self.utf8();
        let Ok(reference) = names::decode(reference, utf8) else {
            return self.bad(&tag, "Invalid reference name");
        };
        let Ok(pattern) = names::decode(pattern, utf8) else {
            // Matches no mailbox.
            return self.finish(&tag, Status::ok("LSUB completed"), true);
        };
        let job = ListJob {
            tag,
            command: "LSUB",
            query: ListQuery {
                lsub: true,
                patterns: vec![names::join_reference(&reference, &pattern)],
                ..ListQuery::default()
            },
            status: None,
            pending: VecDeque::new(),
            awaiting_status: None,
        };
        self.request(Running::List(job), Request::ListFolders);
    }

    pub(crate) fn list_reply(&mut self, mut job: ListJob, folders: FolderList) {
        let utf8 = self.utf8();
        for listed in listing::list(&job.query, &folders) {
            let line = Data::List(ListEntry {
                lsub: job.command == "LSUB",
                attributes: &listed.attributes,
                name: &listed.name,
                subscribed_child: listed.subscribed_child,
                old_name: None,
            })
            .to_bytes(utf8);
            let status = (job.status.is_some() && listed.exists).then_some(listed.name);
            job.pending.push_back((line, status));
        }
        self.next_list_status(job);
    }

    /// Writes the LIST lines, each listed selectable folder's STATUS right after its
    /// LIST line when LIST-STATUS asked for it, then the tagged OK.
    pub(crate) fn next_list_status(&mut self, mut job: ListJob) {
        while let Some((line, status)) = job.pending.pop_front() {
            self.out.extend_from_slice(&line);
            if let Some(name) = status {
                job.awaiting_status = Some(name.clone());
                let asked = |item| {
                    job.status
                        .as_ref()
                        .is_some_and(|items| items.contains(&item))
                };
                let request = Request::Status {
                    folder: name,
                    recent: asked(StatusItem::Recent),
                    deleted_storage: asked(StatusItem::DeletedStorage),
                };
                return self.request(Running::List(job), request);
            }
        }
        let text = format!("{} completed", job.command);
        self.finish(&job.tag, Status::ok(text), true);
    }
}
