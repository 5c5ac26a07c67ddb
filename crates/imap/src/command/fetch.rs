//! FETCH: the request, \Seen and VANISHED (EARLIER) first when they apply, then the
//! scan ([`super::scan`]).

use crate::command::*;
use crate::fetch;
use crate::request::*;
use crate::response::Data;
use crate::scan::{ScanTarget, ScanWork};
use crate::session::*;
use std::sync::Arc;

impl Session {
    pub(crate) fn fetch(
        &mut self,
        tag: String,
        uid: bool,
        set: &SequenceSet,
        items: &FetchItems,
        changed_since: Option<u64>,
        vanished: bool,
    ) {
        if vanished && !self.enabled.qresync {
            return self.bad(&tag, "VANISHED needs ENABLE QRESYNC");
        }
        if uid {
            // New messages a UID command names become visible first (RFC 9051 §7.5.1
            // allows EXPUNGE and EXISTS here), so UIDs the client learnt elsewhere work.
            self.announce(true);
        }
        let targets = match self.resolve(set, uid) {
            Ok(targets) => targets,
            Err(why) => return self.bad(&tag, why),
        };
        let mut attrs = fetch::expand(items);
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        // RFC 7162 §3.1: CHANGEDSINCE and MODSEQ turn CONDSTORE on; from then on every
        // FETCH with FLAGS carries MODSEQ too.
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        let with_modseq = changed_since.is_some()
            || (self.enabled.condstore && attrs.contains(&FetchAttr::Flags));
        if with_modseq && !attrs.contains(&FetchAttr::ModSeq) {
            attrs.push(FetchAttr::ModSeq);
        }
        let Some((folder, read_only)) = self.selected_folder() else {
            return;
        };
        let sets_seen = fetch::sets_seen(&attrs) && !read_only;
        if sets_seen && !attrs.contains(&FetchAttr::Flags) {
            attrs.push(FetchAttr::Flags);
        }
        let style = self.render_style();
        let Some(view) = self.selected_view() else {
            return;
        };
        let targets = targets
            .into_iter()
            .map(|(seq, uid)| ScanTarget {
                seq,
                uid,
                recent: view.is_recent(uid),
            })
            .collect();
        let scan = Scan {
            tag,
            uid,
            detail: fetch::detail(&attrs),
            targets,
            next: 0,
            work: Arc::new(ScanWork::Fetch {
                attrs,
                changed_since,
                style,
            }),
            examined: 0,
            kind: ScanKind::Fetch {
                failed: false,
                unsolicited: false,
            },
        };
        if let (true, Some(since)) = (vanished, changed_since) {
            self.request(
                Running::FetchVanished {
                    scan,
                    set: set.clone(),
                    sets_seen,
                },
                Request::Vanished { folder, since },
            );
        } else {
            self.start_fetch(scan, sets_seen);
        }
    }

    /// Runs a FETCH scan, after marking its messages \Seen when it must.
    pub(crate) fn start_fetch(&mut self, scan: Scan, sets_seen: bool) {
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if sets_seen && !scan.targets.is_empty() {
            let uids = scan.targets.iter().map(|target| target.uid).collect();
            self.request(
                Running::MarkSeen(scan),
                Request::StoreFlags {
                    folder,
                    uids,
                    mode: StoreMode::Add,
                    flags: vec!["\\Seen".to_string()],
                    unchanged_since: None,
                },
            );
        } else {
            self.continue_scan(scan);
        }
    }

    /// `* VANISHED (EARLIER)` for the UIDs of `set` expunged since the client's MODSEQ
    /// (RFC 7162 §3.2.6); with too short a history, every UID of the set not present.
    pub(crate) fn write_vanished_earlier(&mut self, set: &SequenceSet, vanished: Option<Vec<u32>>) {
        let Some(view) = self.selected_view() else {
            return;
        };
        let max = view.max_uid().unwrap_or(0);
        let in_set = |uid: u32| {
            set.0.iter().any(|range| {
                let bound = |b: SeqBound| match b {
                    SeqBound::Value(v) => v,
                    SeqBound::Star => max.max(uid),
                };
                let (a, b) = (bound(range.start), bound(range.end));
                (a.min(b)..=a.max(b)).contains(&uid)
            })
        };
        let mut uids: Vec<u32> = match vanished {
            Some(uids) => uids.into_iter().filter(|&uid| in_set(uid)).collect(),
            None => (1..=max)
                .filter(|&uid| view.seq_of(uid).is_none() && in_set(uid))
                .collect(),
        };
        uids.sort_unstable();
        uids.dedup();
        if !uids.is_empty() {
            self.data(Data::Vanished {
                earlier: true,
                uids: &uids,
            });
        }
    }
}
