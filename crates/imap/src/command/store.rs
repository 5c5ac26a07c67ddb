//! STORE and its answer: the FETCH responses it owes and MODIFIED (RFC 7162 §3.1.3).

use crate::command::*;
use crate::request::*;
use crate::response::{Code, Data, Status};
use crate::session::*;

impl Session {
    /// STORE and UID STORE (RFC 9051 §6.4.6), with UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub(crate) fn store(&mut self, tag: String, body: CommandBody) {
        let (
            Some((folder, _)),
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            },
        ) = (self.selected_folder(), body)
        else {
            return;
        };
        if let Err(why) = settable_flags(&flags, "stored") {
            return self.bad(&tag, &why);
        }
        if uid {
            self.announce(true);
        }
        let targets = match self.resolve(&set, uid) {
            Ok(targets) => targets,
            Err(why) => return self.bad(&tag, why),
        };
        let uids: Vec<u32> = targets.iter().map(|(_, uid)| *uid).collect();
        if unchanged_since.is_some() {
            // RFC 7162 §3.1: a CONDSTORE-enabling command.
            self.enable_condstore();
        }
        if uids.is_empty() {
            let command = if uid { "UID STORE" } else { "STORE" };
            return self.finish(&tag, Status::ok(format!("{command} completed")), uid);
        }
        self.request(
            Running::Store {
                tag,
                uid,
                silent,
                unchanged_since,
            },
            Request::StoreFlags {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            },
        );
    }

    pub(crate) fn store_reply(
        &mut self,
        tag: String,
        uid: bool,
        silent: bool,
        unchanged_since: Option<u64>,
        result: Result<FlagsStored, Fault>,
    ) {
        let stored = match result {
            Ok(stored) => stored,
            Err(fault) => return self.finish(&tag, fault_status(&fault, false), uid),
        };
        let recent_style = !self.enabled.rev2;
        let with_modseq = self.enabled.condstore || unchanged_since.is_some();
        // A keyword this STORE brought into the folder is announced before its FETCH.
        self.announce_keywords(
            stored
                .current
                .iter()
                .flat_map(|(_, flags, _)| flags.iter().map(String::as_str)),
        );
        if let Some(view) = self.selected_view_mut() {
            for (message_uid, _, modseq) in &stored.current {
                if !stored.modified.contains(message_uid) {
                    view.shown(*message_uid, *modseq);
                }
            }
        }
        let Some(view) = self.selected_view() else {
            return;
        };
        let mut out = Vec::new();
        // RFC 7162 §3.1.3: messages refused by UNCHANGEDSINCE get no FETCH; with .SILENT
        // a conditional STORE still reports the new MODSEQ of what it changed.
        let report_modseq_only = silent && unchanged_since.is_some();
        if !silent || report_modseq_only {
            for (message_uid, flags, modseq) in &stored.current {
                if stored.modified.contains(message_uid) {
                    continue;
                }
                let Some(seq) = view.seq_of(*message_uid) else {
                    continue;
                };
                let mut flags = flags.clone();
                if recent_style && view.is_recent(*message_uid) {
                    flags.push("\\Recent".into());
                }
                let data = Data::FlagFetch {
                    seq,
                    uid: uid.then_some(*message_uid),
                    flags: (!report_modseq_only).then_some(&flags),
                    modseq: (with_modseq || report_modseq_only).then_some(*modseq),
                };
                data.encode(&mut out, false);
            }
        }
        let modified: Vec<u32> = if uid {
            stored.modified.clone()
        } else {
            stored
                .modified
                .iter()
                .filter_map(|u| view.seq_of(*u))
                .collect()
        };
        self.out.extend_from_slice(&out);
        self.contexts_see_flags(&stored.current, &stored.modified);
        let command = if uid { "UID STORE" } else { "STORE" };
        if modified.is_empty() {
            self.finish(&tag, Status::ok(format!("{command} completed")), uid);
        } else {
            let status = Status::ok(format!("Conditional {command} failed"));
            self.finish(&tag, status.code(Code::Modified(modified)), uid);
        }
    }
}
