//! METADATA (RFC 5464): GETMETADATA and SETMETADATA on a folder's or the server's
//! annotations. The host keeps them; the session checks entry names (the parser),
//! sizes and what a user may set, and picks what GETMETADATA's options ask for.

use crate::command::*;
use crate::request::*;
use crate::response::{Code, Data, Status};
use crate::session::*;

/// Largest annotation value a client may set (`[METADATA MAXSIZE n]`); RFC 5464 §4.1
/// asks for at least 1024.
pub const MAX_METADATA_VALUE: usize = 16 * 1024;

/// A GETMETADATA waiting for the folder's annotations.
pub(crate) struct MetadataJob {
    pub(crate) tag: String,
    pub(crate) folder: String,
    pub(crate) max_size: Option<u64>,
    pub(crate) depth: MetadataDepth,
    pub(crate) entries: Vec<String>,
}

impl Session {
    /// The folder a METADATA command names: `""` is the server.
    fn metadata_folder(&mut self, tag: &str, raw: &[u8]) -> Option<String> {
        if raw.is_empty() {
            Some(String::new())
        } else {
            self.mailbox_name(tag, raw)
        }
    }

    pub(crate) fn getmetadata(&mut self, tag: String, body: CommandBody) {
        let CommandBody::GetMetadata {
            mailbox,
            max_size,
            depth,
            entries,
        } = body
        else {
            return;
        };
        let Some(folder) = self.metadata_folder(&tag, &mailbox) else {
            return;
        };
        let job = MetadataJob {
            tag,
            folder: folder.clone(),
            max_size,
            depth,
            entries,
        };
        self.request(Running::GetMetadata(job), Request::GetMetadata { folder });
    }

    pub(crate) fn setmetadata(&mut self, tag: String, body: CommandBody) {
        let CommandBody::SetMetadata { mailbox, entries } = body else {
            return;
        };
        let Some(folder) = self.metadata_folder(&tag, &mailbox) else {
            return;
        };
        // RFC 5464 §3.3: the server's shared annotations are the administrator's.
        if folder.is_empty() && entries.iter().any(|(name, _)| name.starts_with("/shared")) {
            let status = Status::no("The server's shared annotations are read-only");
            return self.complete(&tag, status.code(Code::NoPerm));
        }
        if entries
            .iter()
            .any(|(_, value)| value.as_ref().is_some_and(|v| v.len() > MAX_METADATA_VALUE))
        {
            let code = Code::MetadataMaxSize(MAX_METADATA_VALUE as u64);
            return self.complete(&tag, Status::no("Annotation too large").code(code));
        }
        self.request(
            Running::Simple {
                tag,
                command: "SETMETADATA",
            },
            Request::SetMetadata {
                folder,
                changes: entries,
            },
        );
    }

    /// GETMETADATA's answer (RFC 5464 §4.2): each named entry and the ones below it
    /// DEPTH reaches (NIL when none of those has a value), those over MAXSIZE left out
    /// and the largest of them told in `[METADATA LONGENTRIES n]`.
    pub(crate) fn metadata_reply(
        &mut self,
        job: MetadataJob,
        result: Result<Vec<(String, Vec<u8>)>, Fault>,
    ) {
        let all = match result {
            Ok(all) => all,
            Err(fault) => return self.finish(&job.tag, fault_status(&fault, false), true),
        };
        let mut picked: Vec<(&str, Option<&[u8]>)> = Vec::new();
        let mut longest = 0usize;
        for wanted in &job.entries {
            let below = format!("{wanted}/");
            // Whether anything exists for this entry: if not, it is answered NIL.
            let mut found = false;
            for (name, value) in &all {
                let matches = if name == wanted {
                    true
                } else if let Some(rest) = name.strip_prefix(&below) {
                    match job.depth {
                        MetadataDepth::Zero => false,
                        MetadataDepth::One => !rest.contains('/'),
                        MetadataDepth::Infinity => true,
                    }
                } else {
                    false
                };
                if !matches {
                    continue;
                }
                found = true;
                if picked.iter().any(|(n, _)| n == name) {
                    continue;
                }
                if job.max_size.is_some_and(|max| value.len() as u64 > max) {
                    longest = longest.max(value.len());
                    continue;
                }
                picked.push((name.as_str(), Some(value.as_slice())));
            }
            if !found && !picked.iter().any(|(n, _)| n == wanted) {
                picked.push((wanted.as_str(), None));
            }
        }
        if !picked.is_empty() {
            self.data(Data::Metadata {
                mailbox: &job.folder,
                entries: &picked,
            });
        }
        let mut status = Status::ok("GETMETADATA completed");
        if longest > 0 {
            status = status.code(Code::MetadataLongEntries(longest as u64));
        }
        self.finish(&job.tag, status, true);
    }
}
