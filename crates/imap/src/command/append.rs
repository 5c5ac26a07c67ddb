//! APPEND (RFC 9051 §6.3.12), with several messages at once (MULTIAPPEND, RFC 3502),
//! each given whole or put together from text and stored parts (CATENATE, RFC 4469).
//!
//! A CATENATE message is built first ([`crate::catenate`]: the host reads the parts its
//! URLs name), then the APPEND goes on as for literals; a URL or a size that fails
//! refuses the whole command, so a MULTIAPPEND stores all its messages or none.

use crate::catenate::{BadUrl, CatenateJob, CatenateOutcome, NoStore, PartRef, Piece, UrlMailbox};
use crate::command::*;
use crate::request::*;
use crate::response::{Code, Status};
use crate::session::*;
use crate::url;

/// `NO [TOOBIG]` of a message over APPENDLIMIT (RFC 7889 §4, RFC 4469 §4.2).
const TOO_BIG: &str = "Message exceeds APPENDLIMIT";

/// `NO [TOOBIG]` of a MULTIAPPEND whose messages together pass what one command may
/// carry ([`CatenateJob::total_limit`]).
const TOO_BIG_TOGETHER: &str = "The messages of this APPEND together exceed the server's limit";

/// `[BADURL …]` text of a `;UID=n` URL while no mailbox is selected.
const NOTHING_SELECTED: &str = "URL is relative to the selected mailbox, and none is";

impl Session {
    pub(crate) fn append(&mut self, tag: String, raw: &[u8], messages: Vec<AppendMessage>) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        // RFC 3502 §3: one message refused refuses them all.
        for item in &messages {
            if let AppendData::Literal(message) = &item.data
                && message.len() as u64 > self.config.append_limit
            {
                return self.complete(&tag, Status::no(TOO_BIG).code(Code::TooBig));
            }
            if let Err(why) = settable_flags(&item.flags, "set") {
                return self.bad(&tag, &why);
            }
        }
        let mut options = Vec::with_capacity(messages.len());
        let mut pieces = Vec::with_capacity(messages.len());
        for item in messages {
            options.push((item.flags, item.date));
            pieces.push(match item.data {
                AppendData::Literal(message) => vec![Piece::Text(message)],
                AppendData::Catenate(parts) => parts.into_iter().map(|p| self.piece(p)).collect(),
            });
        }
        let job = CatenateJob {
            messages: pieces,
            limit: self.config.append_limit,
            total_limit: Self::limits(&self.config).max_command as u64,
        };
        if job.reads_store() {
            self.request(
                Running::Catenate {
                    tag,
                    folder,
                    options,
                },
                Request::Catenate { job },
            );
        } else {
            // Only literals and text, or a URL refused before any other: nothing to
            // read, and each literal is moved, not copied.
            let outcome = match job.run(&mut NoStore) {
                Ok(outcome) => outcome,
                Err(never) => match never {},
            };
            self.catenated(tag, folder, options, Ok(outcome));
        }
    }

    /// A CATENATE part as the job takes it: a URL read and resolved against the
    /// session (RFC 4469 §3: relative to the selected mailbox once there is one).
    fn piece(&self, part: CatPart) -> Piece {
        let raw = match part {
            CatPart::Text(text) => return Piece::Text(text),
            CatPart::Url(raw) => raw,
        };
        let shown = url::response_text(&raw);
        let parsed = match url::parse(&raw) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Piece::Bad(BadUrl {
                    shown,
                    why: error.to_string(),
                });
            }
        };
        let mailbox = match (parsed.mailbox, self.selected_folder()) {
            (Some(name), _) => UrlMailbox::Named(name),
            (None, Some((folder, _))) => UrlMailbox::Selected(folder),
            (None, None) => {
                return Piece::Bad(BadUrl {
                    shown,
                    why: NOTHING_SELECTED.to_string(),
                });
            }
        };
        Piece::Part(PartRef {
            shown,
            mailbox,
            uidvalidity: parsed.uidvalidity,
            uid: parsed.uid,
            section: parsed.section,
            partial: parsed.partial,
        })
    }

    /// The messages built (then appended), or why not.
    pub(crate) fn catenated(
        &mut self,
        tag: String,
        folder: String,
        options: Vec<(Vec<String>, Option<DateTime>)>,
        result: Result<CatenateOutcome, Fault>,
    ) {
        match result {
            Ok(CatenateOutcome::Built(messages)) => {
                let messages = options
                    .into_iter()
                    .zip(messages)
                    .map(|((flags, date), message)| AppendItem {
                        flags,
                        date,
                        message,
                    })
                    .collect();
                self.request(
                    Running::Append { tag },
                    Request::Append { folder, messages },
                );
            }
            // RFC 4469 §4.1, with the URL bare (erratum 4046).
            Ok(CatenateOutcome::BadUrl(bad)) => {
                let status = Status::no(bad.why).code(Code::BadUrl(bad.shown));
                self.finish(&tag, status, true);
            }
            Ok(CatenateOutcome::TooBig) => {
                self.finish(&tag, Status::no(TOO_BIG).code(Code::TooBig), true)
            }
            Ok(CatenateOutcome::TooBigTogether) => {
                let status = Status::no(TOO_BIG_TOGETHER).code(Code::TooBig);
                self.finish(&tag, status, true)
            }
            Err(fault) => self.finish(&tag, fault_status(&fault, false), true),
        }
    }
}
