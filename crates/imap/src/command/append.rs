//! APPEND (RFC 9051 §6.3.12), with several messages at once (MULTIAPPEND, RFC 3502).

use crate::command::*;
use crate::request::*;
use crate::session::*;

impl Session {
    pub(crate) fn append(&mut self, tag: String, raw: &[u8], messages: Vec<AppendItem>) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        // RFC 3502 §3: one message refused refuses them all.
        for item in &messages {
            if item.message.len() as u64 > self.config.append_limit {
                tagged(
                    &mut self.out,
                    &tag,
                    "NO",
                    "[TOOBIG] Message exceeds APPENDLIMIT",
                );
                return;
            }
            if let Err(why) = settable_flags(&item.flags, "set") {
                return self.bad(&tag, &why);
            }
        }
        self.request(
            Running::Append { tag },
            Request::Append { folder, messages },
        );
    }
}
