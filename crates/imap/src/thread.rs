//! THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES threading of the messages a
//! search found, and the `* THREAD` response (§4); and REFS (draft-ietf-morg-inthread
//! §4), which Dovecot offers beside them.
//!
//! REFS is REFERENCES without step 5's gathering by subject (only Message-ID,
//! References and In-Reply-To link messages), and with step 4's order of the threads
//! replaced: by the sent date of each thread's most recent message, so a thread
//! someone just answered comes last, where a client showing the newest at the bottom
//! wants it. Siblings are still in sent-date order (step 6). Threads whose latest
//! messages tie go as in Dovecot, the reference implementation: by the mailbox order
//! of their top message, a dummy (a lost parent) counting as 0, even when only one
//! child is left under it; then, where Dovecot's order is arbitrary, by the mailbox
//! order of their earliest message.
//!
//! The algorithms need only a few header values per message, so the host gathers a
//! [`ThreadInput`] per matching message and this module builds the threads without
//! I/O. REFERENCES and REFS need the References header, which an ENVELOPE does not
//! hold: [`ThreadInput::from_message`] reads it from the header block, so the host
//! must fetch that block ([`detail`]).
//!
//! The threads live in an arena ([`Threads`]) and every walk over them is iterative:
//! whoever sends mail chooses the References chains, and so the depth of the tree, and
//! neither building, encoding nor dropping it may recurse that deep.

use std::collections::HashMap;

use portico_mime::Envelope;

use crate::casemap;
use crate::command::ThreadAlgorithm;
use crate::request::{Detail, MessageData};
use crate::response::{Data, ThreadToken};
use crate::sort::{BaseSubject, base_subject};

/// What threading needs of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadInput {
    pub uid: u32,
    /// The message's sequence number: the order of last resort, and which of two
    /// messages with the same Message-ID keeps it (RFC 5256 §3).
    pub seq: u32,
    /// The sent date in Unix seconds (RFC 5256 §2.2): the Date header, or INTERNALDATE
    /// when there is none that parses.
    pub sent: i64,
    pub subject: BaseSubject,
    /// The first valid msg-id of the Message-ID header, normalized by [`msg_ids`].
    pub message_id: Option<String>,
    /// The message's references, oldest first ([`references`]).
    pub references: Vec<String>,
}

impl ThreadInput {
    /// From the message's ENVELOPE fields and its raw References header value, which
    /// the envelope lacks.
    pub fn new(
        uid: u32,
        seq: u32,
        arrival: i64,
        envelope: &Envelope,
        references_header: Option<&[u8]>,
    ) -> ThreadInput {
        ThreadInput {
            uid,
            seq,
            sent: envelope
                .date
                .as_deref()
                .and_then(portico_mime::parse_date)
                .map_or(arrival, |(timestamp, _)| timestamp),
            subject: envelope
                .subject
                .as_deref()
                .map(base_subject)
                .unwrap_or_default(),
            message_id: envelope
                .message_id
                .as_deref()
                .and_then(|v| msg_ids(v).into_iter().next()),
            references: references(references_header, envelope.in_reply_to.as_deref()),
        }
    }

    /// From a scanned message (read with [`detail`]): the ENVELOPE from its MIME
    /// summary, References from its header block in `raw`. `None` without a summary.
    /// Without `raw` the message is threaded as if it had no References header (by
    /// In-Reply-To alone), which is all ORDEREDSUBJECT needs.
    pub fn from_message(seq: u32, message: &MessageData) -> Option<ThreadInput> {
        let summary = message.summary.as_ref()?;
        let references_header = message.raw.as_deref().and_then(|raw| {
            portico_mime::header_values(raw, "References")
                .into_iter()
                .next()
        });
        Some(ThreadInput::new(
            message.uid,
            seq,
            message.internal_date.timestamp,
            summary.envelope_fields(),
            references_header.as_deref().map(str::as_bytes),
        ))
    }
}

/// How much of each message a THREAD reads: the MIME summary (ENVELOPE), and for
/// REFERENCES and REFS the header block too, for References.
pub fn detail(algorithm: ThreadAlgorithm) -> Detail {
    match algorithm {
        ThreadAlgorithm::OrderedSubject => Detail::Summary,
        ThreadAlgorithm::References | ThreadAlgorithm::Refs => Detail::Header,
    }
}

/// A message's references (RFC 5256 §3): the msg-ids of its References header; when
/// that holds none, the first valid one of In-Reply-To (whose later ids are too often
/// addresses or junk to trust).
pub fn references(references: Option<&[u8]>, in_reply_to: Option<&[u8]>) -> Vec<String> {
    let ids = references.map(msg_ids).unwrap_or_default();
    if !ids.is_empty() {
        return ids;
    }
    in_reply_to
        .and_then(|v| msg_ids(v).into_iter().next())
        .into_iter()
        .collect()
}

/// The msg-ids (`<left@right>`, RFC 5322 §3.6.4) in a header value, in order, without
/// their angle brackets and normalized as RFC 5256 §3 requires: quotes, escapes and
/// unquoted white space (folding) removed, so `<"a.b"@x>` and `<a.b@x>` are one id.
/// Whatever is not a msg-id (comments, quoted phrases, addresses, an unclosed `<`, an
/// id without `@` or with an empty side) is skipped.
pub fn msg_ids(value: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut i = 0;
    while i < value.len() {
        i = match value[i] {
            b'(' => skip_comment(value, i).unwrap_or(i + 1),
            b'"' => skip_quoted(value, i).unwrap_or(i + 1),
            b'<' => {
                let (id, next) = angle_id(value, i + 1);
                ids.extend(id);
                next
            }
            _ => i + 1,
        };
    }
    ids
}

/// Past the comment opening at `start` (comments nest), or `None` if it never closes.
fn skip_comment(value: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Past the quoted string opening at `start`, or `None` if it never closes.
fn skip_quoted(value: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 1,
            b'"' => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The id after a `<` (at `start`), and where to go on. A second `<` before the `>`
/// abandons the first.
fn angle_id(value: &[u8], start: usize) -> (Option<String>, usize) {
    let mut id = Vec::new();
    let mut quoted = false;
    let mut i = start;
    while let Some(&b) = value.get(i) {
        match b {
            b'\\' => {
                id.extend(value.get(i + 1));
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let valid = matches!(
                    id.iter().position(|&c| c == b'@'),
                    Some(at) if at > 0 && at + 1 < id.len()
                );
                let id = valid.then(|| String::from_utf8_lossy(&id).into_owned());
                return (id, i + 1);
            }
            b'<' if !quoted => return (None, i),
            b' ' | b'\t' | b'\r' | b'\n' if !quoted => {}
            _ => id.push(b),
        }
        i += 1;
    }
    (None, value.len())
}

/// One node of the threads: a message, or a dummy standing for a parent that is not
/// among the messages (REFERENCES only, and only at the top after pruning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Index into the [`ThreadInput`]s; `None` for a dummy.
    pub message: Option<usize>,
    /// Node ids, in thread order.
    pub children: Vec<usize>,
}

/// The threads of a THREAD command: a forest of [`Node`]s held in one arena, so that
/// nothing about it (dropping included) recurses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Threads {
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

impl Threads {
    /// The first node of each thread, in thread order.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    pub fn node(&self, id: usize) -> Option<&Node> {
        self.nodes.get(id)
    }

    fn add(&mut self, message: Option<usize>, children: Vec<usize>) -> usize {
        self.nodes.push(Node { message, children });
        self.nodes.len() - 1
    }

    /// The `* THREAD` response line (RFC 5256 §4), `number` giving each message's
    /// sequence number or UID. A message's only child follows it (`1 2`); several
    /// children each open a list (`1 (2)(3)`); a dummy's children are a list of lists
    /// (`((2)(3))`).
    pub fn response(&self, number: impl Fn(usize) -> u32) -> Vec<u8> {
        let mut tokens = Vec::new();
        for &root in &self.roots {
            let heads = match self.nodes[root].message {
                Some(_) => vec![root],
                None => self.members(root),
            };
            if heads.is_empty() {
                continue;
            }
            tokens.push(ThreadToken::Open);
            if let [head] = heads.as_slice() {
                self.push_members(&mut tokens, *head, &number);
            } else {
                for head in heads {
                    tokens.push(ThreadToken::Open);
                    self.push_members(&mut tokens, head, &number);
                    tokens.push(ThreadToken::Close);
                }
            }
            tokens.push(ThreadToken::Close);
        }
        Data::Thread(&tokens).to_bytes(false)
    }

    /// The children of `id`, any dummy among them replaced by its own children.
    fn members(&self, id: usize) -> Vec<usize> {
        let mut members = Vec::new();
        let mut pending: Vec<usize> = self.nodes[id].children.iter().rev().copied().collect();
        while let Some(n) = pending.pop() {
            match self.nodes[n].message {
                Some(_) => members.push(n),
                None => pending.extend(self.nodes[n].children.iter().rev()),
            }
        }
        members
    }

    /// RFC 5256 thread-members from the message `head` down, without recursion.
    fn push_members(
        &self,
        tokens: &mut Vec<ThreadToken>,
        head: usize,
        number: &impl Fn(usize) -> u32,
    ) {
        enum Step {
            Node(usize),
            Token(ThreadToken),
        }
        let mut steps = vec![Step::Node(head)];
        while let Some(step) = steps.pop() {
            let n = match step {
                Step::Token(token) => {
                    tokens.push(token);
                    continue;
                }
                Step::Node(n) => n,
            };
            let Some(message) = self.nodes[n].message else {
                continue;
            };
            tokens.push(ThreadToken::Number(number(message)));
            let children = self.members(n);
            if let [only] = children.as_slice() {
                steps.push(Step::Node(*only));
            } else {
                for &child in children.iter().rev() {
                    steps.push(Step::Token(ThreadToken::Close));
                    steps.push(Step::Node(child));
                    steps.push(Step::Token(ThreadToken::Open));
                }
            }
        }
    }

    /// Sent date, then mailbox order; a dummy sorts as its first child.
    fn date_key(&self, inputs: &[ThreadInput], mut id: usize) -> (i64, u32) {
        loop {
            let node = &self.nodes[id];
            match (
                node.message.and_then(|m| inputs.get(m)),
                node.children.first(),
            ) {
                (Some(input), _) => return (input.sent, input.seq),
                (None, Some(&first)) => id = first,
                (None, None) => return (i64::MAX, u32::MAX),
            }
        }
    }

    fn sort_by_date(&self, inputs: &[ThreadInput], ids: &mut [usize]) {
        ids.sort_by_cached_key(|&id| self.date_key(inputs, id));
    }

    /// REFS's order of threads: the sent date of the thread's most recent message,
    /// then the sequence number of its top message (0 for a dummy), then that of its
    /// earliest message, which no other thread shares.
    fn latest_key(&self, inputs: &[ThreadInput], root: usize) -> (i64, u32, u32) {
        let own = self.nodes[root]
            .message
            .and_then(|m| inputs.get(m))
            .map_or(0, |input| input.seq);
        let (mut latest, mut first) = (i64::MIN, u32::MAX);
        let mut pending = vec![root];
        while let Some(id) = pending.pop() {
            let node = &self.nodes[id];
            if let Some(input) = node.message.and_then(|m| inputs.get(m)) {
                latest = latest.max(input.sent);
                first = first.min(input.seq);
            }
            pending.extend(&node.children);
        }
        (latest, own, first)
    }

    /// Every node under `roots`, each after all of its descendants.
    fn post_order(&self, roots: &[usize]) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, bool)> = roots.iter().map(|&r| (r, false)).collect();
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
            } else {
                stack.push((id, true));
                stack.extend(self.nodes[id].children.iter().map(|&c| (c, false)));
            }
        }
        order
    }
}

/// The threads of `inputs` by `algorithm`; nodes refer to messages by their index in
/// `inputs`.
pub fn thread(inputs: &[ThreadInput], algorithm: ThreadAlgorithm) -> Threads {
    match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(inputs),
        ThreadAlgorithm::References | ThreadAlgorithm::Refs => {
            references_threads(inputs, algorithm)
        }
    }
}

/// ORDEREDSUBJECT: one thread per base subject, its messages by sent date, the first
/// the parent of all the others; threads by the date of their first message.
fn ordered_subject(inputs: &[ThreadInput]) -> Threads {
    let subjects: Vec<String> = inputs
        .iter()
        .map(|m| casemap::fold(&m.subject.text))
        .collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| {
        subjects[a]
            .cmp(&subjects[b])
            .then_with(|| (inputs[a].sent, inputs[a].seq).cmp(&(inputs[b].sent, inputs[b].seq)))
    });
    let mut threads = Threads::default();
    for group in order.chunk_by(|&a, &b| subjects[a] == subjects[b]) {
        let Some((&first, rest)) = group.split_first() else {
            continue;
        };
        let children = rest
            .iter()
            .map(|&m| threads.add(Some(m), Vec::new()))
            .collect();
        let root = threads.add(Some(first), children);
        threads.roots.push(root);
    }
    let mut roots = std::mem::take(&mut threads.roots);
    threads.sort_by_date(inputs, &mut roots);
    threads.roots = roots;
    threads
}

/// Step 1 of REFERENCES: the nodes, linked parent to child, with the parent links the
/// later steps no longer need.
struct Linker<'a> {
    threads: Threads,
    parent: Vec<Option<usize>>,
    by_id: HashMap<&'a str, usize>,
}

impl<'a> Linker<'a> {
    fn add(&mut self, message: Option<usize>) -> usize {
        self.parent.push(None);
        self.threads.add(message, Vec::new())
    }

    /// The node of a Message ID, a dummy until a message claims it.
    fn for_id(&mut self, id: &'a str) -> usize {
        if let Some(&n) = self.by_id.get(id) {
            return n;
        }
        let n = self.add(None);
        self.by_id.insert(id, n);
        n
    }

    /// Whether making `child` a child of `parent` would close a loop. A node without
    /// children has no descendants, which spares the walk up in the usual case: a
    /// chain linked in order would otherwise cost its length squared.
    fn would_loop(&self, parent: usize, child: usize) -> bool {
        if parent == child {
            return true;
        }
        if self.threads.nodes[child].children.is_empty() {
            return false;
        }
        let mut at = self.parent[parent];
        while let Some(p) = at {
            if p == child {
                return true;
            }
            at = self.parent[p];
        }
        false
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.parent[child] = Some(parent);
        self.threads.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.parent[child].take() {
            self.threads.nodes[p].children.retain(|&c| c != child);
        }
    }
}

/// REFERENCES (RFC 5256 §3), steps 1 to 6; or REFS, which skips the subject steps and
/// orders the threads by their latest messages.
fn references_threads(inputs: &[ThreadInput], algorithm: ThreadAlgorithm) -> Threads {
    let by_subject = algorithm == ThreadAlgorithm::References;
    let mut linker = Linker {
        threads: Threads::default(),
        parent: Vec::new(),
        by_id: HashMap::new(),
    };
    // (1) In mailbox order, so the first of several messages with one ID keeps it.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&m| inputs[m].seq);
    for m in order {
        let input = &inputs[m];
        let own = match input.message_id.as_deref() {
            Some(id) => match linker.by_id.get(id) {
                Some(&n) if linker.threads.nodes[n].message.is_none() => {
                    linker.threads.nodes[n].message = Some(m);
                    n
                }
                // A duplicate ID: this message gets a unique one, i.e. none.
                Some(_) => linker.add(Some(m)),
                None => {
                    let n = linker.add(Some(m));
                    linker.by_id.insert(id, n);
                    n
                }
            },
            None => linker.add(Some(m)),
        };
        // (1.A) Each reference the parent of the next, unless it has one already.
        let refs: Vec<usize> = input
            .references
            .iter()
            .map(|id| linker.for_id(id))
            .collect();
        for (&parent, &child) in refs.iter().zip(refs.iter().skip(1)) {
            if linker.parent[child].is_none() && !linker.would_loop(parent, child) {
                linker.link(parent, child);
            }
        }
        // (1.B) The last reference is the parent, whatever a truncated References
        // elsewhere said.
        linker.unlink(own);
        if let Some(&last) = refs.last()
            && !linker.would_loop(last, own)
        {
            linker.link(last, own);
        }
    }
    let mut threads = linker.threads;
    let roots: Vec<usize> = (0..threads.nodes.len())
        .filter(|&n| linker.parent[n].is_none())
        .collect();

    // (3) Prune dummies: below the top each gives way to its children; at the top one
    // stays when it holds more than one.
    for n in threads.post_order(&roots) {
        let children = std::mem::take(&mut threads.nodes[n].children);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if threads.nodes[c].message.is_some() {
                kept.push(c);
            } else {
                kept.append(&mut threads.nodes[c].children);
            }
        }
        threads.nodes[n].children = kept;
    }
    let mut top = Vec::with_capacity(roots.len());
    for r in roots {
        match (threads.nodes[r].message, threads.nodes[r].children.len()) {
            (Some(_), _) => top.push(r),
            (None, 0) => {}
            // REFS keeps it, to sort its thread as Dovecot does (a dummy's thread
            // first among equals); the response is the same, the child as the head.
            (None, 1) if by_subject => top.append(&mut threads.nodes[r].children),
            (None, _) => top.push(r),
        }
    }
    if !by_subject {
        return finish(threads, inputs, top, |threads, roots| {
            roots.sort_by_cached_key(|&r| threads.latest_key(inputs, r));
        });
    }

    // (4) Sort the top by date; a dummy by its earliest child.
    for &r in &top {
        if threads.nodes[r].message.is_none() {
            let mut children = std::mem::take(&mut threads.nodes[r].children);
            threads.sort_by_date(inputs, &mut children);
            threads.nodes[r].children = children;
        }
    }
    threads.sort_by_date(inputs, &mut top);

    // (5) Gather threads with the same base subject.
    let subjects: Vec<String> = inputs
        .iter()
        .map(|m| casemap::fold(&m.subject.text))
        .collect();
    let thread_subject = |threads: &Threads, r: usize| -> Option<usize> {
        let node = &threads.nodes[r];
        node.message
            .or_else(|| {
                node.children
                    .first()
                    .and_then(|&c| threads.nodes[c].message)
            })
            .filter(|&m| !subjects[m].is_empty())
    };
    let is_reply = |threads: &Threads, n: usize| {
        threads.nodes[n]
            .message
            .is_some_and(|m| inputs[m].subject.reply_or_forward)
    };
    // (5.B) One thread per subject: a dummy before a message, a message before a reply.
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &r in &top {
        let Some(m) = thread_subject(&threads, r) else {
            continue;
        };
        let subject = subjects[m].as_str();
        match table.get(subject) {
            None => {
                table.insert(subject, r);
            }
            Some(&t) => {
                if threads.nodes[t].message.is_some()
                    && (threads.nodes[r].message.is_none()
                        || (is_reply(&threads, t) && !is_reply(&threads, r)))
                {
                    table.insert(subject, r);
                }
            }
        }
    }
    // (5.C) Merge the others into it.
    let mut is_root = vec![false; threads.nodes.len()];
    for &r in &top {
        is_root[r] = true;
    }
    for &r in &top {
        if !is_root[r] {
            continue;
        }
        let Some(m) = thread_subject(&threads, r) else {
            continue;
        };
        let subject = subjects[m].as_str();
        let Some(&t) = table.get(subject) else {
            continue;
        };
        if t == r {
            continue;
        }
        let dummy = |n: usize| threads.nodes[n].message.is_none();
        match (dummy(t), dummy(r)) {
            (true, true) => {
                let mut children = std::mem::take(&mut threads.nodes[r].children);
                threads.nodes[t].children.append(&mut children);
                is_root[r] = false;
            }
            (true, false) => {
                threads.nodes[t].children.push(r);
                is_root[r] = false;
            }
            // Step 5.B leaves a dummy in the table whenever one has the subject; kept
            // total all the same.
            (false, true) => {
                threads.nodes[r].children.push(t);
                is_root[t] = false;
                table.insert(subject, r);
            }
            (false, false) if is_reply(&threads, r) && !is_reply(&threads, t) => {
                threads.nodes[t].children.push(r);
                is_root[r] = false;
            }
            (false, false) => {
                let d = threads.add(None, vec![t, r]);
                is_root.push(true);
                is_root[t] = false;
                is_root[r] = false;
                table.insert(subject, d);
            }
        }
    }
    let roots: Vec<usize> = (0..threads.nodes.len()).filter(|&n| is_root[n]).collect();
    finish(threads, inputs, roots, |threads, roots| {
        threads.sort_by_date(inputs, roots)
    })
}

/// (6) Sorts every set of siblings by date, the deepest first, so that a dummy's first
/// child is known before the dummy is placed; then the threads, by `order`.
fn finish(
    mut threads: Threads,
    inputs: &[ThreadInput],
    mut roots: Vec<usize>,
    order: impl FnOnce(&Threads, &mut Vec<usize>),
) -> Threads {
    for n in threads.post_order(&roots) {
        let mut children = std::mem::take(&mut threads.nodes[n].children);
        threads.sort_by_date(inputs, &mut children);
        threads.nodes[n].children = children;
    }
    order(&threads, &mut roots);
    threads.roots = roots;
    threads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::DateTime;

    /// A message numbered `seq`, sent at `sent`, with a subject and the IDs it has.
    fn msg(seq: u32, sent: i64, subject: &str, id: Option<&str>, refs: &[&str]) -> ThreadInput {
        ThreadInput {
            uid: seq + 100,
            seq,
            sent,
            subject: base_subject(subject.as_bytes()),
            message_id: id.map(str::to_string),
            references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The response, numbered by sequence numbers; the same whatever order the inputs
    /// come in.
    fn threaded(inputs: &[ThreadInput], algorithm: ThreadAlgorithm) -> String {
        let response = |inputs: &[ThreadInput]| {
            let threads = thread(inputs, algorithm);
            String::from_utf8(threads.response(|i| inputs[i].seq)).unwrap()
        };
        let reversed: Vec<ThreadInput> = inputs.iter().rev().cloned().collect();
        let text = response(inputs);
        assert_eq!(response(&reversed), text, "depends on input order");
        text
    }

    fn by_references(inputs: &[ThreadInput]) -> String {
        threaded(inputs, ThreadAlgorithm::References)
    }

    fn by_refs(inputs: &[ThreadInput]) -> String {
        threaded(inputs, ThreadAlgorithm::Refs)
    }

    #[test]
    fn refs_links_by_references_alone_and_orders_threads_by_their_latest_message() {
        // As REFERENCES's example, the threads already in the order of their latest.
        let inputs = [
            msg(2, 10, "a", Some("2@x"), &[]),
            msg(3, 20, "b", Some("3@x"), &[]),
            msg(4, 40, "b", Some("4@x"), &["3@x", "6@x"]),
            msg(6, 30, "b", Some("6@x"), &["3@x"]),
            msg(7, 60, "b", Some("7@x"), &["3@x", "6@x", "44@x"]),
            msg(23, 50, "b", Some("23@x"), &["3@x", "6@x", "4@x"]),
            msg(44, 45, "b", Some("44@x"), &["3@x", "6@x"]),
            msg(96, 70, "b", Some("96@x"), &["44@x", "7@x"]),
        ];
        assert_eq!(by_refs(&inputs), "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n");
        // A late reply moves its thread to the end; its siblings stay in date order.
        let inputs = [
            msg(1, 10, "Lunch", Some("1@x"), &[]),
            msg(2, 20, "Budget", Some("2@x"), &[]),
            msg(3, 30, "Plans", Some("3@x"), &[]),
            msg(4, 100, "Re: Lunch", Some("4@x"), &["1@x"]),
            msg(5, 15, "Re: Lunch", Some("5@x"), &["1@x"]),
        ];
        assert_eq!(by_refs(&inputs), "* THREAD (2)(3)(1 (5)(4))\r\n");
        assert_eq!(by_references(&inputs), "* THREAD (1 (5)(4))(2)(3)\r\n");
        // No subject merging: a reply without references stays alone, and so do two
        // originals with one subject.
        let inputs = [
            msg(1, 10, "Lunch", Some("1@x"), &[]),
            msg(2, 20, "Re: lunch", Some("2@x"), &[]),
            msg(3, 30, "lunch", Some("3@x"), &[]),
        ];
        assert_eq!(by_refs(&inputs), "* THREAD (1)(2)(3)\r\n");
        assert_eq!(by_references(&inputs), "* THREAD ((1 2)(3))\r\n");
        assert_eq!(by_refs(&[]), "* THREAD\r\n");
    }

    #[test]
    fn refs_ties_go_to_dummies_then_mailbox_order() {
        // Threads whose latest messages were sent at once: those under a lost parent
        // first (even with one child left, shown as that child), then by the sequence
        // number of the first message.
        let inputs = [
            msg(1, 50, "a", Some("1@x"), &[]),
            msg(2, 10, "b", Some("2@x"), &["gone@x"]),
            msg(3, 50, "c", Some("3@x"), &["2@x"]),
            msg(4, 50, "d", Some("4@x"), &["lost@x"]),
            msg(5, 40, "e", Some("5@x"), &[]),
            msg(6, 50, "f", Some("6@x"), &["5@x"]),
        ];
        assert_eq!(by_refs(&inputs), "* THREAD (2 3)(4)(1)(5 6)\r\n");
        // Two dummies' threads at once: mailbox order of their first messages.
        let inputs = [
            msg(1, 50, "a", Some("1@x"), &["gone@x"]),
            msg(2, 50, "b", Some("2@x"), &["gone@x"]),
            msg(3, 50, "c", Some("3@x"), &["lost@x"]),
            msg(4, 10, "d", Some("4@x"), &["lost@x"]),
        ];
        assert_eq!(by_refs(&inputs), "* THREAD ((1)(2))((4)(3))\r\n");
    }

    #[test]
    fn msg_id_lists_tolerate_junk() {
        assert_eq!(
            msg_ids(b"<a@x> (comment <c@x>) \"quoted <q@x>\" <b@y>"),
            vec!["a@x", "b@y"]
        );
        // RFC 5256 §3: quoting does not make another ID.
        assert_eq!(
            msg_ids(b"<\"01KF8JCEOCBS0045PS\"@xxx.yyy.com> <01KF8JCEOCBS0045PS@xxx.yyy.com>"),
            vec!["01KF8JCEOCBS0045PS@xxx.yyy.com"; 2]
        );
        assert_eq!(
            msg_ids(b"<\"a\\\"b c\"@x>\r\n\t<d\r\n @e>"),
            vec!["a\"b c@x", "d@e"]
        );
        // No @, an empty side, an abandoned `<`, an unclosed one.
        assert_eq!(msg_ids(b"<nope> <@x> <y@> <<z@w> <u@v"), vec!["z@w"]);
        // In-Reply-To as some clients write it.
        assert_eq!(
            msg_ids(b"<m1@host> (John's message of \"Mon, 1 Jan\")"),
            vec!["m1@host"]
        );
        assert_eq!(msg_ids(b"(unclosed <k@x>"), vec!["k@x"]);
        assert_eq!(msg_ids(b""), Vec::<String>::new());
    }

    #[test]
    fn references_before_in_reply_to() {
        assert_eq!(
            references(Some(b"<a@x> <b@x>"), Some(b"<c@x>")),
            vec!["a@x", "b@x"]
        );
        assert_eq!(references(Some(b"junk"), Some(b"<c@x> <d@x>")), vec!["c@x"]);
        assert_eq!(references(None, Some(b"bob@x.org")), Vec::<String>::new());
    }

    #[test]
    fn rfc5256_response_example() {
        // * THREAD (2)(3 6 (4 23)(44 7 96)), built from References.
        let inputs = [
            msg(2, 10, "a", Some("2@x"), &[]),
            msg(3, 20, "b", Some("3@x"), &[]),
            msg(4, 40, "b", Some("4@x"), &["3@x", "6@x"]),
            msg(6, 30, "b", Some("6@x"), &["3@x"]),
            msg(7, 60, "b", Some("7@x"), &["3@x", "6@x", "44@x"]),
            msg(23, 50, "b", Some("23@x"), &["3@x", "6@x", "4@x"]),
            msg(44, 45, "b", Some("44@x"), &["3@x", "6@x"]),
            msg(96, 70, "b", Some("96@x"), &["44@x", "7@x"]),
        ];
        assert_eq!(
            by_references(&inputs),
            "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
        );
        assert_eq!(
            by_references(&[]),
            "* THREAD\r\n",
            "no messages, no threads"
        );
    }

    #[test]
    fn missing_parents_become_dummies() {
        // 3 and 5 answer a message that is not there: one thread under a dummy.
        let inputs = [
            msg(3, 10, "x", Some("3@x"), &["gone@x"]),
            msg(5, 20, "y", Some("5@x"), &["gone@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD ((3)(5))\r\n");
        // A dummy with one child gives way to it; one below the top always does.
        let inputs = [
            msg(1, 10, "a", Some("1@x"), &["gone@x"]),
            msg(2, 20, "b", Some("2@x"), &[]),
            msg(3, 30, "b", Some("3@x"), &["2@x", "lost@x"]),
            msg(4, 40, "b", Some("4@x"), &["2@x", "lost@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (1)(2 (3)(4))\r\n");
        // Promoted, the lone child is a message, so a reply joins it and not a dummy
        // (which would give `((1)(2))`).
        let inputs = [
            msg(1, 10, "Q", Some("1@x"), &["gone@x"]),
            msg(2, 20, "Re: Q", Some("2@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (1 2)\r\n");
    }

    #[test]
    fn truncated_references_loops_and_duplicate_ids() {
        // Message 2's References lost its grandparent; its parent, stored after it,
        // still ends up between them.
        let inputs = [
            msg(1, 10, "a", Some("a@x"), &[]),
            msg(2, 30, "a", Some("c@x"), &["b@x"]),
            msg(3, 20, "a", Some("b@x"), &["a@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (1 3 2)\r\n");
        // 1.B: a message's own last reference beats the parent another message's
        // References gave it (here a bogus x).
        let inputs = [
            msg(1, 30, "r", Some("r@x"), &["x@x", "c@x"]),
            msg(2, 20, "c", Some("c@x"), &["a@x"]),
            msg(3, 10, "a", Some("a@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (3 2 1)\r\n");
        // Messages naming each other as parent: the later link would close a loop, and
        // a message is never its own parent.
        let inputs = [
            msg(1, 10, "p", Some("a@x"), &["b@x"]),
            msg(2, 20, "q", Some("b@x"), &["a@x"]),
            msg(3, 30, "r", Some("c@x"), &["c@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (2 1)(3)\r\n");
        // A second message with the same ID gets another: replies go to the first.
        let inputs = [
            msg(1, 10, "p", Some("same@x"), &[]),
            msg(2, 20, "q", Some("same@x"), &[]),
            msg(3, 30, "r", Some("r@x"), &["same@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (1 3)(2)\r\n");
    }

    #[test]
    fn roots_sort_by_date_and_a_dummy_by_its_first_child() {
        let inputs = [
            msg(1, 500, "late", Some("1@x"), &[]),
            msg(2, 300, "one", Some("2@x"), &["gone@x"]),
            msg(3, 100, "two", Some("3@x"), &["gone@x"]),
            msg(4, 200, "mid", Some("4@x"), &[]),
            // Same date as 4: mailbox order decides.
            msg(5, 200, "mid too", Some("5@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD ((3)(2))(4)(5)(1)\r\n");
        // Merged in step 5 after 5 and 6, message 2 still sorts before 5, sent at the
        // same time: siblings too fall back to mailbox order.
        let inputs = [
            msg(2, 20, "Re: Q", Some("2@x"), &[]),
            msg(5, 20, "Q", Some("5@x"), &["gone@x"]),
            msg(6, 30, "Re: Q", Some("6@x"), &["gone@x"]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD ((2)(5)(6))\r\n");
    }

    #[test]
    fn subjects_merge_threads_in_step_5() {
        // A reply without References joins the original by subject.
        let inputs = [
            msg(1, 10, "Lunch", Some("1@x"), &[]),
            msg(2, 20, "Re: lunch", Some("2@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (1 2)\r\n");
        // Two originals with one subject: siblings under a new dummy.
        let inputs = [
            msg(1, 10, "Lunch", Some("1@x"), &[]),
            msg(2, 20, "lunch", Some("2@x"), &[]),
            msg(3, 30, "RE: Lunch", Some("3@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD ((1)(2)(3))\r\n");
        // The original is the table's pick even when a reply comes first.
        let inputs = [
            msg(1, 10, "Re: plan", Some("1@x"), &[]),
            msg(2, 20, "plan", Some("2@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD (2 1)\r\n");
        // A dummy thread takes in the others of its subject; empty subjects never merge.
        let inputs = [
            msg(1, 10, "Q", Some("1@x"), &["gone@x"]),
            msg(2, 20, "Re: Q", Some("2@x"), &["gone@x"]),
            msg(3, 30, "Re: q", Some("3@x"), &["other@x"]),
            msg(4, 40, "", Some("4@x"), &[]),
            msg(5, 50, "Re:", Some("5@x"), &[]),
        ];
        assert_eq!(by_references(&inputs), "* THREAD ((1)(2)(3))(4)(5)\r\n");
    }

    #[test]
    fn ordered_subject_example() {
        // Shaped like RFC 5256's (174 (175)(176)(178)(181)(180))(179)(194 195).
        let inputs = [
            msg(174, 10, "Meeting", None, &[]),
            msg(175, 20, "Re: meeting", None, &[]),
            msg(176, 30, "RE: Meeting", None, &[]),
            msg(178, 40, "Fwd: Meeting", None, &[]),
            msg(179, 45, "Other", None, &[]),
            msg(180, 60, "Re: Meeting", None, &[]),
            msg(181, 50, "Meeting (fwd)", None, &[]),
            msg(194, 70, "Third", None, &[]),
            msg(195, 80, "Re: third", None, &[]),
            // Sent together: mailbox order, not subject order.
            msg(196, 90, "Zeta", None, &[]),
            msg(197, 90, "Alpha", None, &[]),
            msg(198, 90, "Re: alpha", None, &[]),
        ];
        assert_eq!(
            threaded(&inputs, ThreadAlgorithm::OrderedSubject),
            "* THREAD (174 (175)(176)(178)(181)(180))(179)(194 195)(196)(197 198)\r\n"
        );
        assert_eq!(
            threaded(&[], ThreadAlgorithm::OrderedSubject),
            "* THREAD\r\n"
        );
    }

    #[test]
    fn input_from_a_real_header() {
        let raw = b"Message-ID: <\"m 2\"@example.org>\r\n\
            In-Reply-To: <m1@example.org> (Jane's message)\r\n\
            References: <m0@example.org>\r\n <m1@example.org>\r\n\
            Subject: Re: Plans\r\n\r\nbody\r\n";
        let message = MessageData {
            uid: 9,
            email_id: 0,
            flags: Vec::new(),
            internal_date: DateTime {
                timestamp: 1_700_000_000,
                offset: 0,
            },
            save_date: None,
            size: raw.len() as u64,
            modseq: 1,
            summary: Some(portico_mime::summarize(raw)),
            fields: None,
            raw: Some(raw.to_vec()),
            raw_in_store: false,
        };
        let expected = ThreadInput {
            uid: 9,
            seq: 4,
            // No Date header: INTERNALDATE.
            sent: 1_700_000_000,
            subject: BaseSubject {
                text: "Plans".into(),
                reply_or_forward: true,
            },
            message_id: Some("m 2@example.org".into()),
            references: vec!["m0@example.org".into(), "m1@example.org".into()],
        };
        assert_eq!(
            ThreadInput::from_message(4, &message),
            Some(expected.clone())
        );
        // Without the header block, In-Reply-To stands in for References.
        let summary_only = MessageData {
            raw: None,
            ..message.clone()
        };
        assert_eq!(
            ThreadInput::from_message(4, &summary_only).map(|t| t.references),
            Some(vec!["m1@example.org".to_string()])
        );
        let bare = MessageData {
            summary: None,
            ..message
        };
        assert_eq!(ThreadInput::from_message(4, &bare), None);
        assert_eq!(detail(ThreadAlgorithm::References), Detail::Header);
        assert_eq!(detail(ThreadAlgorithm::Refs), Detail::Header);
        assert_eq!(detail(ThreadAlgorithm::OrderedSubject), Detail::Summary);
    }

    #[test]
    fn deep_threads_neither_recurse_nor_overflow() {
        const N: u32 = 50_000;
        // One chain: each message answers the one before.
        let chain: Vec<ThreadInput> = (1..=N)
            .map(|i| {
                let parent = format!("{}@x", i - 1);
                let refs: &[&str] = if i > 1 { &[parent.as_str()] } else { &[] };
                msg(i, i64::from(i), "s", Some(&format!("{i}@x")), refs)
            })
            .collect();
        let text = by_references(&chain);
        let expected: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
        assert_eq!(text, format!("* THREAD ({})\r\n", expected.join(" ")));
        assert_eq!(by_refs(&chain), text);
        // A comb: every message has a leaf reply and a reply that goes on, so the
        // lists nest N/2 deep.
        let comb: Vec<ThreadInput> = (1..=N)
            .map(|i| {
                let parent = format!("{}@x", if i % 2 == 0 { i - 1 } else { i.max(2) - 2 });
                let refs: &[&str] = if i > 1 { &[parent.as_str()] } else { &[] };
                msg(i, i64::from(i), "s", Some(&format!("{i}@x")), refs)
            })
            .collect();
        let text = by_references(&comb);
        assert_eq!(by_refs(&comb), text);
        assert!(
            text.starts_with("* THREAD (1 (2)(3 (4)(5 (6)(7 "),
            "{}",
            &text[..40]
        );
        assert_eq!(text.matches('(').count(), text.matches(')').count());
    }
}
