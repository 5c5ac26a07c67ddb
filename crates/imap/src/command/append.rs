//! APPEND (RFC 9051 §6.3.12).

use crate::command::*;
use crate::request::*;
use crate::session::*;

impl Session {
    pub(crate) fn append(
        &mut self,
        tag: String,
        raw: &[u8],
        flags: Vec<String>,
        date: Option<DateTime>,
        message: Vec<u8>,
    ) {
        let Some(folder) = self.mailbox_name(&tag, raw) else {
            return;
        };
        if message.len() as u64 > self.config.append_limit {
            tagged(
                &mut self.out,
                &tag,
                "NO",
                "[TOOBIG] Message exceeds APPENDLIMIT",
            );
            return;
        }
        if let Err(why) = settable_flags(&flags, "set") {
            return self.bad(&tag, &why);
        }
        self.request(
            Running::Append { tag },
            Request::Append {
                folder,
                flags,
                date,
                message,
            },
        );
    }
}
