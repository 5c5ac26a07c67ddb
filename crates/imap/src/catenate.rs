//! CATENATE (RFC 4469): messages put together from the client's text and from parts of
//! messages already stored, before APPEND stores them.
//!
//! The session reads each URL ([`crate::url`]) and resolves it against itself (`;UID=n`
//! names the selected mailbox) into a [`PartRef`]; the host runs the [`CatenateJob`]
//! off the session's thread with a [`PartSource`] over its store, as it runs a
//! [`crate::scan::ScanJob`]. The rules are here: the UIDVALIDITY check, which octets a
//! section is (those of `BODY.PEEK[section]`, RFC 4469 §3), the partial range, the size
//! limit, and which URL is reported (the first at fault, RFC 4469 §4.1). The host only
//! looks folders and messages up and reads stored bytes. A section is read as its range
//! of the stored message, never the whole message, and the job stops at its limits
//! (each message's, and all the messages' together), so memory holds no more than a
//! command of literals would.
//!
//! The octets are copied unchanged (RFC 4469 §3): no transfer encoding is changed and
//! no MIME structure checked; the 8-bit octets and NULs of a binary part (RFC 3516)
//! come along as they are. Reading a part never sets `\Seen`.

use portico_mime::{MessageSummary, SectionPart};

use crate::command::{Section, SectionText};
use crate::request::FolderId;
use crate::url::UrlPartial;

/// The mailbox a URL names, resolved against the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlMailbox {
    /// A mailbox of the signed-in user, by its decoded name.
    Named(String),
    /// The selected mailbox (`;UID=n`), by the host's handle on it.
    Selected(FolderId),
}

/// A message, or a part of one, that a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRef {
    /// The URL as `[BADURL …]` shows it ([`crate::url::response_text`]).
    pub shown: String,
    pub mailbox: UrlMailbox,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// Empty: the whole message.
    pub section: Section,
    pub partial: Option<UrlPartial>,
}

/// A URL that names nothing the job can take: `NO [BADURL shown] why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUrl {
    pub shown: String,
    pub why: String,
}

/// One part of a message to build, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Octets as the client sent them (a TEXT literal, or a whole message literal).
    Text(Vec<u8>),
    Part(PartRef),
    /// A URL refused before reading anything (bad syntax, no mailbox selected): the
    /// job fails here, unless a URL before it fails first.
    Bad(BadUrl),
}

/// The messages of one APPEND to build, all or none.
#[derive(Debug, PartialEq, Eq)]
pub struct CatenateJob {
    /// Each message's pieces, in the APPEND's order.
    pub messages: Vec<Vec<Piece>>,
    /// Octets one message may have (APPENDLIMIT, RFC 7889).
    pub limit: u64,
    /// Octets all the messages may have together: as much as one command of literals
    /// may carry, so that a MULTIAPPEND of small URLs naming big messages holds no
    /// more memory than one of literals.
    pub total_limit: u64,
}

/// What a job came to.
#[derive(Debug, PartialEq, Eq)]
pub enum CatenateOutcome {
    /// Every message, in order.
    Built(Vec<Vec<u8>>),
    /// The first URL that failed (RFC 4469 §4.1).
    BadUrl(BadUrl),
    /// A message would pass [`CatenateJob::limit`] (RFC 4469 §4.2).
    TooBig,
    /// The messages together would pass [`CatenateJob::total_limit`].
    TooBigTogether,
}

/// The host's store, as a job reads it. Every lookup is within the signed-in user's
/// mailboxes; the errors are the store's (a failed read, a damaged message).
pub trait PartSource {
    type Error;

    /// The mailbox's UIDVALIDITY; `None` when the user has no such mailbox.
    fn uidvalidity(&mut self, mailbox: &UrlMailbox) -> Result<Option<u32>, Self::Error>;

    /// The MIME summary made when the message was stored; `None` when the mailbox
    /// has no message with that UID.
    fn summary(
        &mut self,
        mailbox: &UrlMailbox,
        uid: u32,
    ) -> Result<Option<MessageSummary>, Self::Error>;

    /// Exactly `len` stored octets of the message from `start` (a range its summary
    /// gave); `None` when the message is gone.
    fn read(
        &mut self,
        mailbox: &UrlMailbox,
        uid: u32,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// Texts after `[BADURL …]`.
const NO_MAILBOX: &str = "Mailbox does not exist";
const STALE: &str = "UIDVALIDITY does not match: the mailbox was recreated";
const NO_MESSAGE: &str = "No message with that UID";
const NO_SECTION: &str = "No such section in that message";

/// Why one part could not be taken.
enum Refusal {
    Bad(&'static str),
    TooBig,
}

impl CatenateJob {
    /// Whether running the job reads the store: some URL comes before the first one
    /// refused already. If not, the session runs it itself.
    pub fn reads_store(&self) -> bool {
        for piece in self.messages.iter().flatten() {
            match piece {
                Piece::Part(_) => return true,
                Piece::Bad(_) => return false,
                Piece::Text(_) => {}
            }
        }
        false
    }

    /// Builds every message, or says which URL or limit stopped it.
    pub fn run<S: PartSource>(self, source: &mut S) -> Result<CatenateOutcome, S::Error> {
        let mut reader = Reader {
            source,
            uidvalidities: Vec::new(),
            summary: None,
        };
        let mut built = Vec::with_capacity(self.messages.len());
        // Octets of the messages built before this one.
        let mut before = 0u64;
        for pieces in self.messages {
            let mut message: Vec<u8> = Vec::new();
            for piece in pieces {
                let len = message.len() as u64;
                let alone = self.limit.saturating_sub(len);
                let together = self.total_limit.saturating_sub(before + len);
                let (room, too_big) = if together < alone {
                    (together, CatenateOutcome::TooBigTogether)
                } else {
                    (alone, CatenateOutcome::TooBig)
                };
                match piece {
                    Piece::Text(text) if text.len() as u64 > room => return Ok(too_big),
                    Piece::Text(text) if message.is_empty() => message = text,
                    Piece::Text(text) => message.extend_from_slice(&text),
                    Piece::Bad(bad) => return Ok(CatenateOutcome::BadUrl(bad)),
                    Piece::Part(part) => match reader.part(&part, room)? {
                        Ok(bytes) => message.extend_from_slice(&bytes),
                        Err(Refusal::TooBig) => return Ok(too_big),
                        Err(Refusal::Bad(why)) => {
                            return Ok(CatenateOutcome::BadUrl(BadUrl {
                                shown: part.shown,
                                why: why.to_string(),
                            }));
                        }
                    },
                }
            }
            before += message.len() as u64;
            built.push(message);
        }
        Ok(CatenateOutcome::Built(built))
    }
}

/// A source with what the job has looked up so far: each mailbox's UIDVALIDITY, and
/// the last message's summary (RFC 4469's examples take several parts of one message
/// in a row).
struct Reader<'a, S: PartSource> {
    source: &'a mut S,
    uidvalidities: Vec<(UrlMailbox, Option<u32>)>,
    summary: Option<(UrlMailbox, u32, MessageSummary)>,
}

impl<S: PartSource> Reader<'_, S> {
    /// The octets `part` names, at most `room` of them.
    fn part(&mut self, part: &PartRef, room: u64) -> Result<Result<Vec<u8>, Refusal>, S::Error> {
        let known = self
            .uidvalidities
            .iter()
            .find(|(mailbox, _)| *mailbox == part.mailbox)
            .map(|(_, uidvalidity)| *uidvalidity);
        let uidvalidity = match known {
            Some(uidvalidity) => uidvalidity,
            None => {
                let uidvalidity = self.source.uidvalidity(&part.mailbox)?;
                self.uidvalidities.push((part.mailbox.clone(), uidvalidity));
                uidvalidity
            }
        };
        let Some(uidvalidity) = uidvalidity else {
            return Ok(Err(Refusal::Bad(NO_MAILBOX)));
        };
        // RFC 5092 §5: a stale URL is as if its mailbox did not exist.
        if part.uidvalidity.is_some_and(|wanted| wanted != uidvalidity) {
            return Ok(Err(Refusal::Bad(STALE)));
        }
        let cached = matches!(&self.summary, Some((mailbox, uid, _)) if *mailbox == part.mailbox && *uid == part.uid);
        if !cached {
            self.summary = match self.source.summary(&part.mailbox, part.uid)? {
                Some(summary) => Some((part.mailbox.clone(), part.uid, summary)),
                None => return Ok(Err(Refusal::Bad(NO_MESSAGE))),
            };
        }
        let Some((_, _, summary)) = &self.summary else {
            return Ok(Err(Refusal::Bad(NO_MESSAGE)));
        };
        // HEADER.FIELDS picks lines of the header: read the header, then pick.
        let (wanted, pick) = match &part.section.text {
            Some(SectionText::HeaderFields(names)) => (SectionPart::Header, Some((names, false))),
            Some(SectionText::HeaderFieldsNot(names)) => (SectionPart::Header, Some((names, true))),
            text => (crate::fetch::mime_part(text), None),
        };
        let Some((start, end)) = portico_mime::section_range(summary, &part.section.part, &wanted)
        else {
            return Ok(Err(Refusal::Bad(NO_SECTION)));
        };
        let (start, len) = (start as u64, end.saturating_sub(start) as u64);
        let Some((names, exclude)) = pick else {
            // A slice of the stored message: only its window is read.
            let (skip, len) = part.partial.map_or((0, len), |p| p.window(len));
            if len > room {
                return Ok(Err(Refusal::TooBig));
            }
            return self.read(part, start + skip, len);
        };
        let header = match self.read(part, start, len)? {
            Ok(header) => header,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut fields = portico_mime::header_fields(&header, names, exclude);
        if let Some(partial) = part.partial {
            // The window lies within `fields`, a buffer in memory: both fit a usize.
            let (skip, len) = partial.window(fields.len() as u64);
            fields.truncate((skip + len) as usize);
            fields.drain(..skip as usize);
        }
        if fields.len() as u64 > room {
            return Ok(Err(Refusal::TooBig));
        }
        Ok(Ok(fields))
    }

    fn read(
        &mut self,
        part: &PartRef,
        start: u64,
        len: u64,
    ) -> Result<Result<Vec<u8>, Refusal>, S::Error> {
        if len == 0 {
            return Ok(Ok(Vec::new()));
        }
        Ok(self
            .source
            .read(&part.mailbox, part.uid, start, len)?
            .ok_or(Refusal::Bad(NO_MESSAGE)))
    }
}

/// A source for a job that reads nothing ([`CatenateJob::reads_store`] is false): the
/// session runs such a job itself. Were it asked, it would know no mailbox.
pub(crate) struct NoStore;

impl PartSource for NoStore {
    type Error = std::convert::Infallible;

    fn uidvalidity(&mut self, _: &UrlMailbox) -> Result<Option<u32>, Self::Error> {
        Ok(None)
    }

    fn summary(&mut self, _: &UrlMailbox, _: u32) -> Result<Option<MessageSummary>, Self::Error> {
        Ok(None)
    }

    fn read(
        &mut self,
        _: &UrlMailbox,
        _: u32,
        _: u64,
        _: u64,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: a@example.com\r\n\
        Subject: parts\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\
        \r\n\
        --b\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        first part\r\n\
        --b\r\n\
        Content-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: binary\r\n\
        \r\n\
        \0\x01\xff binary\r\n\
        --b--\r\n";

    /// One folder, "INBOX" (UIDVALIDITY 7, also the selected one as folder 1), with
    /// RAW as UID 3; counts the lookups.
    #[derive(Default)]
    struct Fake {
        uidvalidity_calls: usize,
        summary_calls: usize,
        reads: Vec<(u64, u64)>,
    }

    fn known(mailbox: &UrlMailbox) -> bool {
        matches!(mailbox, UrlMailbox::Named(name) if name == "INBOX")
            || *mailbox == UrlMailbox::Selected(FolderId(1))
    }

    impl PartSource for Fake {
        type Error = ();

        fn uidvalidity(&mut self, mailbox: &UrlMailbox) -> Result<Option<u32>, ()> {
            self.uidvalidity_calls += 1;
            Ok(known(mailbox).then_some(7))
        }

        fn summary(
            &mut self,
            mailbox: &UrlMailbox,
            uid: u32,
        ) -> Result<Option<MessageSummary>, ()> {
            self.summary_calls += 1;
            Ok((known(mailbox) && uid == 3).then(|| portico_mime::summarize(RAW)))
        }

        fn read(
            &mut self,
            mailbox: &UrlMailbox,
            uid: u32,
            start: u64,
            len: u64,
        ) -> Result<Option<Vec<u8>>, ()> {
            self.reads.push((start, len));
            assert!(known(mailbox) && uid == 3);
            Ok(Some(RAW[start as usize..(start + len) as usize].to_vec()))
        }
    }

    fn part(url: &str) -> Piece {
        let parsed = crate::url::parse(url.as_bytes()).expect("valid URL");
        Piece::Part(PartRef {
            shown: url.to_string(),
            mailbox: match parsed.mailbox {
                Some(name) => UrlMailbox::Named(name),
                None => UrlMailbox::Selected(FolderId(1)),
            },
            uidvalidity: parsed.uidvalidity,
            uid: parsed.uid,
            section: parsed.section,
            partial: parsed.partial,
        })
    }

    fn text(bytes: &[u8]) -> Piece {
        Piece::Text(bytes.to_vec())
    }

    fn run(messages: Vec<Vec<Piece>>, limit: u64) -> (CatenateOutcome, Fake) {
        run_within(messages, limit, u64::MAX)
    }

    fn run_within(
        messages: Vec<Vec<Piece>>,
        limit: u64,
        total_limit: u64,
    ) -> (CatenateOutcome, Fake) {
        let mut fake = Fake::default();
        let outcome = CatenateJob {
            messages,
            limit,
            total_limit,
        }
        .run(&mut fake)
        .expect("the fake never fails");
        (outcome, fake)
    }

    fn bad(url: &str, why: &str) -> CatenateOutcome {
        CatenateOutcome::BadUrl(BadUrl {
            shown: url.to_string(),
            why: why.to_string(),
        })
    }

    #[test]
    fn sections_are_the_octets_fetch_gives() {
        let summary = portico_mime::summarize(RAW);
        let mime = |path: &[u32], section| {
            portico_mime::section(RAW, &summary, path, &section)
                .expect("section")
                .into_owned()
        };
        let (outcome, fake) = run(
            vec![vec![
                part("/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=HEADER"),
                text(b"<"),
                part(";UID=3/;SECTION=2"),
                text(b">"),
                part("/inbox/;UID=3/;SECTION=1.MIME"),
                part("/INBOX/;UID=3/;SECTION=HEADER.FIELDS%20(Subject)/;PARTIAL=0.8"),
                part("/INBOX/;UID=3/;PARTIAL=6.13"),
            ]],
            1000,
        );
        let mut expected = mime(&[], SectionPart::Header);
        expected.push(b'<');
        expected.extend(mime(&[2], SectionPart::Full));
        expected.push(b'>');
        expected.extend(mime(&[1], SectionPart::Mime));
        expected.extend_from_slice(b"Subject:");
        expected.extend_from_slice(b"a@example.com");
        assert_eq!(outcome, CatenateOutcome::Built(vec![expected]));
        // NULs and 8-bit octets come through unchanged.
        assert!(
            matches!(&outcome, CatenateOutcome::Built(m) if m[0].windows(3).any(|w| w == b"\0\x01\xff"))
        );
        // Each mailbox's UIDVALIDITY once ("INBOX" and the selected one), the summary
        // once per run of one message; only the ranges asked for are read.
        assert_eq!((fake.uidvalidity_calls, fake.summary_calls), (2, 3));
        assert_eq!(fake.reads.last(), Some(&(6, 13)));
    }

    #[test]
    fn whole_messages_and_multiappend() {
        let (outcome, fake) = run(
            vec![
                vec![text(b"X-Note: 1\r\n"), part(";UID=3")],
                vec![text(b"second")],
            ],
            1000,
        );
        let mut first = b"X-Note: 1\r\n".to_vec();
        first.extend_from_slice(RAW);
        assert_eq!(
            outcome,
            CatenateOutcome::Built(vec![first, b"second".to_vec()])
        );
        assert_eq!(fake.reads, vec![(0, RAW.len() as u64)]);
    }

    #[test]
    fn the_first_url_at_fault_is_reported() {
        let cases = [
            ("/Sent/;UID=3", "Mailbox does not exist"),
            ("/INBOX;UIDVALIDITY=8/;UID=3", STALE),
            ("/INBOX/;UID=4", NO_MESSAGE),
            ("/INBOX/;UID=3/;SECTION=3", NO_SECTION),
            ("/INBOX/;UID=3/;SECTION=1.TEXT", NO_SECTION),
        ];
        for (url, why) in cases {
            let later = Piece::Bad(BadUrl {
                shown: "later".into(),
                why: "bad".into(),
            });
            let (outcome, _) = run(vec![vec![text(b"x"), part(url)], vec![later]], 1000);
            assert_eq!(outcome, bad(url, why), "{url}");
        }
        // A URL refused before reading fails the job where it stands.
        let early = Piece::Bad(BadUrl {
            shown: "early".into(),
            why: "bad".into(),
        });
        let job = CatenateJob {
            messages: vec![vec![text(b"x"), early, part(";UID=4")]],
            limit: 1000,
            total_limit: 1000,
        };
        assert!(!job.reads_store());
        let (outcome, fake) = run(job.messages, 1000);
        assert_eq!(outcome, bad("early", "bad"));
        assert_eq!(fake.uidvalidity_calls, 0);
    }

    #[test]
    fn the_limit_holds_for_each_message_and_nothing_big_is_read() {
        let size = RAW.len() as u64;
        let (outcome, fake) = run(vec![vec![text(b"ab"), part(";UID=3")]], size + 1);
        assert_eq!(outcome, CatenateOutcome::TooBig);
        assert!(fake.reads.is_empty(), "refused before reading");
        let (outcome, _) = run(vec![vec![text(b"a"), part(";UID=3")]], size + 1);
        assert!(matches!(outcome, CatenateOutcome::Built(_)));
        let (outcome, _) = run(vec![vec![text(b"abc")], vec![text(b"abcd")]], 3);
        assert_eq!(outcome, CatenateOutcome::TooBig);
        // All the messages together have a limit too, checked before reading.
        let many = || (0..3).map(|_| vec![part(";UID=3")]).collect();
        let (outcome, _) = run_within(many(), size, 3 * size);
        assert!(matches!(outcome, CatenateOutcome::Built(m) if m.len() == 3));
        let (outcome, fake) = run_within(many(), size, 3 * size - 1);
        assert_eq!(outcome, CatenateOutcome::TooBigTogether);
        assert_eq!(fake.reads.len(), 2);
        let (outcome, _) = run_within(vec![vec![text(b"ab")], vec![text(b"cd")]], 2, 3);
        assert_eq!(outcome, CatenateOutcome::TooBigTogether);
        // An empty window reads nothing and adds nothing.
        let (outcome, fake) = run(vec![vec![part(";UID=3/;PARTIAL=100000")]], 10);
        assert_eq!(outcome, CatenateOutcome::Built(vec![Vec::new()]));
        assert!(fake.reads.is_empty());
    }
}
