//! CANCELUPDATE, and the session's side of live search results (RFC 5267 §4.3,
//! [`crate::context`]): a result goes live when a SEARCH or SORT with UPDATE is
//! answered; REMOVEFROM goes out before an expunge is announced, ADDTO and REMOVEFROM
//! after the EXISTS and FETCH that announce other changes; and messages a change could
//! not decide are read by the host before the client's next command, a slice at a time.

use crate::command::*;
use crate::context::{self, LiveResult, Read};
use crate::request::*;
use crate::response::{Code, Status};
use crate::scan::{MatchOrder, OrderKeys, ScanJob, ScanOutput, ScanWork};
use crate::session::*;
use crate::sort::SortInput;
use crate::view::{AnnounceStyle, Announced, Change};

impl Selected {
    /// Announces the view's queued changes ([`crate::view::View::announce`]), and what
    /// they do to the live results: REMOVEFROM before the EXPUNGEs, ADDTO and REMOVEFROM
    /// after the EXISTS and FETCH. Returns the UIDs of the new messages told of.
    pub(crate) fn announce_view(
        &mut self,
        out: &mut Vec<u8>,
        allow_expunge: bool,
        flags: bool,
        style: AnnounceStyle,
    ) -> Vec<u32> {
        if allow_expunge && !self.contexts.is_empty() {
            let expunged: Vec<u32> = self.view.pending_expunges().collect();
            self.contexts.expunging(out, &self.view, &expunged);
        }
        let announced = self.view.announce(out, allow_expunge, flags, style);
        self.contexts.announced(out, &self.view, &announced);
        announced.appended.iter().map(|(uid, _)| *uid).collect()
    }

    /// The view drops `uids` now (this session's EXPUNGE or MOVE): the live results
    /// that have them say so first.
    pub(crate) fn expunge_now(&mut self, out: &mut Vec<u8>, uids: &[u32], vanished: bool) {
        self.contexts.expunging(out, &self.view, uids);
        self.view.expunge_now(out, uids, vanished);
    }
}

impl Session {
    /// RFC 5267 §4.3: a search with UPDATE whose tag a live result has is refused
    /// (BAD): the client could not tell their updates apart. Says whether it was.
    pub(crate) fn refuse_tag_reuse(&mut self, tag: &str, returns: Option<&[SearchReturn]>) -> bool {
        let updating = returns.is_some_and(|r| r.contains(&SearchReturn::Update));
        let in_use = match &self.state {
            State::Selected(selected) => selected.contexts.contains(tag),
            _ => false,
        };
        if updating && in_use {
            self.bad(
                tag,
                "Tag reuse: a live search (UPDATE) has this tag; CANCELUPDATE it first",
            );
        }
        updating && in_use
    }

    /// A SEARCH or SORT that asked for UPDATE was answered with `members` (UIDs in the
    /// result's order; for a SORT, `inputs` has their sort values): the result goes
    /// live, or the client is told it will not (`* NO [NOUPDATE "tag"]`, RFC 5267
    /// §4.3.1) and the command still succeeds.
    pub(crate) fn open_context(
        &mut self,
        tag: &str,
        uid: bool,
        work: &ScanWork,
        members: Vec<u32>,
        inputs: Vec<SortInput>,
    ) {
        let ScanWork::Search { key, order, .. } = work else {
            return;
        };
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        if let Some(why) = context::refusal(key, selected.contexts.len()) {
            self.untagged(Status::no(why).code(Code::NoUpdate(tag.to_string())));
            return;
        }
        let sort = match order {
            Some(MatchOrder::Sort(criteria)) => Some((criteria.clone(), inputs)),
            _ => None,
        };
        let result = LiveResult::new(tag.to_string(), uid, key.clone(), members, sort);
        selected.contexts.open(result);
    }

    /// CANCELUPDATE (RFC 5267 §4.3.5): the results of the named searches stop, all or
    /// none. A tag no live result has is the client's error: it never asked for
    /// updates with it, was refused them (NOUPDATE), or cancelled them already.
    pub(crate) fn cancel_update(&mut self, tag: String, tags: Vec<String>) {
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        match selected.contexts.cancel(&tags) {
            Ok(()) => self.finish(&tag, Status::ok("CANCELUPDATE completed"), true),
            Err(unknown) => {
                let text = format!("No live search has tag \"{unknown}\"; nothing cancelled");
                self.bad(&tag, &text);
            }
        }
    }

    /// Flags this session changed itself (STORE, FETCH setting \Seen), which no event
    /// reports to it: `current` as the host answered, less the `refused` UIDs.
    pub(crate) fn contexts_see_flags(
        &mut self,
        current: &[(u32, Vec<String>, u64)],
        refused: &[u32],
    ) {
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        if selected.contexts.is_empty() {
            return;
        }
        let flags = current
            .iter()
            .filter(|(uid, _, _)| !refused.contains(uid))
            .map(|(uid, flags, modseq)| {
                let change = Change {
                    flags: flags.clone(),
                    modseq: *modseq,
                    recent: selected.view.is_recent(*uid),
                };
                (*uid, change)
            })
            .collect();
        let announced = Announced {
            appended: Vec::new(),
            flags,
        };
        selected
            .contexts
            .announced(&mut self.out, &selected.view, &announced);
    }

    /// Asks the host to read messages a live result must decide, when no command
    /// waits for the host: before the client's next command runs, and while idling.
    pub(crate) fn read_contexts(&mut self) {
        if self.closed || self.running.is_some() {
            return;
        }
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        let folder = selected.id;
        let Some(read) = selected.contexts.next_read(&selected.view, batch_size) else {
            return;
        };
        let job = ScanJob {
            targets: read.targets.clone(),
            detail: read.detail,
            work: read.work.clone(),
            budget: self.config.search_work_limit,
            stream_above: None,
        };
        self.request(Running::ContextRead(read), Request::Scan { folder, job });
    }

    /// The host read a live result's messages.
    pub(crate) fn contexts_read(&mut self, read: Read, result: Result<ScanOutcome, Fault>) {
        let State::Selected(selected) = &mut self.state else {
            return;
        };
        let outcome = match result {
            Ok(outcome) if !outcome.over_budget => outcome,
            Ok(_) => {
                let why = "Updates stopped: the search would read too much text";
                return selected.contexts.fail(&mut self.out, &read.tag, why);
            }
            Err(fault) => {
                let why = format!("Updates stopped: {}", fault_status(&fault, false).text);
                return selected.contexts.fail(&mut self.out, &read.tag, &why);
            }
        };
        let ScanOutput::Hits { hits, order, .. } = outcome.output else {
            // The host answered a search with another kind's output.
            let why = fault_status(&Fault::Unavailable("scan".into()), false).text;
            return selected.contexts.fail(&mut self.out, &read.tag, &why);
        };
        // A SORT's scan gives one input per hit, in the hits' order.
        let mut inputs = match order {
            OrderKeys::Sort(inputs) => inputs.into_iter(),
            _ => Vec::new().into_iter(),
        };
        let hits = hits
            .into_iter()
            .map(|(_, uid)| (uid, inputs.next()))
            .collect();
        selected.contexts.read(
            &mut self.out,
            &selected.view,
            &read.tag,
            &read.targets,
            outcome.processed,
            hits,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::request::*;
    use crate::session::tests::drive;
    use crate::{ImapConfig, Input, Session};

    /// `processed` messages read, `uids` of them matched.
    fn hits(processed: usize, uids: &[u32]) -> Reply {
        Reply::Scanned(Ok(ScanOutcome {
            processed,
            output: crate::scan::ScanOutput::Hits {
                hits: uids.iter().map(|&uid| (uid, uid)).collect(),
                max_modseq: 0,
                modseqs: vec![0; uids.len()],
                order: crate::scan::OrderKeys::None,
            },
            examined: 0,
            over_budget: false,
        }))
    }

    #[test]
    fn a_failed_read_ends_the_live_result_with_noupdate() {
        let mut session = Session::new(ImapConfig::default(), true);
        let folder = FolderId(3);
        let mut reply = |request: &Request| match request {
            Request::Login { .. } => Some(Reply::Login(Ok(()))),
            Request::Select { .. } => Some(Reply::Selected(Ok(SelectedFolder {
                id: folder,
                uidvalidity: 1,
                uidnext: 3,
                highest_modseq: 2,
                uids: Arc::new(vec![1, 2]),
                first_unseen: None,
                changed: vec![],
                recent: vec![],
                keywords: vec![],
                vanished: None,
            }))),
            // The search itself finds message 2.
            Request::Scan { job, .. } if job.targets.len() == 2 => Some(hits(2, &[2])),
            Request::Scan { .. } => Some(Reply::Scanned(Err(Fault::Temporary("r1".into())))),
            _ => None,
        };
        drive(
            &mut session,
            b"a LOGIN alice secret\r\nb SELECT INBOX\r\n",
            &mut reply,
        );
        assert_eq!(
            drive(
                &mut session,
                b"c UID SEARCH RETURN (UPDATE) LARGER 5\r\n",
                &mut reply
            ),
            "* ESEARCH (TAG \"c\") UID ALL 2\r\nc OK UID SEARCH completed\r\n"
        );
        // A new message: its size must be read, and the read fails.
        session.handle(Input::Event(FolderEvent::Appended {
            folder,
            uid: 3,
            flags: vec![],
            modseq: 3,
            recent: false,
        }));
        assert_eq!(
            drive(&mut session, b"d NOOP\r\n", &mut reply),
            "* 3 EXISTS\r\n* 0 RECENT\r\nd OK NOOP completed\r\n\
             * NO [NOUPDATE \"c\"] Updates stopped: Storage temporarily \
             unavailable, try again later (ref r1)\r\n"
        );
        // The result is gone: nothing to cancel, and its tag is free again.
        assert_eq!(
            drive(&mut session, b"e CANCELUPDATE \"c\"\r\n", &mut reply),
            "e BAD No live search has tag \"c\"; nothing cancelled\r\n"
        );
        session.handle(Input::Event(FolderEvent::Expunged {
            folder,
            uids: vec![2],
            modseq: 4,
        }));
        assert_eq!(
            drive(&mut session, b"f NOOP\r\n", &mut reply),
            "* 2 EXPUNGE\r\nf OK NOOP completed\r\n"
        );
    }

    #[test]
    fn cancelupdate_needs_a_selected_folder() {
        let mut session = Session::new(ImapConfig::default(), true);
        let mut reply = |_: &Request| Some(Reply::Login(Ok(())));
        drive(&mut session, b"a LOGIN alice secret\r\n", &mut reply);
        assert_eq!(
            drive(&mut session, b"b CANCELUPDATE \"x\"\r\n", &mut reply),
            "b BAD No mailbox selected\r\n"
        );
    }
}
