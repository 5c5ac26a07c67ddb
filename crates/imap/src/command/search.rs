//! SEARCH and ESEARCH: the criteria, the full-text index's answer first when BODY
//! or TEXT keys ask for it, then the scan ([`super::scan`]).

use crate::command::*;
use crate::esearch;
use crate::request::*;
use crate::response::{Code, Status};
use crate::scan::{MatchOrder, OrderKeys, ScanTarget, ScanWork};
use crate::search::{self, TextHints};
use crate::session::*;
use std::sync::Arc;

pub(crate) fn mentions_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(keys) => keys.iter().any(mentions_modseq),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::Not(k) => mentions_modseq(k),
        _ => false,
    }
}

impl Session {
    /// `$` in a search key (RFC 5182 §2.2) as the UIDs it stands for now.
    pub(crate) fn with_saved_result(&self, key: SearchKey) -> SearchKey {
        match key {
            SearchKey::SequenceSet(set) | SearchKey::Uid(set) if set.is_saved() => {
                let uids: Vec<u32> = self
                    .resolve(&set, true)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, uid)| uid)
                    .collect();
                if uids.is_empty() {
                    return SearchKey::Not(Box::new(SearchKey::All));
                }
                // Runs of consecutive UIDs as one range each: a saved result of a whole
                // folder is one range, which every message of the scan is tested against.
                let mut ranges: Vec<SeqRange> = Vec::new();
                for uid in uids {
                    match ranges.last_mut() {
                        Some(SeqRange {
                            end: SeqBound::Value(end),
                            ..
                        }) if end.checked_add(1) == Some(uid) => *end = uid,
                        _ => ranges.push(SeqRange {
                            start: SeqBound::Value(uid),
                            end: SeqBound::Value(uid),
                        }),
                    }
                }
                SearchKey::Uid(SequenceSet(ranges))
            }
            SearchKey::And(keys) => SearchKey::And(
                keys.into_iter()
                    .map(|key| self.with_saved_result(key))
                    .collect(),
            ),
            SearchKey::Or(a, b) => SearchKey::Or(
                Box::new(self.with_saved_result(*a)),
                Box::new(self.with_saved_result(*b)),
            ),
            SearchKey::Not(key) => SearchKey::Not(Box::new(self.with_saved_result(*key))),
            other => other,
        }
    }

    /// Keeps a SEARCH's or SORT's result for `$` when it asked to SAVE: the messages
    /// [`esearch::for_save`] names. `uids` in the result's order (ascending for SEARCH,
    /// sorted for SORT).
    pub(crate) fn save_result(&mut self, returns: &[SearchReturn], uids: &[u32]) {
        if !returns.contains(&SearchReturn::Save) {
            return;
        }
        let mut saved = esearch::for_save(returns, uids.len()).pick(uids);
        saved.sort_unstable();
        saved.dedup();
        if let State::Selected(selected) = &mut self.state {
            selected.saved = saved;
        }
    }

    /// A SEARCH that was to SAVE failed: `$` is empty (RFC 5182 §2.1).
    pub(crate) fn forget_saved_result(&mut self) {
        if let State::Selected(selected) = &mut self.state {
            selected.saved.clear();
        }
    }

    pub(crate) fn search(
        &mut self,
        tag: String,
        uid: bool,
        charset: Option<String>,
        returns: Option<Vec<SearchReturn>>,
        criteria: SearchKey,
    ) {
        // IMAP4rev2 sessions always get ESEARCH (RFC 9051 §7.3.4).
        let returns = match returns {
            None if self.enabled.rev2 => Some(vec![SearchReturn::All]),
            other => other,
        };
        self.start_search(tag, uid, charset.as_deref(), returns, criteria, None);
    }

    /// Runs a SEARCH, or the search of a SORT or THREAD (`order`), over the selected
    /// folder.
    pub(crate) fn start_search(
        &mut self,
        tag: String,
        uid: bool,
        charset: Option<&str>,
        returns: Option<Vec<SearchReturn>>,
        criteria: SearchKey,
        order: Option<MatchOrder>,
    ) {
        if self.refuse_tag_reuse(&tag, returns.as_deref()) {
            return;
        }
        if let Some(charset) = charset
            && !charset.eq_ignore_ascii_case("UTF-8")
            && !charset.eq_ignore_ascii_case("US-ASCII")
        {
            let code = Code::BadCharset(crate::parser::CHARSETS.to_vec());
            let status = Status::no(crate::parser::BADCHARSET_MESSAGE);
            self.complete(&tag, status.code(code));
            return;
        }
        if uid {
            self.announce(true);
        }
        let criteria = self.with_saved_result(criteria);
        if mentions_modseq(&criteria) {
            // RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE.
            self.enable_condstore();
        }
        let Some(view) = self.selected_view() else {
            return;
        };
        let (max_seq, max_uid) = (view.exists(), view.max_uid().unwrap_or(0));
        let targets = view
            .uids()
            .iter()
            .enumerate()
            .map(|(i, &uid)| ScanTarget {
                seq: i as u32 + 1,
                uid,
                recent: view.is_recent(uid),
            })
            .collect();
        let queries = match self.config.text_index {
            true => search::text_queries(&criteria),
            false => Vec::new(),
        };
        let scan = Scan {
            tag,
            uid,
            detail: match &order {
                Some(order) => search::detail(&criteria).join(order.detail()),
                None => search::detail(&criteria),
            },
            targets,
            next: 0,
            work: Arc::new(ScanWork::Search {
                key: criteria,
                max_seq,
                max_uid,
                hints: TextHints::default(),
                order,
            }),
            examined: 0,
            kind: ScanKind::Search {
                returns,
                hits: Vec::new(),
                max_modseq: 0,
                modseqs: Vec::new(),
                order: OrderKeys::None,
            },
        };
        if !queries.is_empty()
            && let Some((folder, _)) = self.selected_folder()
        {
            let request = Request::TextIndex {
                folder,
                queries: queries.clone(),
            };
            self.request(Running::TextIndex { scan, queries }, request);
            return;
        }
        self.continue_scan(scan);
    }

    /// Takes the full-text index's answers into a SEARCH: messages they rule out are
    /// not read at all, and the BODY/TEXT keys they rule out need no text.
    pub(crate) fn narrow_search(
        &mut self,
        mut scan: Scan,
        queries: Vec<TextQuery>,
        answers: Vec<Option<TextCandidates>>,
    ) {
        let hints = TextHints::new(
            queries
                .into_iter()
                .zip(answers)
                .filter_map(|(query, answer)| Some((query, answer?)))
                .collect(),
        );
        if let ScanWork::Search {
            key,
            max_seq,
            max_uid,
            order,
            ..
        } = &*scan.work
            && !hints.is_empty()
        {
            scan.targets
                .retain(|target| search::prejudge(key, target.uid, &hints) != Some(false));
            scan.work = Arc::new(ScanWork::Search {
                key: key.clone(),
                max_seq: *max_seq,
                max_uid: *max_uid,
                hints,
                order: order.clone(),
            });
        }
        self.continue_scan(scan);
    }
}
