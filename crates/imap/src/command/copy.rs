//! COPY and MOVE (RFC 6851), with COPYUID (RFC 4315).

use crate::command::*;
use crate::request::*;
use crate::response::{Code, Status};
use crate::session::*;

impl Session {
    pub(crate) fn copy(
        &mut self,
        tag: String,
        uid: bool,
        set: &SequenceSet,
        raw: &[u8],
        moving: bool,
    ) {
        let Some(destination) = self.mailbox_name(&tag, raw) else {
            return;
        };
        let Some((folder, _)) = self.selected_folder() else {
            return;
        };
        if uid {
            self.announce(true);
        }
        let targets = match self.resolve(set, uid) {
            Ok(targets) => targets,
            Err(why) => return self.bad(&tag, why),
        };
        let command = if moving { "MOVE" } else { "COPY" };
        if targets.is_empty() {
            let status = Status::ok(format!("{command} completed, nothing to do"));
            return self.finish(&tag, status, uid);
        }
        let uids = targets.into_iter().map(|(_, uid)| uid).collect();
        self.request(
            Running::Copy { tag, moving, uid },
            Request::Copy {
                folder,
                uids,
                destination,
                moving,
            },
        );
    }

    pub(crate) fn copy_reply(
        &mut self,
        tag: String,
        moving: bool,
        uid: bool,
        result: Result<Copied, Fault>,
    ) {
        let copied = match result {
            Ok(copied) => copied,
            Err(fault) => return self.finish(&tag, fault_status(&fault, true), uid),
        };
        let command = if moving { "MOVE" } else { "COPY" };
        let sources: Vec<u32> = copied.pairs.iter().map(|(src, _)| *src).collect();
        let targets: Vec<u32> = copied.pairs.iter().map(|(_, dst)| *dst).collect();
        let code = (!copied.pairs.is_empty()).then(|| Code::CopyUid {
            uidvalidity: copied.uidvalidity,
            source: sources.clone(),
            copies: targets,
        });
        if moving {
            // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
            if let Some(code) = code {
                self.untagged(Status::ok("Moved").code(code));
            }
            let vanished = self.enabled.qresync;
            if let State::Selected(selected) = &mut self.state {
                selected.expunge_now(&mut self.out, &sources, vanished);
            }
            self.finish(&tag, Status::ok(format!("{command} completed")), true);
        } else {
            let mut status = Status::ok(format!("{command} completed"));
            status.code = code;
            self.finish(&tag, status, uid);
        }
    }
}
