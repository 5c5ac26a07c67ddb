//! Live search results: the UPDATE return option of CONTEXT=SEARCH and CONTEXT=SORT
//! (RFC 5267 §4.3, with PARTIAL as RFC 9394 §3.1 has it).
//!
//! A `SEARCH` or `SORT` with `RETURN (… UPDATE)` leaves its result behind, and while the
//! folder stays selected the client is told how it changes: `* ESEARCH (TAG "t")
//! REMOVEFROM (…)` and `ADDTO (…)`. Changes are followed as the client sees them, from
//! what the session's [`View`] announces: a message joins a result once its EXISTS has
//! gone out (§4.3.3: its sequence number must be valid), and leaves it before its
//! EXPUNGE does (§4.3.4). The result changes with flags (of any session, this one's STORE
//! and FETCH's implicit \Seen too), with new messages and with expunges.
//!
//! Deciding a message again costs nothing when the key reads only what a change carries
//! (flags, MODSEQ, UID, sequence number, \Recent): [`decide`] works that out with the
//! rest of the key unknown, and a key such as `UNSEEN FROM x` is often decided by its
//! flag half alone. Everything else is read by the host as a SEARCH scan of just those
//! messages ([`Contexts::next_read`]), a slice at a time, after the command that
//! announced the change and before the client's next one runs: that command's answer
//! then never overtakes the updates, as it never overtakes an EXISTS. The cost is the
//! reading of the changed messages (of every message, for the keys below that name
//! numbers). A SORT result keeps each member's sort values, so a new
//! member goes where `SORT` would put it; sort values never change, so a member never
//! moves. Keys that name sequence numbers or `*` are decided again for every message
//! whenever messages come or go, since their numbers move.
//!
//! A SEARCH result is in mailbox order, and its changes use context position 0 (§4.3.3:
//! the client keeps mailbox order); a SORT result's changes name positions, each run at
//! the position it has once the runs before it are applied (§4.3.2).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::command::{DateTime, SearchKey, SeqBound, SequenceSet, SortCriterion};
use crate::esearch::{self, Run};
use crate::request::{Detail, MessageData};
use crate::response::{Code, Status};
use crate::scan::{MatchOrder, ScanTarget, ScanWork};
use crate::search::{self, TextHints};
use crate::sort::{SortInput, SortValues};
use crate::view::{Announced, Change, View};

/// Live results one session may keep. Each costs a decision (for some keys a read of
/// the message) per change to the folder, so a client with many would make every
/// delivery expensive; RFC 5267 §4.3.1 asks for at least one and more if possible, and
/// a client follows a few views of a folder at a time (unread, flagged, a sorted list).
pub const MAX_LIVE_RESULTS: usize = 5;

/// Why a search's result cannot be kept live though it asked for UPDATE: the text of
/// the untagged `NO [NOUPDATE "tag"]` (RFC 5267 §4.3.1); the search itself is answered.
pub fn refusal(key: &SearchKey, live: usize) -> Option<&'static str> {
    if live >= MAX_LIVE_RESULTS {
        return Some("Too many live searches (5 at most): CANCELUPDATE one first");
    }
    if clock_bound(key) {
        // RFC 5032's keys change their answer as time passes, with no change to the
        // folder to tell the session so.
        return Some("OLDER and YOUNGER results change with the clock and are not kept live");
    }
    None
}

/// One live result.
#[derive(Debug)]
pub struct LiveResult {
    tag: String,
    uid: bool,
    key: SearchKey,
    /// SORT's criteria; `None` for a SEARCH.
    criteria: Option<Vec<SortCriterion>>,
    /// The results' UIDs in the result's order (ascending for a SEARCH).
    members: Vec<u32>,
    in_result: BTreeSet<u32>,
    /// A SORT's values of each member.
    values: HashMap<u32, SortValues>,
    /// Messages to decide by reading them.
    dirty: BTreeSet<u32>,
    /// Every message is to be decided again (the key's numbers moved).
    all_dirty: bool,
    /// Messages the host is reading now.
    reading: BTreeSet<u32>,
    /// Messages being read that changed since: what the read says of them is stale.
    stale: BTreeSet<u32>,
    /// The key names sequence numbers or `*`.
    positional: bool,
    /// The key looks at flags or MODSEQ.
    flag_bound: bool,
}

impl LiveResult {
    /// The result of a SEARCH (`sort` None: `members` ascending) or SORT (`sort`: the
    /// criteria and every member's sort input, `members` in sort order).
    pub fn new(
        tag: String,
        uid: bool,
        key: SearchKey,
        members: Vec<u32>,
        sort: Option<(Vec<SortCriterion>, Vec<SortInput>)>,
    ) -> LiveResult {
        let (criteria, values) = match sort {
            Some((criteria, inputs)) => {
                let values = inputs
                    .iter()
                    .map(|input| (input.uid, SortValues::new(input, &criteria)))
                    .collect();
                (Some(criteria), values)
            }
            None => (None, HashMap::new()),
        };
        LiveResult {
            tag,
            uid,
            positional: positional(&key),
            flag_bound: flag_bound(&key),
            key,
            criteria,
            in_result: members.iter().copied().collect(),
            members,
            values,
            dirty: BTreeSet::new(),
            all_dirty: false,
            reading: BTreeSet::new(),
            stale: BTreeSet::new(),
        }
    }

    /// The client's number for `uid`: the UID, or its sequence number now.
    fn number(&self, view: &View, uid: u32) -> Option<u32> {
        if self.uid {
            Some(uid)
        } else {
            view.seq_of(uid)
        }
    }

    fn numbered(&self, view: &View, runs: Vec<Run>) -> Vec<Run> {
        runs.into_iter()
            .map(|(position, uids)| {
                let numbers = uids
                    .into_iter()
                    .filter_map(|uid| self.number(view, uid))
                    .collect();
                (position, numbers)
            })
            .collect()
    }

    /// Takes `gone` out of the result and says so.
    fn remove(&mut self, out: &mut Vec<u8>, view: &View, gone: &BTreeSet<u32>) {
        let gone: BTreeSet<u32> = gone.intersection(&self.in_result).copied().collect();
        if gone.is_empty() {
            return;
        }
        let runs = match self.criteria {
            Some(_) => removal_runs(&self.members, &gone),
            None => vec![(0, gone.iter().copied().collect())],
        };
        let runs = self.numbered(view, runs);
        self.members.retain(|uid| !gone.contains(uid));
        for uid in &gone {
            self.in_result.remove(uid);
            self.values.remove(uid);
        }
        out.extend_from_slice(&esearch::update(&self.tag, self.uid, &runs, &[]));
    }

    /// Applies decisions: (uid, matches, sort values when it matches and is new to a
    /// SORT result). One line for what changed.
    fn apply(&mut self, out: &mut Vec<u8>, view: &View, decided: Vec<(u32, bool)>) {
        let gone: BTreeSet<u32> = decided
            .iter()
            .filter(|&&(uid, matches)| !matches && self.in_result.contains(&uid))
            .map(|&(uid, _)| uid)
            .collect();
        let new: BTreeSet<u32> = decided
            .iter()
            .filter(|&&(uid, matches)| {
                matches
                    && !self.in_result.contains(&uid)
                    && view.seq_of(uid).is_some()
                    && (self.criteria.is_none() || self.values.contains_key(&uid))
            })
            .map(|&(uid, _)| uid)
            .collect();
        if gone.is_empty() && new.is_empty() {
            return;
        }
        let removed = match self.criteria {
            Some(_) => removal_runs(&self.members, &gone),
            None if gone.is_empty() => Vec::new(),
            None => vec![(0, gone.iter().copied().collect())],
        };
        self.members.retain(|uid| !gone.contains(uid));
        for uid in &gone {
            self.in_result.remove(uid);
            self.values.remove(uid);
        }
        let added = match &self.criteria {
            Some(criteria) => {
                for &uid in &new {
                    let Some(value) = self.values.get(&uid) else {
                        continue;
                    };
                    let at = self.members.partition_point(|member| {
                        self.values
                            .get(member)
                            .is_some_and(|m| m.cmp(value, criteria).is_lt())
                    });
                    self.members.insert(at, uid);
                }
                addition_runs(&self.members, &new)
            }
            None => {
                for &uid in &new {
                    let at = self.members.partition_point(|&member| member < uid);
                    self.members.insert(at, uid);
                }
                match new.is_empty() {
                    true => Vec::new(),
                    false => vec![(0, new.iter().copied().collect())],
                }
            }
        };
        self.in_result.extend(new.iter().copied());
        // Sort values of messages that did not join are not kept.
        if self.criteria.is_some() {
            let in_result = &self.in_result;
            self.values.retain(|uid, _| in_result.contains(uid));
        }
        let removed = self.numbered(view, removed);
        let added = self.numbered(view, added);
        out.extend_from_slice(&esearch::update(&self.tag, self.uid, &removed, &added));
    }

    /// Decides the messages a change showed, those it can without reading them.
    fn changed(&mut self, out: &mut Vec<u8>, view: &View, changes: &[(u32, &Change, bool)]) {
        let max_seq = view.exists();
        let max_uid = view.max_uid().unwrap_or(0);
        let mut decided = Vec::new();
        for &(uid, change, appended) in changes {
            if !appended && !self.flag_bound {
                continue;
            }
            let Some(seq) = view.seq_of(uid) else {
                continue;
            };
            if self.reading.contains(&uid) {
                self.stale.insert(uid);
            }
            let facts = Facts {
                uid,
                seq,
                max_seq,
                max_uid,
                change,
            };
            match decide(&self.key, &facts) {
                // A SORT result's new member needs its sort values, which only a read
                // gives.
                Some(true)
                    if self.criteria.is_some()
                        && !self.in_result.contains(&uid)
                        && !self.values.contains_key(&uid) =>
                {
                    self.dirty.insert(uid);
                }
                Some(matches) => {
                    self.dirty.remove(&uid);
                    decided.push((uid, matches));
                }
                None => {
                    self.dirty.insert(uid);
                }
            }
        }
        self.apply(out, view, decided);
    }
}

/// What a change tells of a message: enough for [`decide`].
struct Facts<'a> {
    uid: u32,
    seq: u32,
    max_seq: u32,
    max_uid: u32,
    change: &'a Change,
}

/// Keys a change decides: flags, \Recent, MODSEQ, UIDs and sequence numbers.
fn known_from_change(key: &SearchKey) -> bool {
    use SearchKey::*;
    matches!(
        key,
        All | Answered
            | Deleted
            | Draft
            | Flagged
            | Seen
            | Unanswered
            | Undeleted
            | Undraft
            | Unflagged
            | Unseen
            | Keyword(_)
            | Unkeyword(_)
            | Recent
            | New
            | Old
            | ModSeq(_)
            | SequenceSet(_)
            | Uid(_)
    )
}

/// Whether the message of `facts` matches `key`, as far as the change tells: `None`
/// when the answer turns on what it does not carry (size, dates, header, text).
fn decide(key: &SearchKey, facts: &Facts<'_>) -> Option<bool> {
    match key {
        SearchKey::And(keys) => {
            let mut answer = Some(true);
            for key in keys {
                match decide(key, facts) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => answer = None,
                }
            }
            answer
        }
        SearchKey::Or(a, b) => match (decide(a, facts), decide(b, facts)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        SearchKey::Not(key) => decide(key, facts).map(|matches| !matches),
        leaf if known_from_change(leaf) => {
            let message = MessageData {
                uid: facts.uid,
                flags: facts.change.flags.clone(),
                internal_date: DateTime {
                    timestamp: 0,
                    offset: 0,
                },
                size: 0,
                modseq: facts.change.modseq,
                email_id: 0,
                summary: None,
                fields: None,
                raw: None,
                raw_in_store: false,
                save_date: None,
            };
            let hints = TextHints::default();
            let ctx = search::Context {
                seq: facts.seq,
                max_seq: facts.max_seq,
                max_uid: facts.max_uid,
                recent: facts.change.recent,
                message: &message,
                text: search::TextCache::default(),
                hints: &hints,
                now: 0,
            };
            Some(search::matches(leaf, &ctx))
        }
        _ => None,
    }
}

/// Whether `key` looks at anything a flag change changes.
fn flag_bound(key: &SearchKey) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.iter().any(flag_bound),
        Or(a, b) => flag_bound(a) || flag_bound(b),
        Not(key) => flag_bound(key),
        All | Recent | Old | SequenceSet(_) | Uid(_) => false,
        leaf => known_from_change(leaf),
    }
}

/// Whether `key` names sequence numbers or `*`, whose messages change as messages
/// come and go.
fn positional(key: &SearchKey) -> bool {
    let starred = |set: &SequenceSet| {
        set.0
            .iter()
            .any(|range| range.start == SeqBound::Star || range.end == SeqBound::Star)
    };
    match key {
        SearchKey::And(keys) => keys.iter().any(positional),
        SearchKey::Or(a, b) => positional(a) || positional(b),
        SearchKey::Not(key) => positional(key),
        SearchKey::SequenceSet(_) => true,
        SearchKey::Uid(set) => starred(set),
        _ => false,
    }
}

/// Whether `key` has OLDER or YOUNGER (RFC 5032).
fn clock_bound(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(clock_bound),
        SearchKey::Or(a, b) => clock_bound(a) || clock_bound(b),
        SearchKey::Not(key) => clock_bound(key),
        SearchKey::Older(_) | SearchKey::Younger(_) => true,
        _ => false,
    }
}

/// REMOVEFROM runs that take `gone` out of `list`: each run of neighbours in `list`,
/// first to last, at the position (from 1) its first has once the runs before it are
/// out.
pub fn removal_runs(list: &[u32], gone: &BTreeSet<u32>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut removed = 0;
    let mut previous_gone = false;
    for (i, uid) in list.iter().enumerate() {
        if !gone.contains(uid) {
            previous_gone = false;
            continue;
        }
        match runs.last_mut() {
            Some((_, run)) if previous_gone => run.push(*uid),
            _ => runs.push((i - removed + 1, vec![*uid])),
        }
        removed += 1;
        previous_gone = true;
    }
    runs
}

/// ADDTO runs that bring `new` into a list, `list` being the list with them: each run
/// of neighbours, first to last, at the position (from 1) it takes.
pub fn addition_runs(list: &[u32], new: &BTreeSet<u32>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut previous_new = false;
    for (i, uid) in list.iter().enumerate() {
        if !new.contains(uid) {
            previous_new = false;
            continue;
        }
        match runs.last_mut() {
            Some((_, run)) if previous_new => run.push(*uid),
            _ => runs.push((i + 1, vec![*uid])),
        }
        previous_new = true;
    }
    runs
}

/// A slice of one live result's messages for the host to read: a SEARCH scan whose
/// hits match.
#[derive(Debug)]
pub struct Read {
    /// The tag of the search whose result this is.
    pub tag: String,
    pub targets: Vec<ScanTarget>,
    pub detail: Detail,
    pub work: Arc<ScanWork>,
}

/// The live results of the selected folder.
#[derive(Debug, Default)]
pub struct Contexts {
    live: Vec<LiveResult>,
}

impl Contexts {
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Whether a live result has `tag` (RFC 5267 §4.3: a new UPDATE may not reuse it).
    pub fn contains(&self, tag: &str) -> bool {
        self.live.iter().any(|result| result.tag == tag)
    }

    pub fn open(&mut self, result: LiveResult) {
        self.live.push(result);
    }

    /// Ends the results of `tags` (RFC 5267 §4.3.5), all or none: the first tag no
    /// live result has is the error.
    pub fn cancel<'a>(&mut self, tags: &'a [String]) -> Result<(), &'a str> {
        if let Some(unknown) = tags.iter().find(|tag| !self.contains(tag)) {
            return Err(unknown);
        }
        self.live.retain(|result| !tags.contains(&result.tag));
        Ok(())
    }

    /// Before the view forgets `uids`: REMOVEFROM for the results that have them, while
    /// their sequence numbers still hold (RFC 5267 §4.3.4).
    pub fn expunging(&mut self, out: &mut Vec<u8>, view: &View, uids: &[u32]) {
        let gone: BTreeSet<u32> = uids
            .iter()
            .copied()
            .filter(|&uid| view.seq_of(uid).is_some())
            .collect();
        if gone.is_empty() {
            return;
        }
        for result in &mut self.live {
            result.remove(out, view, &gone);
            for uid in &gone {
                result.dirty.remove(uid);
                result.stale.remove(uid);
            }
            if result.positional {
                result.all_dirty = true;
            }
        }
    }

    /// After the view announced `announced` (EXISTS, then FETCH FLAGS, as written):
    /// ADDTO and REMOVEFROM for what the changes decide, the rest left to read.
    pub fn announced(&mut self, out: &mut Vec<u8>, view: &View, announced: &Announced) {
        if self.live.is_empty() {
            return;
        }
        let changes: Vec<(u32, &Change, bool)> = announced
            .appended
            .iter()
            .map(|(uid, change)| (*uid, change, true))
            .chain(
                announced
                    .flags
                    .iter()
                    .map(|(uid, change)| (*uid, change, false)),
            )
            .collect();
        for result in &mut self.live {
            if result.positional && !announced.appended.is_empty() {
                result.all_dirty = true;
            }
            result.changed(out, view, &changes);
        }
    }

    /// The next slice to read, if a result has messages to decide and none being read.
    /// `batch` is how many messages of a detail one read takes.
    pub fn next_read(&mut self, view: &View, batch: impl Fn(Detail) -> usize) -> Option<Read> {
        let result = self
            .live
            .iter_mut()
            .find(|r| r.reading.is_empty() && (r.all_dirty || !r.dirty.is_empty()))?;
        if result.all_dirty {
            result.all_dirty = false;
            result.dirty = view.uids().iter().copied().collect();
        }
        result.dirty.retain(|&uid| view.seq_of(uid).is_some());
        let order = result.criteria.clone().map(MatchOrder::Sort);
        let detail = match &order {
            Some(order) => search::detail(&result.key).join(order.detail()),
            None => search::detail(&result.key),
        };
        let take: Vec<u32> = result.dirty.iter().copied().take(batch(detail)).collect();
        if take.is_empty() {
            return None;
        }
        let targets = take.iter().filter_map(|&uid| view.target(uid)).collect();
        for uid in &take {
            result.dirty.remove(uid);
        }
        result.reading = take.into_iter().collect();
        result.stale.clear();
        Some(Read {
            tag: result.tag.clone(),
            targets,
            detail,
            work: Arc::new(ScanWork::Search {
                key: result.key.clone(),
                max_seq: view.exists(),
                max_uid: view.max_uid().unwrap_or(0),
                hints: TextHints::default(),
                order,
            }),
        })
    }

    /// What the host read of [`Contexts::next_read`]'s slice for `tag`: the first
    /// `processed` targets were decided, `hits` (with their sort inputs, for a SORT)
    /// matched. Messages changed meanwhile, or not reached, are read again.
    pub fn read(
        &mut self,
        out: &mut Vec<u8>,
        view: &View,
        tag: &str,
        targets: &[ScanTarget],
        processed: usize,
        hits: Vec<(u32, Option<SortInput>)>,
    ) {
        let Some(result) = self.live.iter_mut().find(|r| r.tag == tag) else {
            // Cancelled while the host read it.
            return;
        };
        let reading = std::mem::take(&mut result.reading);
        let stale = std::mem::take(&mut result.stale);
        let done: BTreeSet<u32> = targets.iter().take(processed).map(|t| t.uid).collect();
        for uid in reading.difference(&done) {
            result.dirty.insert(*uid);
        }
        let mut matched = BTreeSet::new();
        for (uid, input) in hits {
            if !done.contains(&uid) || stale.contains(&uid) {
                continue;
            }
            matched.insert(uid);
            if let (Some(criteria), Some(input)) = (&result.criteria, input)
                && !result.in_result.contains(&uid)
            {
                result.values.insert(uid, SortValues::new(&input, criteria));
            }
        }
        let decided = done
            .iter()
            .filter(|uid| !stale.contains(uid) && !result.dirty.contains(uid))
            .map(|&uid| (uid, matched.contains(&uid)))
            .collect();
        result.apply(out, view, decided);
    }

    /// The host could not read for `tag`: the result ends, and the client is told with
    /// the response code that refuses updates (RFC 5267 §4.3.1).
    pub fn fail(&mut self, out: &mut Vec<u8>, tag: &str, why: &str) {
        let before = self.live.len();
        self.live.retain(|result| result.tag != tag);
        if self.live.len() < before {
            let status = Status::no(why.to_string()).code(Code::NoUpdate(tag.to_string()));
            status.encode(out, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{SeqRange, SortKey};
    use crate::request::{FolderEvent, FolderId};
    use crate::view::AnnounceStyle;

    /// What a client does with REMOVEFROM and ADDTO runs (RFC 5267 §4.3.3-4.3.4), in
    /// the order written.
    fn client_applies(list: &[u32], removed: &[Run], added: &[Run]) -> Vec<u32> {
        let mut list = list.to_vec();
        for (position, numbers) in removed {
            let at = position - 1;
            assert_eq!(&list[at..at + numbers.len()], &numbers[..], "{removed:?}");
            list.drain(at..at + numbers.len());
        }
        for (position, numbers) in added {
            let at = position - 1;
            assert!(at <= list.len(), "{added:?}");
            for (i, n) in numbers.iter().enumerate() {
                list.insert(at + i, *n);
            }
        }
        list
    }

    #[test]
    fn runs_name_positions_as_the_client_meets_them() {
        let list = [7, 3, 9, 1, 4, 8, 2];
        let gone = BTreeSet::from([3, 9, 4, 2]);
        let removed = removal_runs(&list, &gone);
        assert_eq!(removed, vec![(2, vec![3, 9]), (3, vec![4]), (4, vec![2])]);
        let after: Vec<u32> = list.iter().copied().filter(|u| !gone.contains(u)).collect();
        assert_eq!(client_applies(&list, &removed, &[]), after);
        // RFC 5267 §4.3.3: 2731:2733 into 2734:2735 at the front, one run.
        let new = BTreeSet::from([2731, 2732, 2733]);
        let added = addition_runs(&[2731, 2732, 2733, 2734, 2735], &new);
        assert_eq!(added, vec![(1, vec![2731, 2732, 2733])]);
        assert_eq!(
            client_applies(&[2734, 2735], &[], &added),
            vec![2731, 2732, 2733, 2734, 2735]
        );
        let target = [5, 7, 1, 6, 8, 2];
        let new = BTreeSet::from([5, 6, 2]);
        let added = addition_runs(&target, &new);
        assert_eq!(added, vec![(1, vec![5]), (4, vec![6]), (6, vec![2])]);
        assert_eq!(client_applies(&[7, 1, 8], &[], &added), target);
        assert!(removal_runs(&[1, 2], &BTreeSet::new()).is_empty());
    }

    #[test]
    fn random_edits_come_out_right_for_the_client() {
        // A small deterministic generator: no dependency for one test.
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..500 {
            let len = next(12) as usize;
            let mut pool: Vec<u32> = (1..=20).collect();
            let mut old = Vec::new();
            for _ in 0..len {
                old.push(pool.remove(next(pool.len() as u64) as usize));
            }
            let gone: BTreeSet<u32> = old.iter().copied().filter(|_| next(3) == 0).collect();
            let mut kept: Vec<u32> = old.iter().copied().filter(|u| !gone.contains(u)).collect();
            let mut new = BTreeSet::new();
            for _ in 0..next(5) {
                let uid = pool.remove(next(pool.len() as u64) as usize);
                kept.insert(next(kept.len() as u64 + 1) as usize, uid);
                new.insert(uid);
            }
            let removed = removal_runs(&old, &gone);
            let added = addition_runs(&kept, &new);
            assert_eq!(client_applies(&old, &removed, &added), kept);
        }
    }

    fn change(flags: &[&str], modseq: u64) -> Change {
        Change {
            flags: flags.iter().map(|f| f.to_string()).collect(),
            modseq,
            recent: false,
        }
    }

    #[test]
    fn a_change_decides_what_it_can() {
        use SearchKey::*;
        let c = change(&["\\Seen"], 9);
        let facts = Facts {
            uid: 7,
            seq: 3,
            max_seq: 5,
            max_uid: 9,
            change: &c,
        };
        let from = || From("x".into());
        assert_eq!(decide(&Seen, &facts), Some(true));
        assert_eq!(decide(&And(vec![Unseen, from()]), &facts), Some(false));
        assert_eq!(decide(&And(vec![Seen, from()]), &facts), None);
        assert_eq!(
            decide(&Or(Box::new(Seen), Box::new(from())), &facts),
            Some(true)
        );
        assert_eq!(
            decide(&Or(Box::new(Unseen), Box::new(from())), &facts),
            None
        );
        assert_eq!(decide(&Not(Box::new(Larger(3))), &facts), None);
        assert_eq!(decide(&ModSeq(10), &facts), Some(false));
        let star = SequenceSet(crate::command::SequenceSet(vec![SeqRange {
            start: SeqBound::Value(3),
            end: SeqBound::Star,
        }]));
        assert_eq!(decide(&star, &facts), Some(true));
        assert!(positional(&star));
        assert!(!positional(&Uid(crate::command::SequenceSet(vec![
            SeqRange {
                start: SeqBound::Value(3),
                end: SeqBound::Value(4),
            }
        ]))));
        assert!(flag_bound(&And(vec![
            from(),
            Not(Box::new(Keyword("$J".into())))
        ])));
        assert!(!flag_bound(&And(vec![from(), All, Recent])));
        assert!(clock_bound(&Or(Box::new(Seen), Box::new(Older(60)))));
        assert_eq!(refusal(&Seen, MAX_LIVE_RESULTS - 1), None);
        assert!(refusal(&Seen, MAX_LIVE_RESULTS).is_some());
        assert!(refusal(&Younger(5), 0).is_some());
    }

    fn view(uids: &[u32]) -> View {
        View::new(Arc::new(uids.to_vec()), vec![])
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn a_search_result_follows_flags_appends_and_expunges() {
        let mut view = view(&[1, 2, 3, 4]);
        let mut contexts = Contexts::default();
        contexts.open(LiveResult::new(
            "A".into(),
            false,
            SearchKey::Unseen,
            vec![2, 4],
            None,
        ));
        let folder = FolderId(1);
        view.queue(FolderEvent::FlagsChanged {
            folder,
            uid: 2,
            flags: vec!["\\Seen".into()],
            modseq: 5,
        });
        view.queue(FolderEvent::Appended {
            folder,
            uid: 6,
            flags: vec![],
            modseq: 6,
            recent: false,
        });
        view.queue(FolderEvent::Expunged {
            folder,
            uids: vec![4],
            modseq: 7,
        });
        let mut out = Vec::new();
        let expunged: Vec<u32> = view.pending_expunges().collect();
        contexts.expunging(&mut out, &view, &expunged);
        let announced = view.announce(&mut out, true, true, AnnounceStyle::default());
        contexts.announced(&mut out, &view, &announced);
        // REMOVEFROM before the EXPUNGE, with the number it had; ADDTO after EXISTS.
        assert_eq!(
            text(&out),
            "* ESEARCH (TAG \"A\") REMOVEFROM (0 4)\r\n\
             * 4 EXPUNGE\r\n\
             * 4 EXISTS\r\n\
             * 2 FETCH (UID 2 FLAGS (\\Seen))\r\n\
             * ESEARCH (TAG \"A\") REMOVEFROM (0 2) ADDTO (0 4)\r\n"
        );
        assert_eq!(contexts.live[0].members, vec![6]);
        assert!(contexts.next_read(&view, |_| 10).is_none());
    }

    fn sort_input(uid: u32, size: u64) -> SortInput {
        SortInput {
            uid,
            seq: uid,
            size,
            ..SortInput::default()
        }
    }

    #[test]
    fn a_sort_result_reads_new_members_and_places_them() {
        let mut view = view(&[1, 2, 3]);
        let criteria = vec![SortCriterion {
            reverse: true,
            key: SortKey::Size,
        }];
        let mut contexts = Contexts::default();
        // SIZE descending: 3 (300), 1 (100); 2 is \Seen.
        contexts.open(LiveResult::new(
            "S".into(),
            true,
            SearchKey::Unseen,
            vec![3, 1],
            Some((criteria, vec![sort_input(3, 300), sort_input(1, 100)])),
        ));
        view.queue(FolderEvent::Appended {
            folder: FolderId(1),
            uid: 4,
            flags: vec![],
            modseq: 6,
            recent: false,
        });
        let mut out = Vec::new();
        let announced = view.announce(&mut out, true, true, AnnounceStyle::default());
        contexts.announced(&mut out, &view, &announced);
        assert_eq!(text(&out), "* 4 EXISTS\r\n");
        // UNSEEN says it joins; where, only its size tells.
        let read = contexts.next_read(&view, |_| 10).expect("a read");
        assert_eq!(read.tag, "S");
        assert_eq!(read.targets.iter().map(|t| t.uid).collect::<Vec<_>>(), [4]);
        assert_eq!(read.detail, Detail::Meta);
        assert!(contexts.next_read(&view, |_| 10).is_none(), "one at a time");
        let mut out = Vec::new();
        contexts.read(
            &mut out,
            &view,
            "S",
            &read.targets,
            1,
            vec![(4, Some(sort_input(4, 200)))],
        );
        assert_eq!(text(&out), "* ESEARCH (TAG \"S\") UID ADDTO (2 4)\r\n");
        assert_eq!(contexts.live[0].members, vec![3, 4, 1]);
        // Expunged from the middle: its position.
        let mut out = Vec::new();
        contexts.expunging(&mut out, &view, &[4]);
        assert_eq!(text(&out), "* ESEARCH (TAG \"S\") UID REMOVEFROM (2 4)\r\n");
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_read_again_and_cancel_is_all_or_none() {
        let mut view = view(&[1, 2]);
        let mut contexts = Contexts::default();
        let key = SearchKey::And(vec![SearchKey::Unseen, SearchKey::Larger(10)]);
        contexts.open(LiveResult::new("T".into(), true, key, vec![], None));
        let folder = FolderId(1);
        view.queue(FolderEvent::FlagsChanged {
            folder,
            uid: 1,
            flags: vec![],
            modseq: 4,
        });
        let mut out = Vec::new();
        let announced = view.announce(&mut out, true, true, AnnounceStyle::default());
        contexts.announced(&mut out, &view, &announced);
        let read = contexts.next_read(&view, |_| 10).expect("a read");
        // Flagged \Seen while the host read it: the read's "matches" is stale, and the
        // change itself decides.
        view.queue(FolderEvent::FlagsChanged {
            folder,
            uid: 1,
            flags: vec!["\\Seen".into()],
            modseq: 5,
        });
        let announced = view.announce(&mut out, true, true, AnnounceStyle::default());
        contexts.announced(&mut out, &view, &announced);
        contexts.read(&mut out, &view, "T", &read.targets, 1, vec![(1, None)]);
        assert!(!text(&out).contains("ESEARCH"), "{}", text(&out));
        assert!(contexts.live[0].members.is_empty());
        let tags = vec!["T".to_string(), "U".to_string()];
        assert_eq!(contexts.cancel(&tags), Err("U"));
        assert_eq!(contexts.len(), 1);
        assert_eq!(contexts.cancel(&tags[..1]), Ok(()));
        assert!(contexts.is_empty());
    }
}
