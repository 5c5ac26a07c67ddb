//! EXPUNGE, UID EXPUNGE and CLOSE, and their answer: the expunges announced as the
//! client's style asks (EXPUNGE or VANISHED).

use crate::command::*;
use crate::request::*;
use crate::response::Status;
use crate::session::*;

impl Session {
    /// EXPUNGE, UID EXPUNGE (RFC 4315) and CLOSE (which expunges silently).
    pub(crate) fn expunge(&mut self, tag: String, body: CommandBody) {
        let Some((folder, read_only)) = self.selected_folder() else {
            return;
        };
        match body {
            CommandBody::Close => {
                if read_only {
                    self.actions
                        .push_back(Action::Request(0, Request::Deselect { folder }));
                    self.state = State::Authenticated;
                    self.complete(&tag, Status::ok("CLOSE completed"));
                } else {
                    self.request(
                        Running::Expunge {
                            tag,
                            closing: true,
                            uid: false,
                        },
                        Request::Expunge { folder, uids: None },
                    );
                }
            }
            CommandBody::Expunge => self.request(
                Running::Expunge {
                    tag,
                    closing: false,
                    uid: false,
                },
                Request::Expunge { folder, uids: None },
            ),
            CommandBody::UidExpunge { set } => {
                self.announce(true);
                let uids = self.resolve(&set, true).unwrap_or_default();
                let uids = uids.into_iter().map(|(_, uid)| uid).collect();
                self.request(
                    Running::Expunge {
                        tag,
                        closing: false,
                        uid: true,
                    },
                    Request::Expunge {
                        folder,
                        uids: Some(uids),
                    },
                );
            }
            _ => {}
        }
    }

    pub(crate) fn expunge_reply(
        &mut self,
        tag: String,
        closing: bool,
        uid: bool,
        result: Result<Vec<u32>, Fault>,
    ) {
        let removed = match result {
            Ok(removed) => removed,
            Err(fault) => return self.finish(&tag, fault_status(&fault, false), true),
        };
        if closing {
            // CLOSE expunges silently (RFC 9051 §6.4.1).
            if let State::Selected(selected) = &self.state {
                let folder = selected.id;
                self.actions
                    .push_back(Action::Request(0, Request::Deselect { folder }));
            }
            self.state = State::Authenticated;
            return self.complete(&tag, Status::ok("CLOSE completed"));
        }
        let vanished = self.enabled.qresync;
        if let State::Selected(selected) = &mut self.state {
            selected.expunge_now(&mut self.out, &removed, vanished);
        }
        let command = if uid { "UID EXPUNGE" } else { "EXPUNGE" };
        self.finish(&tag, Status::ok(format!("{command} completed")), true);
    }
}
