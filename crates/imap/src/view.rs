//! The selected folder as one session sees it: message sequence numbers ↔ UIDs, and the
//! changes others made that the client has not been told about yet.
//!
//! Sequence numbers may only change when the session tells the client (RFC 9051
//! §7.5.1), so changes are queued here and announced at the points the protocol allows:
//! EXISTS and FETCH FLAGS after any command, EXPUNGE not during or right after FETCH,
//! STORE or SEARCH by sequence number.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::command::{SeqBound, SequenceSet};
use crate::request::FolderEvent;
use crate::response::Data;
use crate::scan::ScanTarget;

#[derive(Debug, Default)]
pub struct View {
    /// Shared with the folder's other sessions until this view changes (a SELECT of a
    /// big folder copies nothing).
    uids: Arc<Vec<u32>>,
    recent: BTreeSet<u32>,
    pending_appends: BTreeMap<u32, Change>,
    pending_expunges: BTreeSet<u32>,
    pending_flags: BTreeMap<u32, (Vec<String>, u64)>,
    /// The newest MODSEQ the client was shown for a message changed since SELECT (a
    /// change the folder makes is newer than `base`): a change that arrives late, older
    /// than what the client saw, is never announced (RFC 7162 §3: a message's MODSEQ
    /// never goes back).
    shown: HashMap<u32, u64>,
    /// HIGHESTMODSEQ at SELECT.
    base: u64,
    /// The newest MODSEQ of the folder this session knows of.
    highest: u64,
}

/// A message's flags as a change left them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub flags: Vec<String>,
    pub modseq: u64,
    /// \Recent for this session.
    pub recent: bool,
}

/// What [`View::announce`] told the client, for the live search contexts (RFC 5267)
/// that follow the view: the messages the EXISTS added and the messages whose new
/// flags a FETCH showed, by UID, ascending.
#[derive(Debug, Default)]
pub struct Announced {
    pub appended: Vec<(u32, Change)>,
    pub flags: Vec<(u32, Change)>,
}

/// How a session wants changes announced.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnnounceStyle {
    /// IMAP4rev1 sessions are told about \Recent.
    pub recent: bool,
    /// CONDSTORE sessions get MODSEQ in unsolicited FETCH.
    pub modseq: bool,
    /// QRESYNC sessions get VANISHED instead of EXPUNGE (RFC 7162 §3.2.10).
    pub vanished: bool,
}

impl View {
    pub fn new(uids: Arc<Vec<u32>>, recent: Vec<u32>) -> View {
        View {
            uids,
            recent: recent.into_iter().collect(),
            ..View::default()
        }
    }

    /// The view of a folder whose HIGHESTMODSEQ was `base` at SELECT.
    pub fn since(mut self, base: u64) -> View {
        self.base = base;
        self.highest = base;
        self
    }

    /// The folder's HIGHESTMODSEQ as far as this session knows.
    pub fn highest_modseq(&self) -> u64 {
        self.highest
    }

    /// The client was shown `uid` at `modseq` (a FETCH or STORE response): a change
    /// not newer is dropped.
    pub fn shown(&mut self, uid: u32, modseq: u64) {
        self.highest = self.highest.max(modseq);
        if modseq <= self.base {
            return;
        }
        let newest = self.shown.entry(uid).or_insert(0);
        *newest = (*newest).max(modseq);
        if self
            .pending_flags
            .get(&uid)
            .is_some_and(|(_, pending)| *pending <= modseq)
        {
            self.pending_flags.remove(&uid);
        }
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn recent_count(&self) -> u32 {
        self.recent.len() as u32
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Message `uid` as a scan names it; `None` when it is not in the view.
    pub fn target(&self, uid: u32) -> Option<ScanTarget> {
        Some(ScanTarget {
            seq: self.seq_of(uid)?,
            uid,
            recent: self.is_recent(uid),
        })
    }

    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    pub fn max_uid(&self) -> Option<u32> {
        self.uids.last().copied()
    }

    /// Messages named by sequence numbers, ascending. Numbers beyond EXISTS are an error
    /// (RFC 9051 §9 `seq-number`), except that `*` on an empty folder names nothing.
    pub fn resolve_seqs(&self, set: &SequenceSet) -> Result<Vec<(u32, u32)>, &'static str> {
        let exists = self.exists();
        let mut seqs = BTreeSet::new();
        for range in &set.0 {
            let value = |bound: SeqBound| match bound {
                SeqBound::Value(v) => v,
                SeqBound::Star => exists,
            };
            if exists == 0 && (range.start == SeqBound::Star || range.end == SeqBound::Star) {
                // `1:*` on an empty folder names nothing; clients send it routinely.
                continue;
            }
            let (a, b) = (value(range.start), value(range.end));
            let (low, high) = (a.min(b), a.max(b));
            if high > exists {
                return Err("Invalid message sequence number");
            }
            if low == 0 {
                continue;
            }
            seqs.extend(low..=high);
        }
        Ok(seqs
            .into_iter()
            .filter_map(|seq| self.uid_of(seq).map(|uid| (seq, uid)))
            .collect())
    }

    /// Messages named by UIDs; UIDs not in the folder are skipped (RFC 9051 §6.4.9).
    /// `*` is the highest UID in use, so `n:*` always includes the last message.
    pub fn resolve_uids(&self, set: &SequenceSet) -> Vec<(u32, u32)> {
        let Some(max) = self.max_uid() else {
            return Vec::new();
        };
        let mut out = BTreeSet::new();
        for range in &set.0 {
            let value = |bound: SeqBound| match bound {
                SeqBound::Value(v) => v,
                SeqBound::Star => max,
            };
            let (a, b) = (value(range.start), value(range.end));
            let (low, high) = (a.min(b), a.max(b));
            let start = self.uids.partition_point(|&uid| uid < low);
            for (i, &uid) in self.uids[start..].iter().enumerate() {
                if uid > high {
                    break;
                }
                out.insert((start + i + 1) as u32);
            }
        }
        out.into_iter()
            .filter_map(|seq| self.uid_of(seq).map(|uid| (seq, uid)))
            .collect()
    }

    /// Queues a change for announcement.
    pub fn queue(&mut self, event: FolderEvent) {
        let modseq = match &event {
            FolderEvent::Appended { modseq, .. }
            | FolderEvent::FlagsChanged { modseq, .. }
            | FolderEvent::Expunged { modseq, .. } => *modseq,
        };
        self.highest = self.highest.max(modseq);
        match event {
            FolderEvent::Appended {
                uid,
                recent,
                flags,
                modseq,
                ..
            } => {
                if self.max_uid().is_none_or(|max| uid > max) {
                    self.pending_appends.insert(
                        uid,
                        Change {
                            flags,
                            modseq,
                            recent,
                        },
                    );
                }
            }
            FolderEvent::FlagsChanged {
                uid, flags, modseq, ..
            } => {
                let stale = self.shown.get(&uid).is_some_and(|&shown| shown >= modseq)
                    || self
                        .pending_flags
                        .get(&uid)
                        .is_some_and(|(_, pending)| *pending >= modseq);
                if !stale {
                    self.pending_flags.insert(uid, (flags, modseq));
                }
            }
            FolderEvent::Expunged { uids, .. } => {
                for uid in uids {
                    if self.pending_appends.remove(&uid).is_none() {
                        self.pending_expunges.insert(uid);
                    }
                    self.pending_flags.remove(&uid);
                    self.shown.remove(&uid);
                }
            }
        }
    }

    /// The flags of the flag changes waiting to be announced.
    pub fn pending_flags(&self) -> impl Iterator<Item = &str> {
        self.pending_flags
            .values()
            .flat_map(|(flags, _)| flags.iter().map(String::as_str))
    }

    /// The expunges waiting to be announced, ascending.
    pub fn pending_expunges(&self) -> impl Iterator<Item = u32> + '_ {
        self.pending_expunges.iter().copied()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending_appends.is_empty()
            || !self.pending_expunges.is_empty()
            || !self.pending_flags.is_empty()
    }

    /// Removes messages this session expunged itself and writes their EXPUNGE lines.
    /// Those the client was never told about (appended by another session, still
    /// queued) are dropped silently: announcing them later would show a ghost.
    /// QRESYNC sessions (`vanished`) get one `* VANISHED` line instead.
    pub fn expunge_now(&mut self, out: &mut Vec<u8>, uids: &[u32], vanished: bool) {
        for uid in uids {
            self.pending_appends.remove(uid);
        }
        let mut seqs: Vec<u32> = uids.iter().filter_map(|&uid| self.seq_of(uid)).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        let mut gone = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            let uid = self.uids[seq as usize - 1];
            self.recent.remove(&uid);
            self.pending_flags.remove(&uid);
            self.pending_expunges.remove(&uid);
            if vanished {
                gone.push(uid);
            } else {
                Data::Expunge(seq).encode(out, false);
            }
        }
        // One pass over the view, however many went: EXPUNGE of half a 100,000-message
        // folder must not shift the rest once per message.
        if !seqs.is_empty() {
            let mut index = 0;
            let mut doomed = seqs.iter().rev().peekable();
            Arc::make_mut(&mut self.uids).retain(|_| {
                index += 1;
                let drop = doomed.next_if(|&&seq| seq as usize == index).is_some();
                !drop
            });
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            let data = Data::Vanished {
                earlier: false,
                uids: &gone,
            };
            data.encode(out, false);
        }
    }

    /// Writes the queued changes: expunges only if `allow_expunge`, other sessions' flag
    /// changes only if `flags` (else they stay queued). Says what it wrote.
    pub fn announce(
        &mut self,
        out: &mut Vec<u8>,
        allow_expunge: bool,
        flags: bool,
        style: AnnounceStyle,
    ) -> Announced {
        let mut announced = Announced::default();
        if allow_expunge && !self.pending_expunges.is_empty() {
            let uids: Vec<u32> = std::mem::take(&mut self.pending_expunges)
                .into_iter()
                .collect();
            self.expunge_now(out, &uids, style.vanished);
        }
        if !self.pending_appends.is_empty() {
            for (uid, change) in std::mem::take(&mut self.pending_appends) {
                Arc::make_mut(&mut self.uids).push(uid);
                if change.recent {
                    self.recent.insert(uid);
                }
                announced.appended.push((uid, change));
            }
            Data::Exists(self.exists()).encode(out, false);
            if style.recent {
                Data::Recent(self.recent_count()).encode(out, false);
            }
        }
        if !flags {
            return announced;
        }
        for (uid, (flags, modseq)) in std::mem::take(&mut self.pending_flags) {
            let Some(seq) = self.seq_of(uid) else {
                continue;
            };
            self.shown.insert(uid, modseq);
            let mut shown = flags.clone();
            if style.recent && self.recent.contains(&uid) {
                shown.push("\\Recent".to_string());
            }
            let data = Data::FlagFetch {
                seq,
                uid: Some(uid),
                flags: Some(&shown),
                modseq: style.modseq.then_some(modseq),
            };
            data.encode(out, false);
            let recent = self.recent.contains(&uid);
            announced.flags.push((
                uid,
                Change {
                    flags,
                    modseq,
                    recent,
                },
            ));
        }
        announced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::SeqRange;
    use crate::request::FolderId;

    fn set(ranges: &[(SeqBound, SeqBound)]) -> SequenceSet {
        SequenceSet(
            ranges
                .iter()
                .map(|&(start, end)| SeqRange { start, end })
                .collect(),
        )
    }
    use SeqBound::{Star, Value};

    #[test]
    fn uid_ranges_skip_missing_and_star_is_the_last_message() {
        let view = View::new(Arc::new(vec![3, 5, 9]), vec![]);
        assert_eq!(
            view.resolve_uids(&set(&[(Value(4), Star)])),
            vec![(2, 5), (3, 9)]
        );
        // n:* with n above the highest UID still names the last message (RFC 9051 §6.4.9).
        assert_eq!(view.resolve_uids(&set(&[(Value(100), Star)])), vec![(3, 9)]);
        assert_eq!(view.resolve_uids(&set(&[(Value(6), Value(8))])), vec![]);
        assert_eq!(
            view.resolve_seqs(&set(&[(Value(2), Star)])).unwrap(),
            vec![(2, 5), (3, 9)]
        );
        assert!(view.resolve_seqs(&set(&[(Value(4), Value(4))])).is_err());
        let empty = View::new(Arc::new(vec![]), vec![]);
        assert_eq!(
            empty.resolve_seqs(&set(&[(Value(1), Star)])).unwrap(),
            vec![]
        );
        assert!(empty.resolve_seqs(&set(&[(Value(1), Value(1))])).is_err());
    }

    #[test]
    fn changes_are_announced_in_order_and_expunges_only_when_allowed() {
        let mut view = View::new(Arc::new(vec![1, 2, 3]), vec![]);
        let folder = FolderId(1);
        view.queue(FolderEvent::Expunged {
            folder,
            uids: vec![2],
            modseq: 5,
        });
        view.queue(FolderEvent::Appended {
            folder,
            uid: 4,
            flags: vec![],
            modseq: 6,
            recent: true,
        });
        view.queue(FolderEvent::FlagsChanged {
            folder,
            uid: 3,
            flags: vec!["\\Seen".into()],
            modseq: 7,
        });
        let mut out = Vec::new();
        view.announce(
            &mut out,
            false,
            true,
            AnnounceStyle {
                recent: true,
                modseq: false,
                vanished: false,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 4 EXISTS\r\n* 1 RECENT\r\n* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n"
        );
        let mut out = Vec::new();
        view.announce(&mut out, true, true, AnnounceStyle::default());
        assert_eq!(String::from_utf8(out).unwrap(), "* 2 EXPUNGE\r\n");
        assert_eq!(view.uids(), &[1, 3, 4]);
    }

    #[test]
    fn an_own_expunge_of_an_unannounced_append_never_shows_it() {
        // Another session appended UID 4 (with \Deleted); this session's EXPUNGE removed
        // it before any EXISTS told the client about it.
        let mut view = View::new(Arc::new(vec![1, 2, 3]), vec![]);
        view.queue(FolderEvent::Appended {
            folder: FolderId(1),
            uid: 4,
            flags: vec!["\\Deleted".into()],
            modseq: 6,
            recent: false,
        });
        let mut out = Vec::new();
        view.expunge_now(&mut out, &[2, 4], false);
        view.announce(&mut out, true, true, AnnounceStyle::default());
        assert_eq!(String::from_utf8(out).unwrap(), "* 2 EXPUNGE\r\n");
        assert_eq!(view.uids(), &[1, 3]);
        assert!(!view.has_pending());
    }

    #[test]
    fn a_change_older_than_what_the_client_saw_is_never_announced() {
        let folder = FolderId(1);
        let flags = |uid: u32, flag: &str, modseq: u64| FolderEvent::FlagsChanged {
            folder,
            uid,
            flags: vec![flag.into()],
            modseq,
        };
        let style = AnnounceStyle {
            modseq: true,
            ..AnnounceStyle::default()
        };
        let mut view = View::new(Arc::new(vec![1, 2]), vec![]).since(10);
        // Events from two changes arrive in the wrong order: the newer one wins.
        view.queue(flags(1, "\\Seen", 12));
        view.queue(flags(1, "\\Flagged", 11));
        let mut out = Vec::new();
        view.announce(&mut out, true, true, style);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (12))\r\n"
        );
        // Once announced, an older change that arrives late stays unsaid.
        view.queue(flags(1, "\\Draft", 11));
        // A FETCH showed message 2 at 15; the event for 14 comes after it.
        view.queue(flags(2, "\\Answered", 14));
        view.shown(2, 15);
        view.queue(flags(2, "\\Deleted", 13));
        let mut out = Vec::new();
        view.announce(&mut out, true, true, style);
        assert_eq!(String::from_utf8(out).unwrap(), "");
        // Newer changes still come through.
        view.queue(flags(2, "\\Seen", 16));
        let mut out = Vec::new();
        view.announce(&mut out, true, true, style);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (16))\r\n"
        );
    }
}
