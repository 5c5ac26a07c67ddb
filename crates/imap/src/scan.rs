//! The per-message work of FETCH and SEARCH, handed to the host in slices.
//!
//! The session machine decides which messages a command covers and writes its
//! responses, but rendering FETCH items and evaluating SEARCH keys is CPU work that
//! grows with message size and key count. Done on the thread that serves sessions, one
//! user's `SEARCH NOT TEXT … ×1000` would stall everyone else's. So the machine asks
//! the host to run a [`ScanJob`] where that cannot happen (the server uses its blocking
//! pool, a few jobs at a time), and the job stops after a slice — about
//! [`OUTPUT_SLICE`] bytes of responses or [`WORK_SLICE`] bytes of text examined. The
//! machine asks for the rest with the next job, which the host starts once the client
//! has read what came before: a command's output never piles up beyond a slice or two.
//!
//! SEARCH also has a budget for the whole command ([`ScanJob::budget`], bytes of text
//! its keys may examine); past it the command fails with `NO [LIMIT]`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::command::{FetchAttr, SearchKey, SortCriterion, ThreadAlgorithm};
use crate::fetch::{self, RenderError, RenderStyle, StoredLiteral};
use crate::request::{Detail, MessageData};
use crate::search::{self, TextHints};
use crate::sort::{self, SortInput};
use crate::thread::{self, ThreadInput};

/// Rendered FETCH output after which a job stops and returns what it has.
pub const OUTPUT_SLICE: usize = 1024 * 1024;
/// Text examined by SEARCH keys after which a job stops and returns what it has.
pub const WORK_SLICE: u64 = 16 * 1024 * 1024;

/// One message of a scan, numbered as the session's view numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanTarget {
    pub seq: u32,
    pub uid: u32,
    /// \Recent for this session.
    pub recent: bool,
}

/// What a scan does with each message.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanWork {
    /// Render `* n FETCH (…)`; messages not changed since `changed_since` are skipped.
    Fetch {
        attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        style: RenderStyle,
    },
    /// Evaluate `key`; `max_seq` and `max_uid` are what `*` means in the view.
    Search {
        key: SearchKey,
        max_seq: u32,
        max_uid: u32,
        /// What the full-text index ruled out: those BODY/TEXT keys need no reading.
        hints: TextHints,
        /// SORT or THREAD: what each match contributes to the order.
        order: Option<MatchOrder>,
    },
}

/// How SORT (RFC 5256, RFC 5957) or THREAD orders a search's matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchOrder {
    Sort(Vec<SortCriterion>),
    Thread(ThreadAlgorithm),
}

impl MatchOrder {
    /// How much of each match the order reads.
    pub fn detail(&self) -> Detail {
        match self {
            MatchOrder::Sort(criteria) => sort::detail(criteria),
            MatchOrder::Thread(algorithm) => thread::detail(*algorithm),
        }
    }
}

/// The order values of the matches, in the order of the hits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OrderKeys {
    #[default]
    None,
    Sort(Vec<SortInput>),
    Thread(Vec<ThreadInput>),
}

impl OrderKeys {
    /// Appends what a later slice found.
    pub fn extend(&mut self, more: OrderKeys) {
        match (self, more) {
            (OrderKeys::Sort(all), OrderKeys::Sort(more)) => all.extend(more),
            (OrderKeys::Thread(all), OrderKeys::Thread(more)) => all.extend(more),
            (this @ OrderKeys::None, more) => *this = more,
            _ => {}
        }
    }
}

/// One slice of a scan, for the host to run.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanJob {
    /// Ascending; the job may stop before the last ([`ScanOutcome::processed`]).
    pub targets: Vec<ScanTarget>,
    /// How much of each message the host must read.
    pub detail: Detail,
    pub work: Arc<ScanWork>,
    /// Bytes of text SEARCH keys may still examine in this command.
    pub budget: u64,
    /// FETCH: messages bigger than this may stay in the store (the host reads their
    /// header only and sets [`MessageData::raw_in_store`]); their literals are streamed.
    /// `None` when the items need every message read.
    pub stream_above: Option<u64>,
}

/// What one slice produced.
#[derive(Debug, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Targets dealt with, counted from the first (those the store no longer has
    /// included); the rest go in the next job.
    pub processed: usize,
    pub output: ScanOutput,
    /// Bytes of text SEARCH keys examined.
    pub examined: u64,
    /// SEARCH examined more than its budget allowed: the command fails.
    pub over_budget: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScanOutput {
    Rendered {
        bytes: Vec<u8>,
        /// A BINARY item met a transfer encoding it cannot decode (`[UNKNOWN-CTE]`).
        unknown_cte: bool,
        /// Literals of messages left in the store, in the order of `bytes`.
        streamed: Vec<StoredLiteral>,
        /// The keywords in the FLAGS items of `bytes` (the session announces those new
        /// to the client first).
        keywords: BTreeSet<String>,
        /// (UID, MODSEQ) of each message whose flags or MODSEQ `bytes` shows.
        shown: Vec<(u32, u64)>,
    },
    /// (seq, uid) of the matches, and the highest MODSEQ among them.
    Hits {
        hits: Vec<(u32, u32)>,
        max_modseq: u64,
        /// The MODSEQ of each hit, in the order of `hits`.
        modseqs: Vec<u64>,
        /// SORT or THREAD values of each hit, in the order of `hits`.
        order: OrderKeys,
    },
}

impl ScanJob {
    /// Whether the job is CPU work worth queueing for: it reads whole messages, or
    /// searches their text. Flags, summaries and header fields are cheap.
    pub fn heavy(&self) -> bool {
        match *self.work {
            ScanWork::Fetch { .. } => self.detail == Detail::Full,
            ScanWork::Search { .. } => self.detail >= Detail::HeaderText,
        }
    }

    /// Whether the job reads nothing of a message but its UID, flags, MODSEQ, size and
    /// INTERNALDATE, and (with [`Detail::Fields`] or [`Detail::KeptHeader`]) what was
    /// kept at append: FETCH of those and of kept header fields (a mail client's header
    /// sync), SEARCH on flags, UIDs, sequence numbers, MODSEQ and the decoded fields.
    /// The host may then give messages whose other fields (the save date, the email
    /// id) are left empty.
    pub fn reads_only_listed(&self) -> bool {
        match &*self.work {
            ScanWork::Fetch { attrs, .. } => attrs.iter().all(|a| match a {
                FetchAttr::Uid
                | FetchAttr::Flags
                | FetchAttr::ModSeq
                | FetchAttr::InternalDate
                | FetchAttr::Rfc822Size => true,
                FetchAttr::BodySection { .. } => {
                    fetch::detail(std::slice::from_ref(a)) == Detail::KeptHeader
                }
                _ => false,
            }),
            ScanWork::Search { key, order, .. } => {
                order.is_none() && search::reads_only_listed(key)
            }
        }
    }

    /// Runs the slice. `read(uid, detail)` gives a message as the job needs it, or
    /// `None` if it is gone (expunged meanwhile); its error ends the job.
    pub fn run<E>(
        &self,
        now: i64,
        mut read: impl FnMut(u32, Detail) -> Result<Option<MessageData>, E>,
    ) -> Result<ScanOutcome, E> {
        let mut outcome = ScanOutcome {
            processed: 0,
            output: match *self.work {
                ScanWork::Fetch { .. } => ScanOutput::Rendered {
                    bytes: Vec::new(),
                    unknown_cte: false,
                    streamed: Vec::new(),
                    keywords: BTreeSet::new(),
                    shown: Vec::new(),
                },
                ScanWork::Search { .. } => ScanOutput::Hits {
                    hits: Vec::new(),
                    max_modseq: 0,
                    modseqs: Vec::new(),
                    order: OrderKeys::None,
                },
            },
            examined: 0,
            over_budget: false,
        };
        for target in &self.targets {
            if outcome.processed > 0 && self.slice_full(&outcome) {
                break;
            }
            outcome.processed += 1;
            let detail = match &*self.work {
                ScanWork::Search {
                    key, hints, order, ..
                } if !hints.is_empty() => {
                    let detail = search::detail_for(key, target.uid, hints);
                    match order {
                        Some(order) => detail.join(order.detail()),
                        None => detail,
                    }
                }
                _ => self.detail,
            };
            let Some(message) = read(target.uid, detail)? else {
                continue;
            };
            self.one(target, &message, now, &mut outcome);
            if outcome.examined > self.budget {
                outcome.over_budget = true;
                break;
            }
        }
        Ok(outcome)
    }

    fn slice_full(&self, outcome: &ScanOutcome) -> bool {
        let output = match &outcome.output {
            ScanOutput::Rendered {
                bytes, streamed, ..
            } => bytes.len() + streamed.iter().map(|s| s.len as usize).sum::<usize>(),
            ScanOutput::Hits { .. } => 0,
        };
        output >= OUTPUT_SLICE || outcome.examined >= WORK_SLICE
    }

    fn one(&self, target: &ScanTarget, message: &MessageData, now: i64, outcome: &mut ScanOutcome) {
        match (&*self.work, &mut outcome.output) {
            (
                ScanWork::Fetch {
                    attrs,
                    changed_since,
                    style,
                },
                ScanOutput::Rendered {
                    bytes,
                    unknown_cte,
                    streamed,
                    keywords,
                    shown,
                },
            ) => {
                if changed_since.is_some_and(|since| message.modseq <= since) {
                    return;
                }
                if attrs.contains(&FetchAttr::Flags) || attrs.contains(&FetchAttr::ModSeq) {
                    shown.push((message.uid, message.modseq));
                }
                if attrs.contains(&FetchAttr::Flags) {
                    for flag in &message.flags {
                        if !flag.starts_with('\\') && !keywords.contains(flag) {
                            keywords.insert(flag.clone());
                        }
                    }
                }
                let rendered = fetch::render_streaming(
                    bytes,
                    streamed,
                    target.seq,
                    message,
                    attrs,
                    *style,
                    target.recent,
                );
                if rendered == Err(RenderError::UnknownCte) {
                    *unknown_cte = true;
                }
            }
            (
                ScanWork::Search {
                    key,
                    max_seq,
                    max_uid,
                    hints,
                    order,
                },
                ScanOutput::Hits {
                    hits,
                    max_modseq,
                    modseqs,
                    order: keys,
                },
            ) => {
                let ctx = search::Context {
                    seq: target.seq,
                    max_seq: *max_seq,
                    max_uid: *max_uid,
                    recent: target.recent,
                    message,
                    text: search::TextCache::default(),
                    hints,
                    now,
                };
                if search::matches(key, &ctx) {
                    hits.push((target.seq, target.uid));
                    modseqs.push(message.modseq);
                    *max_modseq = (*max_modseq).max(message.modseq);
                    // A message whose summary the host could not give still takes part,
                    // ordered by its numbers alone.
                    match order {
                        Some(MatchOrder::Sort(criteria)) => {
                            let input = SortInput::from_message(target.seq, message, criteria)
                                .unwrap_or(SortInput {
                                    uid: target.uid,
                                    seq: target.seq,
                                    ..SortInput::default()
                                });
                            match keys {
                                OrderKeys::Sort(all) => all.push(input),
                                other => *other = OrderKeys::Sort(vec![input]),
                            }
                        }
                        Some(MatchOrder::Thread(_)) => {
                            let input = ThreadInput::from_message(target.seq, message).unwrap_or(
                                ThreadInput {
                                    uid: target.uid,
                                    seq: target.seq,
                                    ..ThreadInput::default()
                                },
                            );
                            match keys {
                                OrderKeys::Thread(all) => all.push(input),
                                other => *other = OrderKeys::Thread(vec![input]),
                            }
                        }
                        None => {}
                    }
                }
                outcome.examined += ctx.text.examined();
            }
            // `run` made the output for the work.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::DateTime;

    fn message(uid: u32, body: &str) -> MessageData {
        let raw = format!("Subject: m{uid}\r\n\r\n{body}\r\n").into_bytes();
        MessageData {
            uid,
            email_id: 0,
            flags: Vec::new(),
            internal_date: DateTime {
                timestamp: 0,
                offset: 0,
            },
            save_date: None,
            size: raw.len() as u64,
            modseq: uid as u64,
            summary: None,
            raw: Some(raw),
            fields: None,
            raw_in_store: false,
        }
    }

    fn targets(n: u32) -> Vec<ScanTarget> {
        (1..=n)
            .map(|i| ScanTarget {
                seq: i,
                uid: i * 10,
                recent: false,
            })
            .collect()
    }

    fn search(key: SearchKey, n: u32, budget: u64) -> ScanJob {
        ScanJob {
            targets: targets(n),
            detail: Detail::Full,
            work: Arc::new(ScanWork::Search {
                key,
                max_seq: n,
                max_uid: n * 10,
                hints: TextHints::default(),
                order: None,
            }),
            budget,
            stream_above: None,
        }
    }

    fn read_all(body: &str) -> impl FnMut(u32, Detail) -> Result<Option<MessageData>, ()> + '_ {
        move |uid, _| Ok(Some(message(uid, body)))
    }

    #[test]
    fn search_counts_the_text_its_keys_examine_and_stops_past_the_budget() {
        let body = "x".repeat(1000);
        let key = SearchKey::And(vec![
            SearchKey::Not(Box::new(SearchKey::Text("q1".into()))),
            SearchKey::Not(Box::new(SearchKey::Text("q2".into()))),
        ]);
        let done = search(key.clone(), 10, u64::MAX)
            .run(0, read_all(&body))
            .unwrap();
        assert_eq!(done.processed, 10);
        assert!(!done.over_budget);
        let ScanOutput::Hits {
            hits, max_modseq, ..
        } = &done.output
        else {
            panic!("{done:?}")
        };
        assert_eq!(hits.len(), 10);
        assert_eq!(*max_modseq, 100);
        // Two TEXT keys each read the header and the body of every message.
        let per_message = done.examined / 10;
        assert!(per_message >= 2 * 1000, "{per_message}");
        let cut = search(key, 10, per_message * 3)
            .run(0, read_all(&body))
            .unwrap();
        assert!(cut.over_budget);
        assert_eq!(cut.processed, 4);
    }

    #[test]
    fn a_slice_ends_after_its_output_and_the_rest_follows() {
        let body = "y".repeat(300 * 1024);
        let job = ScanJob {
            targets: targets(10),
            detail: Detail::Full,
            work: Arc::new(ScanWork::Fetch {
                attrs: vec![FetchAttr::Uid, FetchAttr::Rfc822],
                changed_since: None,
                style: RenderStyle::default(),
            }),
            budget: 0,
            stream_above: None,
        };
        let first = job.run(0, read_all(&body)).unwrap();
        // 300 KiB a message: the fourth passes the 1 MiB slice.
        assert_eq!(first.processed, 4);
        let ScanOutput::Rendered {
            bytes, unknown_cte, ..
        } = &first.output
        else {
            panic!("{first:?}")
        };
        assert!(!unknown_cte);
        assert!(bytes.starts_with(b"* 1 FETCH (UID 10 RFC822 {"));
        assert_eq!(bytes.windows(8).filter(|w| w == b" FETCH (").count(), 4);
    }

    #[test]
    fn gone_messages_count_as_processed_and_errors_end_the_job() {
        let job = search(SearchKey::All, 3, u64::MAX);
        let outcome = job
            .run(0, |uid, _| {
                Ok::<_, ()>((uid != 20).then(|| message(uid, "b")))
            })
            .unwrap();
        assert_eq!(outcome.processed, 3);
        let ScanOutput::Hits { hits, .. } = outcome.output else {
            panic!()
        };
        assert_eq!(hits, vec![(1, 10), (3, 30)]);
        assert_eq!(
            job.run(0, |_, _| Err::<Option<MessageData>, _>("disk")),
            Err("disk")
        );
    }

    #[test]
    fn jobs_that_read_only_what_is_listed_are_told_apart() {
        let fetch = |attrs: Vec<FetchAttr>| ScanJob {
            targets: targets(1),
            detail: Detail::Meta,
            work: Arc::new(ScanWork::Fetch {
                attrs,
                changed_since: Some(3),
                style: RenderStyle::default(),
            }),
            budget: 0,
            stream_above: None,
        };
        assert!(
            fetch(vec![FetchAttr::Uid, FetchAttr::Flags, FetchAttr::ModSeq]).reads_only_listed()
        );
        assert!(
            fetch(vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size
            ])
            .reads_only_listed()
        );
        // The listing has no save dates nor email ids.
        assert!(!fetch(vec![FetchAttr::Uid, FetchAttr::SaveDate]).reads_only_listed());
        assert!(!fetch(vec![FetchAttr::Uid, FetchAttr::EmailId]).reads_only_listed());
        assert!(!fetch(vec![FetchAttr::Uid, FetchAttr::Envelope]).reads_only_listed());
        use SearchKey::*;
        let flags_only = And(vec![
            Unseen,
            Not(Box::new(Keyword("$Junk".into()))),
            ModSeq(2),
        ]);
        assert!(search(flags_only, 1, 0).reads_only_listed());
        assert!(search(And(vec![Unseen, Subject("x".into())]), 1, 0).reads_only_listed());
        assert!(search(Header("cc".into(), "x".into()), 1, 0).reads_only_listed());
        assert!(!search(Header("x-mailer".into(), "x".into()), 1, 0).reads_only_listed());
        assert!(!search(Body("x".into()), 1, 0).reads_only_listed());
        assert!(search(And(vec![SaveDateSupported, Seen]), 1, 0).reads_only_listed());
        assert!(
            !search(
                SavedSince(crate::command::Date {
                    year: 2026,
                    month: 1,
                    day: 1
                }),
                1,
                0
            )
            .reads_only_listed()
        );
        assert!(!search(Or(Box::new(Seen), Box::new(Larger(10))), 1, 0).reads_only_listed());
        assert!(
            !search(
                And(vec![
                    Seen,
                    Since(crate::command::Date {
                        year: 2026,
                        month: 1,
                        day: 1
                    })
                ]),
                1,
                0
            )
            .reads_only_listed()
        );
    }
}
