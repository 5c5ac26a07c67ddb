//! RFC 9208 QUOTA with the STORAGE resource: GETQUOTAROOT, GETQUOTA and SETQUOTA.
//!
//! Every account has one quota root, `""`, governing all its folders; it carries the
//! STORAGE limit an administrator set (`portico user set --quota`), or no limit at all
//! (RFC 9208 §3.2: a root has zero or more resource limits). Users cannot change it, so
//! QUOTASET is not advertised and SETQUOTA is refused with `NO [NOPERM]`.
//!
//! Wire forms (RFC 9208 §7): `quotaroot-response = "QUOTAROOT" SP mailbox *(SP
//! quota-root-name)` and `quota-response = "QUOTA" SP quota-root-name SP quota-list`,
//! where `quota-list` holds at least one resource: a root without a limit gets no
//! QUOTA response. STORAGE counts units of 1024 octets (§5.1): the usage is rounded up
//! and the limit down, so a client is never told of more room than there is.

use crate::request::*;
use crate::response::{Code, Data, Status};
use crate::session::*;

/// The name of an account's one quota root.
const ROOT: &str = "";

/// Octets in 1024-octet units, rounded up (usage).
fn kib_up(octets: u64) -> u64 {
    octets.div_ceil(1024)
}

impl Session {
    /// RFC 9208 §4.1.2: the quota roots of `raw` (which must exist) and their usage.
    pub(crate) fn get_quota_root(&mut self, tag: String, raw: &[u8]) {
        let Some(name) = self.mailbox_name(&tag, raw) else {
            return;
        };
        self.request(
            Running::Quota {
                tag,
                mailbox: Some(name.clone()),
            },
            Request::Quota { folder: Some(name) },
        );
    }

    /// RFC 9208 §4.1.1: the usage and limits of a quota root; only `""` exists.
    pub(crate) fn get_quota(&mut self, tag: String, root: &[u8]) {
        if root != ROOT.as_bytes() {
            let status = Status::no("No such quota root").code(Code::NonExistent);
            return self.finish(&tag, status, true);
        }
        self.request(
            Running::Quota { tag, mailbox: None },
            Request::Quota { folder: None },
        );
    }

    /// RFC 9208 §4.1.3: storage limits are set by the administrator only.
    pub(crate) fn set_quota(&mut self, tag: String) {
        let status = Status::no("Storage limits are set by the administrator");
        self.finish(&tag, status.code(Code::NoPerm), true);
    }

    pub(crate) fn quota_reply(
        &mut self,
        tag: String,
        mailbox: Option<String>,
        result: Result<QuotaUsage, Fault>,
    ) {
        let command = if mailbox.is_some() {
            "GETQUOTAROOT"
        } else {
            "GETQUOTA"
        };
        let usage = match result {
            Ok(usage) => usage,
            Err(fault) => return self.finish(&tag, fault_status(&fault, false), true),
        };
        if let Some(name) = mailbox {
            self.data(Data::QuotaRoot {
                mailbox: &name,
                roots: &[ROOT],
            });
        }
        if let Some(limit) = usage.limit {
            self.data(Data::Quota {
                root: ROOT,
                used_kib: kib_up(usage.used),
                limit_kib: limit / 1024,
            });
        }
        self.finish(&tag, Status::ok(format!("{command} completed")), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, ImapConfig, Input};

    /// Runs `input` on a signed-in session whose host answers quota requests with
    /// `usage` (or NONEXISTENT for a folder named `Nowhere`); returns the output and
    /// the requests made.
    fn run(input: &[u8], usage: QuotaUsage, utf8: bool) -> (String, Vec<Request>) {
        let mut session = Session::new(ImapConfig::default(), true);
        session.handle(Input::Bytes(b"a LOGIN alice secret\r\n"));
        let mut requests = Vec::new();
        let mut out = Vec::new();
        let mut pending = vec![input.to_vec()];
        if utf8 {
            pending.insert(0, b"e ENABLE UTF8=ACCEPT\r\n".to_vec());
        }
        let mut first = true;
        loop {
            while let Some(action) = session.next_action() {
                match action {
                    Action::Write(bytes) if !first => out.extend(bytes),
                    Action::Request(id, Request::Login { .. }) => {
                        session.handle(Input::Reply(id, Reply::Login(Ok(()))))
                    }
                    Action::Request(id, request) => {
                        let reply = match &request {
                            Request::Quota { folder: Some(name) } if name == "Nowhere" => {
                                Err(Fault::NotFound)
                            }
                            _ => Ok(usage),
                        };
                        requests.push(request);
                        session.handle(Input::Reply(id, Reply::Quota(reply)));
                    }
                    _ => {}
                }
            }
            first = false;
            if pending.is_empty() {
                break;
            }
            let next = pending.remove(0);
            session.handle(Input::Bytes(&next));
        }
        (String::from_utf8(out).unwrap(), requests)
    }

    fn usage(used: u64, limit: Option<u64>) -> QuotaUsage {
        QuotaUsage { used, limit }
    }

    #[test]
    fn getquotaroot_names_the_root_and_its_storage_in_kib() {
        let (out, requests) = run(
            b"b GETQUOTAROOT inbox\r\n",
            usage(10 * 1024 + 1, Some(512 * 1024 + 1023)),
            false,
        );
        assert_eq!(
            out,
            "* QUOTAROOT \"INBOX\" \"\"\r\n\
             * QUOTA \"\" (STORAGE 11 512)\r\n\
             b OK GETQUOTAROOT completed\r\n"
        );
        assert_eq!(
            requests,
            [Request::Quota {
                folder: Some("INBOX".into())
            }]
        );
    }

    #[test]
    fn a_root_without_a_limit_gets_no_quota_response() {
        let (out, _) = run(b"b GETQUOTAROOT Sent\r\n", usage(5000, None), false);
        assert_eq!(
            out,
            "* QUOTAROOT \"Sent\" \"\"\r\nb OK GETQUOTAROOT completed\r\n"
        );
        let (out, _) = run(b"c GETQUOTA \"\"\r\n", usage(5000, None), false);
        assert_eq!(out, "c OK GETQUOTA completed\r\n");
    }

    #[test]
    fn getquota_knows_only_the_empty_root() {
        let (out, requests) = run(b"b GETQUOTA \"\"\r\n", usage(0, Some(2048)), false);
        assert_eq!(
            out,
            "* QUOTA \"\" (STORAGE 0 2)\r\nb OK GETQUOTA completed\r\n"
        );
        assert_eq!(requests, [Request::Quota { folder: None }]);
        let (out, requests) = run(b"c GETQUOTA INBOX\r\n", usage(0, Some(2048)), false);
        assert_eq!(out, "c NO [NONEXISTENT] No such quota root\r\n");
        assert!(requests.is_empty());
    }

    #[test]
    fn a_missing_mailbox_is_no_and_names_are_encoded_as_the_session_does() {
        let (out, _) = run(b"b GETQUOTAROOT Nowhere\r\n", usage(0, None), false);
        assert_eq!(out, "b NO [NONEXISTENT] Mailbox does not exist\r\n");
        let (out, requests) = run(
            b"c GETQUOTAROOT \"Caf&AOk-\"\r\n",
            usage(1, Some(1024)),
            false,
        );
        assert_eq!(
            out,
            "* QUOTAROOT \"Caf&AOk-\" \"\"\r\n\
             * QUOTA \"\" (STORAGE 1 1)\r\n\
             c OK GETQUOTAROOT completed\r\n"
        );
        assert_eq!(
            requests,
            [Request::Quota {
                folder: Some("Café".into())
            }]
        );
        let (out, _) = run(
            "c GETQUOTAROOT \"Café\"\r\n".as_bytes(),
            usage(0, None),
            true,
        );
        assert_eq!(
            out,
            "* ENABLED UTF8=ACCEPT\r\ne OK ENABLE completed\r\n\
             * QUOTAROOT \"Café\" \"\"\r\nc OK GETQUOTAROOT completed\r\n"
        );
    }

    #[test]
    fn setquota_is_refused_and_its_syntax_still_checked() {
        let (out, requests) = run(
            b"b SETQUOTA \"\" (STORAGE 512)\r\nc SETQUOTA \"\" ()\r\n\
              d SETQUOTA \"\" (STORAGE)\r\ne SETQUOTA \"\" STORAGE 1\r\n",
            usage(0, None),
            false,
        );
        assert_eq!(
            out,
            "b NO [NOPERM] Storage limits are set by the administrator\r\n\
             c NO [NOPERM] Storage limits are set by the administrator\r\n\
             d BAD Missing resource limit\r\n\
             e BAD Invalid resource limits\r\n"
        );
        assert!(requests.is_empty());
    }

    #[test]
    fn quota_commands_need_a_sign_in() {
        let mut session = Session::new(ImapConfig::default(), true);
        session.handle(Input::Bytes(b"a GETQUOTAROOT INBOX\r\nb GETQUOTA \"\"\r\n"));
        let mut out = Vec::new();
        while let Some(action) = session.next_action() {
            if let Action::Write(bytes) = action {
                out.extend(bytes);
            }
        }
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with(
                "a BAD Command not valid before authentication\r\n\
                 b BAD Command not valid before authentication\r\n"
            ),
            "{out}"
        );
    }
}
