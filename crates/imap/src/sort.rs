//! SORT (RFC 5256 §3) with DISPLAYFROM and DISPLAYTO (RFC 5957): the order of the
//! messages a search found, and `* SORT`, the response that carries it (ESORT's
//! `* ESEARCH` is [`crate::esearch`]'s).
//!
//! Sorting needs only a few values of each message (its base subject, first addresses,
//! dates and size), so the host gathers a [`SortInput`] per matching message and this
//! module orders them without I/O. The base subject ([`base_subject`]) is shared with
//! [`crate::thread`]: RFC 5256 §2.1 wants every server and disconnected client to derive
//! subjects exactly alike.
//!
//! Strings compare by i;unicode-casemap (RFC 5051), as RFC 5256 §7 and I18NLEVEL=1
//! (RFC 5255 §4.3) ask: each value is prepared once ([`crate::casemap::fold`]) and the
//! prepared forms compare as octets.

use std::cmp::Ordering;

use portico_mime::{Address, Envelope};

use crate::command::{SortCriterion, SortKey};
use crate::request::{Detail, MessageData};
use crate::response::Data;

/// A subject reduced by RFC 5256 §2.1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseSubject {
    /// Encoded words decoded, white space collapsed, reply and forward marks removed.
    pub text: String,
    /// The reduction removed a `re:`/`fw:`/`fwd:` (subj-refwd), a `(fwd)` trailer or a
    /// `[fwd: …]` wrapper: REFERENCES threading treats the message as a reply or
    /// forward (RFC 5256 §3).
    pub reply_or_forward: bool,
}

/// The base subject of a raw (unfolded, undecoded) Subject value, by RFC 5256 §2.1's
/// steps: (1) decode encoded words and collapse white space; (2) strip trailing
/// `(fwd)` and white space; (3) strip a leading `re:`/`fw:`/`fwd:`, each optionally
/// after and containing `[blobs]`, or white space; (4) strip a leading `[blob]` when
/// something remains after it; (5) repeat 3 and 4; (6) unwrap `[fwd: …]` and start
/// again from 2.
pub fn base_subject(raw: &[u8]) -> BaseSubject {
    let decoded = portico_mime::decode_header_text(raw);
    let mut text = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && text.ends_with(' ') {
            continue;
        }
        text.push(c);
    }
    // After step 1 the only WSP left is SP.
    let mut s = text.as_str();
    let mut reply_or_forward = false;
    loop {
        loop {
            if let Some(rest) = s.strip_suffix(' ') {
                s = rest;
            } else if let Some(rest) = strip_suffix_ci(s, "(fwd)") {
                s = rest;
                reply_or_forward = true;
            } else {
                break;
            }
        }
        loop {
            let before = s.len();
            if let Some(rest) = s.strip_prefix(' ') {
                s = rest;
            } else if let Some(rest) = strip_leader(s) {
                s = rest;
                reply_or_forward = true;
            }
            if let Some(rest) = strip_blob(s)
                && !rest.is_empty()
            {
                s = rest;
            }
            if s.len() == before {
                break;
            }
        }
        match strip_prefix_ci(s, "[fwd:").and_then(|rest| rest.strip_suffix(']')) {
            Some(inner) => {
                s = inner;
                reply_or_forward = true;
            }
            None => break,
        }
    }
    BaseSubject {
        text: s.to_string(),
        reply_or_forward,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(prefix.len()..))
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    s.get(at..)
        .filter(|tail| tail.eq_ignore_ascii_case(suffix))
        .and_then(|_| s.get(..at))
}

/// subj-blob: `[` anything but brackets `]`, then white space.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    let rest = inner[end..].strip_prefix(']')?;
    Some(rest.trim_start_matches(' '))
}

/// `*subj-blob subj-refwd`, where subj-refwd is `("re" / "fw" ["d"]) *WSP [subj-blob]
/// ":"`. Blobs come before a `[`-less word, so taking them greedily loses nothing.
fn strip_leader(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(after) = strip_blob(rest) {
        rest = after;
    }
    let rest = strip_prefix_ci(rest, "re")
        .or_else(|| strip_prefix_ci(rest, "fwd"))
        .or_else(|| strip_prefix_ci(rest, "fw"))?;
    let rest = rest.trim_start_matches(' ');
    let rest = strip_blob(rest).unwrap_or(rest);
    rest.strip_prefix(':')
}

/// What SORT compares of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortInput {
    pub uid: u32,
    /// The message's sequence number: the order of last resort (RFC 5256 §3).
    pub seq: u32,
    /// INTERNALDATE in Unix seconds (ARRIVAL).
    pub arrival: i64,
    /// The Date header in Unix seconds, UTC (RFC 5256 §2.2); `None` when it is missing
    /// or cannot be parsed, and DATE then uses `arrival`.
    pub sent: Option<i64>,
    /// RFC822.SIZE (SIZE).
    pub size: u64,
    /// The base subject (SUBJECT).
    pub subject: String,
    /// The IMAP addr-mailbox (the local part) of the first From, To and Cc address
    /// (FROM, TO, CC); empty when there is none.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957 §3's display value of the first From and To address (DISPLAYFROM,
    /// DISPLAYTO): its decoded display name, else `mailbox@host`, else empty.
    pub display_from: String,
    pub display_to: String,
}

impl SortInput {
    /// A message's sort values from its ENVELOPE fields, as FETCH ENVELOPE would show
    /// them (RFC 5957 §4 defines DISPLAYFROM on exactly that).
    pub fn new(uid: u32, seq: u32, arrival: i64, size: u64, envelope: &Envelope) -> SortInput {
        SortInput {
            uid,
            seq,
            arrival,
            sent: envelope
                .date
                .as_deref()
                .and_then(portico_mime::parse_date)
                .map(|(timestamp, _)| timestamp),
            size,
            subject: envelope
                .subject
                .as_deref()
                .map(|s| base_subject(s).text)
                .unwrap_or_default(),
            from: first_mailbox(&envelope.from),
            to: first_mailbox(&envelope.to),
            cc: first_mailbox(&envelope.cc),
            display_from: display_value(&envelope.from),
            display_to: display_value(&envelope.to),
        }
    }

    /// The sort values of a scanned message (read with [`detail`]`(criteria)`). `None`
    /// when the criteria need its ENVELOPE and the host gave no MIME summary.
    pub fn from_message(
        seq: u32,
        message: &MessageData,
        criteria: &[SortCriterion],
    ) -> Option<SortInput> {
        let empty = Envelope::default();
        let envelope = match &message.summary {
            Some(summary) => summary.envelope_fields(),
            None if detail(criteria) == Detail::Meta => &empty,
            None => return None,
        };
        Some(SortInput::new(
            message.uid,
            seq,
            message.internal_date.timestamp,
            message.size,
            envelope,
        ))
    }

    /// The sent date DATE compares (RFC 5256 §2.2).
    pub fn sent_or_arrival(&self) -> i64 {
        self.sent.unwrap_or(self.arrival)
    }
}

fn lossy(bytes: &Option<Vec<u8>>) -> String {
    bytes
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn first_mailbox(addresses: &[Address]) -> String {
    addresses
        .first()
        .map(|a| lossy(&a.mailbox))
        .unwrap_or_default()
}

/// RFC 5957 §3-4 for the first address of a list.
fn display_value(addresses: &[Address]) -> String {
    let Some(first) = addresses.first() else {
        return String::new();
    };
    if let Some(name) = &first.name {
        let name = portico_mime::decode_header_text(name);
        if !name.is_empty() {
            return name;
        }
    }
    match (&first.mailbox, &first.host) {
        (Some(_), Some(_)) => format!("{}@{}", lossy(&first.mailbox), lossy(&first.host)),
        _ => lossy(&first.mailbox),
    }
}

/// How much of each message a sort by `criteria` reads: ARRIVAL and SIZE need only
/// the message's metadata, every other key its ENVELOPE.
pub fn detail(criteria: &[SortCriterion]) -> Detail {
    if criteria
        .iter()
        .all(|c| matches!(c.key, SortKey::Arrival | SortKey::Size))
    {
        Detail::Meta
    } else {
        Detail::Summary
    }
}

/// One message's value under one sort key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Time(i64),
    Size(u64),
    Text(String),
}

fn value(input: &SortInput, key: SortKey) -> Value {
    let text = |s: &str| Value::Text(crate::casemap::fold(s));
    match key {
        SortKey::Arrival => Value::Time(input.arrival),
        SortKey::Date => Value::Time(input.sent_or_arrival()),
        SortKey::Size => Value::Size(input.size),
        SortKey::Subject => text(&input.subject),
        SortKey::From => text(&input.from),
        SortKey::To => text(&input.to),
        SortKey::Cc => text(&input.cc),
        SortKey::DisplayFrom => text(&input.display_from),
        SortKey::DisplayTo => text(&input.display_to),
    }
}

/// The order of `inputs` under `criteria` (RFC 5256 §3), as indexes into `inputs`.
/// Each criterion is ascending unless reversed; messages equal under all of them keep
/// their mailbox order (by sequence number), which REVERSE never turns round. Empty
/// strings (absent headers) come first.
pub fn sort(inputs: &[SortInput], criteria: &[SortCriterion]) -> Vec<usize> {
    // Each value is worked out once, not at every comparison.
    let mut keyed: Vec<(Vec<Value>, u32, usize)> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let values = criteria.iter().map(|c| value(input, c.key)).collect();
            (values, input.seq, i)
        })
        .collect();
    keyed.sort_by(|(a, a_seq, _), (b, b_seq, _)| {
        compare(a, b, criteria).then_with(|| a_seq.cmp(b_seq))
    });
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

/// A message's values under one SORT's criteria, worked out once: what a live SORT
/// (RFC 5267 §4.3) keeps of each result to find where a new one goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortValues {
    uid: u32,
    values: Vec<Value>,
}

impl SortValues {
    pub fn new(input: &SortInput, criteria: &[SortCriterion]) -> SortValues {
        SortValues {
            uid: input.uid,
            values: criteria.iter().map(|c| value(input, c.key)).collect(),
        }
    }

    /// The order [`sort`] puts the two messages in. Within one view UIDs ascend with
    /// sequence numbers, so the UID breaks ties as the sequence number does.
    pub fn cmp(&self, other: &SortValues, criteria: &[SortCriterion]) -> Ordering {
        compare(&self.values, &other.values, criteria).then_with(|| self.uid.cmp(&other.uid))
    }
}

fn compare(a: &[Value], b: &[Value], criteria: &[SortCriterion]) -> Ordering {
    for ((x, y), criterion) in a.iter().zip(b).zip(criteria) {
        let order = x.cmp(y);
        let order = if criterion.reverse {
            order.reverse()
        } else {
            order
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// `* SORT 2 84 882` (RFC 5256 §4): sequence numbers or UIDs in sort order.
/// `modseq` (the highest of the matches, when the criteria name MODSEQ, else 0) follows
/// as `(MODSEQ n)` (RFC 7162 §3.1.5), only when there are numbers.
pub fn response(numbers: &[u32], modseq: u64) -> Vec<u8> {
    let data = Data::Search {
        sort: true,
        numbers,
        modseq: (modseq > 0 && !numbers.is_empty()).then_some(modseq),
    };
    data.to_bytes(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::DateTime;

    fn subject(raw: &str) -> (String, bool) {
        let b = base_subject(raw.as_bytes());
        (b.text, b.reply_or_forward)
    }

    fn s(text: &str, reply: bool) -> (String, bool) {
        (text.to_string(), reply)
    }

    #[test]
    fn base_subject_rfc5256_cases() {
        assert_eq!(subject("Re: [fwd: Re: test] (fwd)"), s("test", true));
        assert_eq!(subject("[PATCH] Re: x"), s("x", true));
        assert_eq!(subject("[PATCH] x"), s("x", false));
        assert_eq!(
            subject("Fwd: Re[2]: hello  \t world  (FWD) "),
            s("hello world", true)
        );
        assert_eq!(subject("re : x"), s("x", true));
        assert_eq!(subject("RE:Re:FW:  x"), s("x", true));
        assert_eq!(subject("Re [list] : x"), s("x", true));
        assert_eq!(subject("[fwd: x]"), s("x", true));
        assert_eq!(subject("[Fwd: [fwd: x]]"), s("x", true));
        // A blob that would leave nothing is the subject itself.
        assert_eq!(subject("[PATCH]"), s("[PATCH]", false));
        assert_eq!(subject("[a] [b]"), s("[b]", false));
        assert_eq!(subject("[a][b] c"), s("c", false));
        assert_eq!(subject("Re: [PATCH]"), s("[PATCH]", true));
        // Not marks: no colon, a word that only starts like one, a trailer not at the end.
        assert_eq!(subject("Re x"), s("Re x", false));
        assert_eq!(subject("Fwdx: y"), s("Fwdx: y", false));
        assert_eq!(subject("Report: done"), s("Report: done", false));
        assert_eq!(subject("(fwd) x"), s("(fwd) x", false));
        // Step 4, not step 6: a leading blob goes when text follows it.
        assert_eq!(subject("[fwd: x] y"), s("y", false));
        assert_eq!(subject("Re: (fwd)"), s("", true));
        assert_eq!(subject(""), s("", false));
        assert_eq!(subject("   "), s("", false));
        // Encoded words are decoded first, so marks inside them count.
        assert_eq!(subject("=?utf-8?q?Re=3A_caf=C3=A9?="), s("café", true));
        assert_eq!(
            subject("=?iso-8859-1?q?Gr=FC=DFe?= aus  =?utf-8?b?S8O2bG4=?="),
            s("Grüße aus Köln", false)
        );
    }

    fn input(seq: u32) -> SortInput {
        SortInput {
            uid: seq * 10,
            seq,
            arrival: 1_000 + i64::from(seq),
            ..SortInput::default()
        }
    }

    fn by(key: SortKey) -> SortCriterion {
        SortCriterion {
            reverse: false,
            key,
        }
    }

    fn reverse(key: SortKey) -> SortCriterion {
        SortCriterion { reverse: true, key }
    }

    /// The order as sequence numbers; the same whatever order the inputs come in, so
    /// the tie-break is tested and not the sort's stability.
    fn seqs(inputs: &[SortInput], criteria: &[SortCriterion]) -> Vec<u32> {
        let order = |inputs: &[SortInput]| -> Vec<u32> {
            sort(inputs, criteria)
                .into_iter()
                .map(|i| inputs[i].seq)
                .collect()
        };
        let reversed: Vec<SortInput> = inputs.iter().rev().cloned().collect();
        let seqs = order(inputs);
        assert_eq!(order(&reversed), seqs, "depends on input order");
        seqs
    }

    #[test]
    fn reverse_and_several_keys_with_sequence_ties() {
        let mut inputs: Vec<SortInput> = (1..=5).map(input).collect();
        for (input, (subject, size)) in
            inputs
                .iter_mut()
                .zip([("b", 30), ("a", 10), ("B", 10), ("a", 20), ("b", 30)])
        {
            input.subject = subject.to_string();
            input.size = size;
        }
        assert_eq!(seqs(&inputs, &[by(SortKey::Size)]), vec![2, 3, 4, 1, 5]);
        // REVERSE turns the key round, not the sequence-number tie-break.
        assert_eq!(
            seqs(&inputs, &[reverse(SortKey::Size)]),
            vec![1, 5, 4, 2, 3]
        );
        assert_eq!(
            seqs(&inputs, &[by(SortKey::Subject), reverse(SortKey::Size)]),
            vec![4, 2, 1, 5, 3]
        );
        assert_eq!(
            seqs(&inputs, &[reverse(SortKey::Subject), by(SortKey::Size)]),
            vec![3, 1, 5, 2, 4]
        );
        assert_eq!(
            seqs(&inputs, &[reverse(SortKey::Arrival)]),
            vec![5, 4, 3, 2, 1]
        );
        assert_eq!(seqs(&inputs, &[]), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn date_falls_back_to_arrival_and_empty_strings_come_first() {
        let mut inputs: Vec<SortInput> = (1..=4).map(input).collect();
        inputs[0].sent = Some(5_000);
        inputs[1].sent = None; // arrival 1002
        inputs[2].sent = Some(900);
        inputs[3].sent = Some(1_002); // equal to 2's arrival: sequence order decides
        assert_eq!(seqs(&inputs, &[by(SortKey::Date)]), vec![3, 2, 4, 1]);
        inputs[0].cc = "zed".into();
        inputs[2].cc = "Adam".into();
        assert_eq!(seqs(&inputs, &[by(SortKey::Cc)]), vec![2, 4, 3, 1]);
        assert_eq!(seqs(&inputs, &[reverse(SortKey::Cc)]), vec![1, 3, 2, 4]);
    }

    fn address(name: Option<&str>, mailbox: Option<&str>, host: Option<&str>) -> Address {
        let bytes = |s: Option<&str>| s.map(|s| s.as_bytes().to_vec());
        Address {
            name: bytes(name),
            adl: None,
            mailbox: bytes(mailbox),
            host: bytes(host),
        }
    }

    #[test]
    fn displayfrom_orders_by_display_name_rfc5957() {
        let froms = [
            vec![address(Some("Zoe Adams"), Some("aaa"), Some("x.org"))],
            vec![address(None, Some("bob"), Some("b.org"))],
            vec![],
            vec![address(
                Some("=?utf-8?q?Dan_Karp?="),
                Some("dkarp"),
                Some("zimbra.com"),
            )],
            vec![address(Some(""), Some("Carol"), Some("c.org"))],
            // A group's start: its name is the addr-mailbox, its host NIL.
            vec![
                address(None, Some("Team"), None),
                address(None, Some("al"), Some("a.org")),
            ],
        ];
        let inputs: Vec<SortInput> = froms
            .iter()
            .enumerate()
            .map(|(i, from)| {
                let envelope = Envelope {
                    from: from.clone(),
                    ..Envelope::default()
                };
                SortInput::new(0, i as u32 + 1, 0, 0, &envelope)
            })
            .collect();
        let display: Vec<&str> = inputs.iter().map(|i| i.display_from.as_str()).collect();
        assert_eq!(
            display,
            vec![
                "Zoe Adams",
                "bob@b.org",
                "",
                "Dan Karp",
                "Carol@c.org",
                "Team"
            ]
        );
        assert_eq!(
            seqs(&inputs, &[by(SortKey::DisplayFrom)]),
            vec![3, 2, 5, 4, 6, 1]
        );
        // FROM compares the mailbox alone, case-insensitively.
        assert_eq!(seqs(&inputs, &[by(SortKey::From)]), vec![3, 1, 2, 5, 4, 6]);
    }

    #[test]
    fn input_from_a_real_header() {
        let raw = b"Date: Fri, 31 Dec 2000 16:01:33 -0800\r\n\
            Subject: Re: [list] Fwd: Plans\r\n\
            From: \"Doe, Jane\" <Jane.Doe@example.org>\r\n\
            To: undisclosed-recipients:;\r\n\
            Cc: bob@example.com, carol@example.com\r\n\r\nbody\r\n";
        let summary = portico_mime::summarize(raw);
        let message = MessageData {
            uid: 7,
            email_id: 0,
            flags: Vec::new(),
            internal_date: DateTime {
                timestamp: 1_700_000_000,
                offset: 0,
            },
            save_date: None,
            size: raw.len() as u64,
            modseq: 1,
            summary: Some(summary),
            fields: None,
            raw: None,
            raw_in_store: false,
        };
        let criteria = [by(SortKey::Subject)];
        assert_eq!(
            SortInput::from_message(3, &message, &criteria),
            Some(SortInput {
                uid: 7,
                seq: 3,
                arrival: 1_700_000_000,
                // RFC 5256 §2.2's example: 1 Jan 2001 00:01:33 UTC.
                sent: Some(978_307_293),
                size: raw.len() as u64,
                subject: "Plans".into(),
                from: "Jane.Doe".into(),
                to: "undisclosed-recipients".into(),
                cc: "bob".into(),
                display_from: "Doe, Jane".into(),
                display_to: "undisclosed-recipients".into(),
            })
        );
        let bare = MessageData {
            summary: None,
            ..message
        };
        assert_eq!(SortInput::from_message(3, &bare, &criteria), None);
        let by_size = SortInput::from_message(3, &bare, &[reverse(SortKey::Size)]);
        assert_eq!(
            by_size.map(|i| (i.size, i.subject)),
            Some((bare.size, "".into()))
        );
        assert_eq!(
            detail(&[by(SortKey::Arrival), by(SortKey::Size)]),
            Detail::Meta
        );
        assert_eq!(
            detail(&[by(SortKey::Size), by(SortKey::Cc)]),
            Detail::Summary
        );
    }

    #[test]
    fn sort_responses() {
        assert_eq!(response(&[2, 84, 882], 0), b"* SORT 2 84 882\r\n");
        assert_eq!(response(&[], 0), b"* SORT\r\n");
        // RFC 7162 §3.1.5's example shape.
        assert_eq!(
            response(&[2, 84, 882], 917162500),
            b"* SORT 2 84 882 (MODSEQ 917162500)\r\n"
        );
        assert_eq!(response(&[], 5), b"* SORT\r\n");
    }
}
