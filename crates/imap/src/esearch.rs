//! The ESEARCH response (RFC 4731) that answers `SEARCH RETURN (…)` and ESORT's
//! `SORT RETURN (…)` (RFC 5267 §3), with PARTIAL windows (RFC 9394), and which
//! results each return option hands back: the response shows them, its MODSEQ is the
//! highest of theirs (RFC 7162 §3.1.5) and SAVE keeps them for `$` (RFC 5182 §2.4,
//! RFC 9394 §3.3). One module serves both commands, so SEARCH's and SORT's answers
//! cannot drift apart; only the order of the results differs (ascending for SEARCH,
//! sort order for SORT), and MIN and MAX are the first and last in that order.

use std::collections::BTreeSet;

use crate::command::SearchReturn;
use crate::response;

/// Which of `len` results the return options hand back to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    Every,
    /// Positions in the results, ascending.
    Some(Vec<usize>),
}

/// `returns` with an empty list read as ALL (RFC 4731 §3.1).
fn options(returns: &[SearchReturn]) -> &[SearchReturn] {
    const ALL: &[SearchReturn] = &[SearchReturn::All];
    if returns.is_empty() { ALL } else { returns }
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
            SearchReturn::All | SearchReturn::Count | SearchReturn::Save => {}
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
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    for option in options(returns) {
        match option {
            SearchReturn::Min => {
                if let Some(first) = numbers.first() {
                    line.push_str(&format!(" MIN {first}"));
                }
            }
            SearchReturn::Max => {
                if let Some(last) = numbers.last() {
                    line.push_str(&format!(" MAX {last}"));
                }
            }
            SearchReturn::All => {
                if !numbers.is_empty() {
                    line.push_str(&format!(" ALL {}", response::sequence_set(numbers)));
                }
            }
            SearchReturn::Count => line.push_str(&format!(" COUNT {}", numbers.len())),
            SearchReturn::Partial(range) => {
                let window = numbers.get(range.window(numbers.len())).unwrap_or_default();
                let set = match window {
                    [] => "NIL".to_string(),
                    window => response::sequence_set(window),
                };
                line.push_str(&format!(" PARTIAL ({range} {set})"));
            }
            SearchReturn::Save => {}
        }
    }
    if let Some(modseq) = modseq
        && modseq > 0
        && !numbers.is_empty()
    {
        line.push_str(&format!(" MODSEQ {modseq}"));
    }
    line.push_str("\r\n");
    line.into_bytes()
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
