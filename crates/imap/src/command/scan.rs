//! The FETCH and SEARCH scans as the session runs them: a slice at a time through
//! the host ([`crate::scan`]), each slice's answer written or gathered.

use super::search::mentions_modseq;
use crate::command::*;
use crate::esearch;
use crate::fetch;
use crate::request::*;

use crate::response::{Code, Data, Status};
use crate::scan::{MatchOrder, OrderKeys, ScanJob, ScanOutcome, ScanOutput, ScanWork};
use crate::session::*;
use crate::sort;
use crate::thread;

impl Session {
    /// Asks for the next batch of a scan, or finishes it.
    pub(crate) fn continue_scan(&mut self, scan: Scan) {
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if scan.next < scan.targets.len() {
            let end = (scan.next + batch_size(scan.detail)).min(scan.targets.len());
            let stream_above = match &*scan.work {
                ScanWork::Fetch { attrs, .. } if fetch::streamable(attrs) => Some(STREAM_ABOVE),
                _ => None,
            };
            let job = ScanJob {
                targets: scan.targets[scan.next..end].to_vec(),
                detail: scan.detail,
                work: scan.work.clone(),
                budget: self.config.search_work_limit.saturating_sub(scan.examined),
                stream_above,
            };
            self.request(Running::Scan(scan), Request::Scan { folder, job });
            return;
        }
        match scan.kind {
            ScanKind::Fetch {
                unsolicited: true, ..
            } => self.flush(),
            ScanKind::Fetch { failed, .. } => {
                if failed {
                    let status = Status::no("Cannot decode part").code(Code::UnknownCte);
                    self.finish(&scan.tag, status, scan.uid);
                } else {
                    let command = if scan.uid { "UID FETCH" } else { "FETCH" };
                    self.finish(
                        &scan.tag,
                        Status::ok(format!("{command} completed")),
                        scan.uid,
                    );
                }
            }
            ScanKind::Search {
                order: OrderKeys::Sort(inputs),
                returns,
                max_modseq,
                modseqs,
                ..
            } => {
                let criteria = match &*scan.work {
                    ScanWork::Search {
                        order: Some(MatchOrder::Sort(criteria)),
                        ..
                    } => criteria.clone(),
                    _ => Vec::new(),
                };
                let order = sort::sort(&inputs, &criteria);
                let numbers: Vec<u32> = order
                    .iter()
                    .map(|&i| {
                        if scan.uid {
                            inputs[i].uid
                        } else {
                            inputs[i].seq
                        }
                    })
                    .collect();
                // RFC 7162 §3.1.5: with MODSEQ in the criteria, the highest MODSEQ of what
                // is returned, as for SEARCH.
                let max_modseq = match &*scan.work {
                    ScanWork::Search { key, .. } if mentions_modseq(key) => max_modseq,
                    _ => 0,
                };
                let sorted_modseqs: Vec<u64> = order
                    .iter()
                    .map(|&i| modseqs.get(i).copied().unwrap_or(0))
                    .collect();
                match &returns {
                    Some(returns) => {
                        let uids: Vec<u32> = order.iter().map(|&i| inputs[i].uid).collect();
                        self.save_result(returns, &uids);
                        // RFC 5182 §2.4: SAVE alone answers nothing but OK.
                        if !esearch::answers_nothing(returns) {
                            let modseq =
                                esearch::returned_modseq(returns, &sorted_modseqs, max_modseq);
                            let line =
                                esearch::response(&scan.tag, scan.uid, &numbers, returns, modseq);
                            self.out.extend_from_slice(&line);
                        }
                        if returns.contains(&SearchReturn::Update) {
                            self.open_context(&scan.tag, scan.uid, &scan.work, uids, inputs);
                        }
                    }
                    None => self
                        .out
                        .extend_from_slice(&sort::response(&numbers, max_modseq)),
                }
                let command = scan_command(&scan.work, scan.uid);
                self.finish(
                    &scan.tag,
                    Status::ok(format!("{command} completed")),
                    scan.uid,
                );
            }
            ScanKind::Search {
                order: OrderKeys::Thread(inputs),
                ..
            } => {
                let algorithm = match &*scan.work {
                    ScanWork::Search {
                        order: Some(MatchOrder::Thread(algorithm)),
                        ..
                    } => *algorithm,
                    _ => ThreadAlgorithm::OrderedSubject,
                };
                let threads = thread::thread(&inputs, algorithm);
                let line = threads.response(|i| {
                    if scan.uid {
                        inputs[i].uid
                    } else {
                        inputs[i].seq
                    }
                });
                self.out.extend_from_slice(&line);
                let command = scan_command(&scan.work, scan.uid);
                self.finish(
                    &scan.tag,
                    Status::ok(format!("{command} completed")),
                    scan.uid,
                );
            }
            // No match: SORT and THREAD answer with no numbers.
            ScanKind::Search { returns, .. } if scan_order(&scan.work).is_some() => {
                let line = match (scan_order(&scan.work), &returns) {
                    (Some(MatchOrder::Sort(_)), Some(returns)) => {
                        self.save_result(returns, &[]);
                        let line = if esearch::answers_nothing(returns) {
                            Vec::new()
                        } else {
                            esearch::response(&scan.tag, scan.uid, &[], returns, None)
                        };
                        if returns.contains(&SearchReturn::Update) {
                            self.out.extend_from_slice(&line);
                            self.open_context(&scan.tag, scan.uid, &scan.work, vec![], vec![]);
                            Vec::new()
                        } else {
                            line
                        }
                    }
                    (Some(MatchOrder::Sort(_)), None) => sort::response(&[], 0),
                    _ => thread::Threads::default().response(|_| 0),
                };
                self.out.extend_from_slice(&line);
                let command = scan_command(&scan.work, scan.uid);
                self.finish(
                    &scan.tag,
                    Status::ok(format!("{command} completed")),
                    scan.uid,
                );
            }
            ScanKind::Search {
                returns,
                hits,
                max_modseq,
                modseqs,
                ..
            } => {
                let asked_modseq = match &*scan.work {
                    ScanWork::Search { key, .. } => mentions_modseq(key),
                    ScanWork::Fetch { .. } => false,
                };
                let max_modseq = if asked_modseq { max_modseq } else { 0 };
                let numbers: Vec<u32> = hits
                    .iter()
                    .map(|&(seq, uid)| if scan.uid { uid } else { seq })
                    .collect();
                match returns {
                    None => {
                        self.data(Data::Search {
                            sort: false,
                            numbers: &numbers,
                            modseq: (max_modseq > 0 && !numbers.is_empty()).then_some(max_modseq),
                        });
                    }
                    Some(returns) if esearch::answers_nothing(&returns) => {
                        // RFC 5182 §2.4: SAVE alone answers nothing but OK.
                        let uids: Vec<u32> = hits.iter().map(|&(_, uid)| uid).collect();
                        self.save_result(&returns, &uids);
                        if returns.contains(&SearchReturn::Update) {
                            self.open_context(&scan.tag, scan.uid, &scan.work, uids, vec![]);
                        }
                    }
                    Some(returns) => {
                        let uids: Vec<u32> = hits.iter().map(|&(_, uid)| uid).collect();
                        self.save_result(&returns, &uids);
                        let modseq = esearch::returned_modseq(&returns, &modseqs, max_modseq);
                        let line =
                            esearch::response(&scan.tag, scan.uid, &numbers, &returns, modseq);
                        self.out.extend_from_slice(&line);
                        if returns.contains(&SearchReturn::Update) {
                            let uids = hits.iter().map(|&(_, uid)| uid).collect();
                            self.open_context(&scan.tag, scan.uid, &scan.work, uids, vec![]);
                        }
                    }
                }
                let command = if scan.uid { "UID SEARCH" } else { "SEARCH" };
                self.finish(
                    &scan.tag,
                    Status::ok(format!("{command} completed")),
                    scan.uid,
                );
            }
        }
    }

    pub(crate) fn scan_reply(&mut self, mut scan: Scan, result: Result<ScanOutcome, Fault>) {
        let saving = matches!(
            &scan.kind,
            ScanKind::Search { returns: Some(returns), .. } if returns.contains(&SearchReturn::Save)
        );
        let unsolicited = matches!(
            scan.kind,
            ScanKind::Fetch {
                unsolicited: true,
                ..
            }
        );
        let outcome = match result {
            // NOTIFY's FETCH has nobody to answer: what failed is left out.
            Err(_)
            | Ok(ScanOutcome {
                over_budget: true, ..
            }) if unsolicited => return,
            Ok(outcome) => outcome,
            Err(fault) => {
                if saving {
                    self.forget_saved_result();
                }
                return self.finish(&scan.tag, fault_status(&fault, false), scan.uid);
            }
        };
        scan.next += outcome.processed.max(1);
        scan.examined = scan.examined.saturating_add(outcome.examined);
        if outcome.over_budget {
            if saving {
                self.forget_saved_result();
            }
            let command = scan_command(&scan.work, scan.uid);
            let text = format!("{command} would read too much text; narrow it down");
            return self.finish(&scan.tag, Status::no(text).code(Code::Limit), scan.uid);
        }
        match (outcome.output, &mut scan.kind) {
            (
                ScanOutput::Rendered {
                    bytes,
                    unknown_cte,
                    streamed,
                    keywords,
                    shown,
                },
                ScanKind::Fetch { failed, .. },
            ) => {
                *failed |= unknown_cte;
                self.announce_keywords(keywords.iter().map(String::as_str));
                if let Some(view) = self.selected_view_mut() {
                    for (uid, modseq) in shown {
                        view.shown(uid, modseq);
                    }
                }
                let Some((folder, _)) = self.selected_folder() else {
                    return;
                };
                // What the store keeps goes out between the rendered pieces around it.
                let mut from = 0;
                for literal in streamed {
                    self.out.extend_from_slice(&bytes[from..literal.at]);
                    self.flush();
                    self.actions.push_back(Action::Stream {
                        folder,
                        uid: literal.uid,
                        start: literal.start,
                        len: literal.len,
                    });
                    from = literal.at;
                }
                self.out.extend_from_slice(&bytes[from..]);
            }
            (
                ScanOutput::Hits {
                    hits,
                    max_modseq,
                    modseqs,
                    order,
                },
                ScanKind::Search {
                    hits: all,
                    max_modseq: highest,
                    modseqs: all_modseqs,
                    order: all_order,
                    ..
                },
            ) => {
                all.extend(hits);
                all_modseqs.extend(modseqs);
                all_order.extend(order);
                *highest = (*highest).max(max_modseq);
            }
            // The host answered a job with another kind's output.
            _ => {
                let status = fault_status(&Fault::Unavailable("scan".into()), false);
                return self.finish(&scan.tag, status, scan.uid);
            }
        }
        self.continue_scan(scan);
    }
}

/// The order a scan's SORT or THREAD puts its matches in.
fn scan_order(work: &ScanWork) -> Option<&MatchOrder> {
    match work {
        ScanWork::Search { order, .. } => order.as_ref(),
        ScanWork::Fetch { .. } => None,
    }
}

/// The command a search scan runs for: SEARCH, SORT or THREAD, UID or not.
fn scan_command(work: &ScanWork, uid: bool) -> &'static str {
    match (scan_order(work), uid) {
        (None, false) => "SEARCH",
        (None, true) => "UID SEARCH",
        (Some(MatchOrder::Sort(_)), false) => "SORT",
        (Some(MatchOrder::Sort(_)), true) => "UID SORT",
        (Some(MatchOrder::Thread(_)), false) => "THREAD",
        (Some(MatchOrder::Thread(_)), true) => "UID THREAD",
    }
}
