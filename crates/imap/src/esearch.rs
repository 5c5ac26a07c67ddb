//! The ESEARCH response (RFC 4731) that answers `SEARCH RETURN (…)` and ESORT's
//! `SORT RETURN (…)` (RFC 5267 §3), with PARTIAL windows (RFC 9394), and which
//! results each return option hands back: the response shows them, its MODSEQ is the
//! highest of theirs (RFC 7162 §3.1.5) and SAVE keeps them for `$` (RFC 5182 §2.4,
//! RFC 9394 §3.3). One module serves both commands, so SEARCH's and SORT's answers
//! cannot drift apart; only the order of the results differs (ascending for SEARCH,
//! sort order for SORT), and MIN and MAX are the first and last in that order.

use std::collections::BTreeSet;

use crate::command::SearchReturn;
use crate::response::{Data, ESearchItem};

/// Which of `len` results the return options hand back to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    Every,
    /// Positions in the results, ascending.
    Some(Vec<usize>),
}

/// Whether a return option only says how the search is kept (RFC 5267 §4.2-4.3), not
/// what it returns.
fn modifier(option: &SearchReturn) -> bool {
    matches!(option, SearchReturn::Update | SearchReturn::Context)
}

/// `returns` with an empty list read as ALL (RFC 4731 §3.1), and so a list of only
/// UPDATE and CONTEXT, which name no result: a live result starts from all of it.
fn options(returns: &[SearchReturn]) -> &[SearchReturn] {
    const ALL: &[SearchReturn] = &[SearchReturn::All];
    if returns.iter().all(modifier) {
        ALL
    } else {
        returns
    }
}

/// SAVE with no result option (UPDATE and CONTEXT are none) answers nothing but OK
/// (RFC 5182 §2.4).
pub fn answers_nothing(returns: &[SearchReturn]) -> bool {
    returns.contains(&SearchReturn::Save)
        && returns
            .iter()
            .all(|r| *r == SearchReturn::Save || modifier(r))
}

/// The results MIN, MAX and PARTIAL return: positions among `len`.
fn picked(returns: &[SearchReturn], len: usize) -> Vec<usize> {
    let mut positions = BTreeSet::new();
    if len == 0 {
        return Vec::new();
    }
    for option in returns {
        match option {
            SearchReturn::Min => {
                positions.insert(0);
            }
            SearchReturn::Max => {
                positions.insert(len - 1);
            }
            SearchReturn::Partial(range) => positions.extend(range.window(len)),
            SearchReturn::All
            | SearchReturn::Count
            | SearchReturn::Save
            | SearchReturn::Update
            | SearchReturn::Context => {}
        }
    }
    positions.into_iter().collect()
}

/// The results whose highest MODSEQ the response carries: every match with ALL or
/// COUNT, else those MIN, MAX and PARTIAL return.
pub fn for_modseq(returns: &[SearchReturn], len: usize) -> Returned {
    let returns = options(returns);
    if returns
        .iter()
        .any(|r| matches!(r, SearchReturn::All | SearchReturn::Count))
    {
        Returned::Every
    } else {
        Returned::Some(picked(returns, len))
    }
}

/// The MODSEQ an ESEARCH carries (RFC 7162 §3.1.5): the highest of the results
/// [`for_modseq`] names, `modseqs` being each result's in the results' order, `max`
/// the highest of all (0 when the criteria name no MODSEQ: none is sent).
pub fn returned_modseq(returns: &[SearchReturn], modseqs: &[u64], max: u64) -> Option<u64> {
    (max > 0).then(|| match for_modseq(returns, modseqs.len()) {
        _ if modseqs.is_empty() => max,
        Returned::Every => max,
        some => some.pick(modseqs).into_iter().max().unwrap_or(0),
    })
}

/// The results SAVE keeps: with PARTIAL, the messages returned (RFC 9394 §3.3: a
/// client pages with `RETURN (PARTIAL … SAVE)` and then `FETCH $`); with only MIN
/// and/or MAX, those (RFC 5182 §2.4); else every match.
pub fn for_save(returns: &[SearchReturn], len: usize) -> Returned {
    let partial = returns
        .iter()
        .any(|r| matches!(r, SearchReturn::Partial(_)));
    let every = returns
        .iter()
        .any(|r| matches!(r, SearchReturn::All | SearchReturn::Count));
    let ends = returns
        .iter()
        .any(|r| matches!(r, SearchReturn::Min | SearchReturn::Max));
    if partial || (ends && !every) {
        Returned::Some(picked(returns, len))
    } else {
        Returned::Every
    }
}

impl Returned {
    /// The values at the returned positions of `values`.
    pub fn pick<T: Copy>(&self, values: &[T]) -> Vec<T> {
        match self {
            Returned::Every => values.to_vec(),
            Returned::Some(positions) => positions
                .iter()
                .filter_map(|&i| values.get(i).copied())
                .collect(),
        }
    }
}

/// `* ESEARCH (TAG "…") [UID] …` over `numbers` (sequence numbers or UIDs) in the
/// results' order, the items in the order the client asked for them. ALL keeps that
/// order, with ranges only where numbers ascend (RFC 5267 §3.2); PARTIAL echoes the
/// range as asked and says `NIL` for an empty window (RFC 9394 §3.1). No results:
/// only COUNT and PARTIAL appear (RFC 4731 §3.1), and no MODSEQ. SAVE adds nothing.
pub fn response(
    tag: &str,
    uid: bool,
    numbers: &[u32],
    returns: &[SearchReturn],
    modseq: Option<u64>,
) -> Vec<u8> {
    let mut items = Vec::new();
    for option in options(returns) {
        match option {
            SearchReturn::Min => items.extend(numbers.first().map(|&n| ESearchItem::Min(n))),
            SearchReturn::Max => items.extend(numbers.last().map(|&n| ESearchItem::Max(n))),
            SearchReturn::All if !numbers.is_empty() => items.push(ESearchItem::All(numbers)),
            SearchReturn::Count => items.push(ESearchItem::Count(numbers.len())),
            SearchReturn::Partial(range) => {
                let window = numbers.get(range.window(numbers.len())).unwrap_or_default();
                items.push(ESearchItem::Partial(*range, window));
            }
            SearchReturn::All
            | SearchReturn::Save
            | SearchReturn::Update
            | SearchReturn::Context => {}
        }
    }
    if let Some(modseq) = modseq
        && modseq > 0
        && !numbers.is_empty()
    {
        items.push(ESearchItem::ModSeq(modseq));
    }
    line(tag, uid, &items)
}

fn line(tag: &str, uid: bool, items: &[ESearchItem<'_>]) -> Vec<u8> {
    Data::ESearch { tag, uid, items }.to_bytes(false)
}

/// A run of a live result's changes (RFC 5267 §4.3.3-4.3.4): the context position
/// (1 is the first result; 0 for a SEARCH, whose results are in mailbox order) and the
/// numbers there, in the result's order.
pub type Run = (usize, Vec<u32>);

/// `* ESEARCH (TAG "…") [UID] REMOVEFROM (…) ADDTO (…)`: what changed in the live result
/// of the search tagged `tag`, removals first. The client applies the runs in the order
/// written, each at the position it names in the result as the runs before it left it.
/// Nothing when nothing changed.
pub fn update(tag: &str, uid: bool, removed: &[Run], added: &[Run]) -> Vec<u8> {
    if removed.is_empty() && added.is_empty() {
        return Vec::new();
    }
    let mut items = Vec::new();
    if !removed.is_empty() {
        items.push(ESearchItem::RemoveFrom(removed));
    }
    if !added.is_empty() {
        items.push(ESearchItem::AddTo(added));
    }
    line(tag, uid, &items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::PartialRange;

    #[test]
    fn esort_responses() {
        let numbers = [23765, 23764, 23763, 23761, 5, 6, 7];
        let esearch = |uid, returns: &[SearchReturn], numbers: &[u32]| {
            String::from_utf8(response("E01", uid, numbers, returns, None)).unwrap()
        };
        // RFC 5267 §3.3: no descending ranges.
        assert_eq!(
            esearch(true, &[], &numbers),
            "* ESEARCH (TAG \"E01\") UID ALL 23765,23764,23763,23761,5:7\r\n"
        );
        assert_eq!(
            esearch(
                false,
                &[
                    SearchReturn::Max,
                    SearchReturn::Min,
                    SearchReturn::Count,
                    SearchReturn::Save
                ],
                &numbers
            ),
            "* ESEARCH (TAG \"E01\") MAX 7 MIN 23765 COUNT 7\r\n"
        );
        assert_eq!(
            esearch(
                true,
                &[
                    SearchReturn::Partial(PartialRange::Last(1, 3)),
                    SearchReturn::Partial(PartialRange::First(3, 2)),
                ],
                &numbers
            ),
            "* ESEARCH (TAG \"E01\") UID PARTIAL (-1:-3 5:7) PARTIAL (3:2 23764,23763)\r\n"
        );
        assert_eq!(
            esearch(
                false,
                &[
                    SearchReturn::Min,
                    SearchReturn::Count,
                    SearchReturn::Partial(PartialRange::First(8, 100))
                ],
                &numbers
            ),
            "* ESEARCH (TAG \"E01\") MIN 23765 COUNT 7 PARTIAL (8:100 NIL)\r\n"
        );
        assert_eq!(
            esearch(false, &[SearchReturn::Min, SearchReturn::Count], &[]),
            "* ESEARCH (TAG \"E01\") COUNT 0\r\n"
        );
    }

    #[test]
    fn partial_windows() {
        let w = |r: PartialRange, len: usize| r.window(len);
        assert_eq!(w(PartialRange::First(1, 500), 23_764), 0..500);
        assert_eq!(
            w(PartialRange::First(24_000, 23_500), 23_764),
            23_499..23_764
        );
        assert_eq!(
            w(PartialRange::First(24_000, 24_500), 23_764),
            23_764..23_764
        );
        assert_eq!(w(PartialRange::Last(1, 100), 23_764), 23_664..23_764);
        assert_eq!(w(PartialRange::Last(100, 1), 50), 0..50);
        assert_eq!(w(PartialRange::Last(60, 70), 50), 0..0);
        assert_eq!(w(PartialRange::First(u32::MAX, u32::MAX), 3), 3..3);
        assert_eq!(w(PartialRange::First(0, 0), 3), 0..0);
    }

    #[test]
    fn what_modseq_and_save_cover() {
        use SearchReturn::*;
        let window = Partial(PartialRange::Last(1, 2));
        assert_eq!(for_modseq(&[], 5), Returned::Every);
        assert_eq!(for_modseq(&[Min, Count], 5), Returned::Every);
        assert_eq!(for_modseq(&[Max, Min], 5), Returned::Some(vec![0, 4]));
        assert_eq!(for_modseq(&[Min, window], 5), Returned::Some(vec![0, 3, 4]));
        assert_eq!(for_modseq(&[Min], 0), Returned::Some(vec![]));
        assert_eq!(for_save(&[Save], 5), Returned::Every);
        assert_eq!(for_save(&[Save, Count], 5), Returned::Every);
        assert_eq!(for_save(&[Save, Min, All], 5), Returned::Every);
        assert_eq!(for_save(&[Save, Max], 5), Returned::Some(vec![4]));
        assert_eq!(
            for_save(&[Save, Count, window], 5),
            Returned::Some(vec![3, 4])
        );
        assert_eq!(
            for_save(&[Save, Partial(PartialRange::First(9, 10))], 5).pick(&[1, 2, 3, 4, 5]),
            Vec::<u32>::new()
        );
        assert_eq!(
            Returned::Some(vec![1, 3]).pick(&[10, 20, 30, 40]),
            vec![20, 40]
        );
    }

    #[test]
    fn update_lines() {
        let line = |removed: &[Run], added: &[Run]| {
            String::from_utf8(update("B01", true, removed, added)).unwrap()
        };
        // RFC 5267 §4.3.3 and §4.3.4.
        assert_eq!(
            line(&[], &[(0, vec![32768, 32769])]),
            "* ESEARCH (TAG \"B01\") UID ADDTO (0 32768:32769)\r\n"
        );
        assert_eq!(
            line(&[(0, vec![32768])], &[]),
            "* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 32768)\r\n"
        );
        assert_eq!(
            line(&[(2, vec![9, 8]), (4, vec![3])], &[(1, vec![5, 6, 7])]),
            "* ESEARCH (TAG \"B01\") UID REMOVEFROM (2 9,8 4 3) ADDTO (1 5:7)\r\n"
        );
        assert_eq!(line(&[], &[]), "");
        assert_eq!(
            String::from_utf8(update("s", false, &[], &[(3, vec![4])])).unwrap(),
            "* ESEARCH (TAG \"s\") ADDTO (3 4)\r\n"
        );
    }

    #[test]
    fn update_alone_returns_all_and_save_with_it_nothing() {
        use SearchReturn::*;
        let line = |returns: &[SearchReturn]| {
            String::from_utf8(response("t", true, &[2, 3], returns, None)).unwrap()
        };
        assert_eq!(line(&[Update]), "* ESEARCH (TAG \"t\") UID ALL 2:3\r\n");
        assert_eq!(
            line(&[Context, Update]),
            "* ESEARCH (TAG \"t\") UID ALL 2:3\r\n"
        );
        assert_eq!(
            line(&[Update, Count]),
            "* ESEARCH (TAG \"t\") UID COUNT 2\r\n"
        );
        assert!(answers_nothing(&[Save, Update]));
        assert!(answers_nothing(&[Save]));
        assert!(!answers_nothing(&[Save, Min]));
        assert!(!answers_nothing(&[Update]));
    }

    #[test]
    fn modseq_only_with_results() {
        assert_eq!(
            response("t", true, &[4, 9], &[SearchReturn::Max], Some(12)),
            b"* ESEARCH (TAG \"t\") UID MAX 9 MODSEQ 12\r\n"
        );
        assert_eq!(
            response("t", false, &[], &[SearchReturn::Count], Some(12)),
            b"* ESEARCH (TAG \"t\") COUNT 0\r\n"
        );
        assert_eq!(
            response("t", false, &[3], &[SearchReturn::Count], Some(0)),
            b"* ESEARCH (TAG \"t\") COUNT 1\r\n"
        );
    }
}
