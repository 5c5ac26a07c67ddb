//! Signing in and the commands around it: STARTTLS, LOGIN, AUTHENTICATE (SASL
//! PLAIN), ENABLE, COMPRESS, CAPABILITY and UNAUTHENTICATE.

use crate::reader::CommandReader;
use crate::request::*;
use crate::response::{self, Code, Data, Status};
use crate::session::*;
use portico_sasl::SaslError;

impl Session {
    pub(crate) fn starttls(&mut self, tag: String) {
        if self.tls {
            return self.bad(&tag, "TLS is already active");
        }
        if !self.config.tls_available {
            return self.bad(&tag, "STARTTLS is not available");
        }
        self.complete(&tag, Status::ok("Begin TLS negotiation now"));
        // RFC 9051 §6.2.1: anything pipelined after STARTTLS is discarded, not executed.
        self.reader = CommandReader::new(Self::preauth_limits(&self.config));
        let id = self.next_request;
        self.next_request += 1;
        self.flush();
        self.actions.push_back(Action::StartTls);
        self.running = Some((
            id,
            Running::Simple {
                tag,
                command: "STARTTLS",
            },
        ));
    }

    /// RFC 4978 §3, in the authenticated and selected states (before authentication
    /// the dispatch answers BAD). The OK is the last byte sent uncompressed.
    pub(crate) fn compress(&mut self, tag: String, mechanism: &str) {
        if self.compressed {
            // §3 lists BAD for a repeated COMPRESS but also requires COMPRESSIONACTIVE on
            // a NO for a mechanism already on; NO [COMPRESSIONACTIVE] is what Dovecot
            // answers, and it tells the client why.
            self.complete(
                &tag,
                Status::no("DEFLATE is active already").code(Code::CompressionActive),
            );
            return;
        }
        if !mechanism.eq_ignore_ascii_case("DEFLATE") {
            return self.bad(&tag, "Unknown compression mechanism, DEFLATE is supported");
        }
        self.finish(&tag, Status::ok("DEFLATE active"), true);
        // §3: the client must wait for this OK and then compress everything after the
        // command, so whatever it sent behind the command (it broke that rule) can
        // only be the start of its compressed stream: the host inflates it first.
        // INVARIANT: a command was just read, so no command is part-read.
        let unread = self.reader.take_unread().unwrap_or_default();
        self.compressed = true;
        self.flush();
        self.actions.push_back(Action::Compress { unread });
    }

    pub(crate) fn plaintext_allowed(&self) -> bool {
        self.tls || self.config.plaintext_login_without_tls
    }

    /// Refuses (and counts as a client error) a sign-in that would send a password in
    /// the clear where the configuration does not allow it.
    fn refused_without_tls(&mut self, tag: &str) -> bool {
        if self.plaintext_allowed() {
            return false;
        }
        self.complete(
            tag,
            Status::no("Plaintext authentication disallowed without TLS, use STARTTLS")
                .code(Code::PrivacyRequired),
        );
        self.count_bad();
        true
    }

    pub(crate) fn login(&mut self, tag: String, username: Vec<u8>, password: Vec<u8>) {
        if self.refused_without_tls(&tag) {
            return;
        }
        self.start_login(tag, username, password);
    }

    pub(crate) fn start_login(&mut self, tag: String, username: Vec<u8>, password: Vec<u8>) {
        let (Ok(username), Ok(password)) =
            (String::from_utf8(username), String::from_utf8(password))
        else {
            self.complete(
                &tag,
                Status::no("Authentication failed").code(Code::AuthenticationFailed),
            );
            return self.count_bad();
        };
        self.user = Some(username.clone());
        self.request(
            Running::Login { tag },
            Request::Login {
                username,
                password: Password(password),
            },
        );
    }

    pub(crate) fn authenticate(&mut self, tag: String, mechanism: &str, initial: Option<Vec<u8>>) {
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            self.complete(
                &tag,
                Status::no("Unsupported authentication mechanism").code(Code::Cannot),
            );
            return self.count_bad();
        }
        if self.refused_without_tls(&tag) {
            return;
        }
        match initial {
            Some(response) => self.sasl_plain(tag, &response),
            None => {
                response::continuation(&mut self.out, "");
                self.reader.set_line_mode(true);
                self.line_mode = LineMode::SaslResponse { tag };
            }
        }
    }

    /// RFC 4616 PLAIN: authzid NUL authcid NUL passwd, base64.
    pub(crate) fn sasl_plain(&mut self, tag: String, response: &[u8]) {
        // Well-formed base64 that is not `authzid NUL authcid NUL passwd` is a failed
        // authentication (NO), not a protocol error: RFC 9051 §6.2.2 keeps BAD for
        // cancellation and invalid base64.
        match portico_sasl::decode_plain(response) {
            Ok(credentials) => self.start_login(
                tag,
                credentials.authcid.into_bytes(),
                credentials.password.expose().as_bytes().to_vec(),
            ),
            Err(SaslError::NotBase64) => self.bad(&tag, "Invalid base64 in SASL response"),
            Err(SaslError::Malformed) => {
                self.complete(
                    &tag,
                    Status::no("Invalid SASL PLAIN response").code(Code::AuthenticationFailed),
                );
                self.count_bad();
            }
            Err(SaslError::AuthzidMismatch) => {
                self.complete(
                    &tag,
                    Status::no("Authorization identity must match").code(Code::AuthorizationFailed),
                );
                self.count_bad();
            }
        }
    }

    pub(crate) fn enable(&mut self, tag: String, capabilities: Vec<String>) {
        let mut enabled = Vec::new();
        for capability in capabilities {
            let upper = capability.to_ascii_uppercase();
            match upper.as_str() {
                "IMAP4REV2" if !self.enabled.rev2 => {
                    self.enabled.rev2 = true;
                    self.enabled.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !self.enabled.utf8 || !enabled.contains(&"UTF8=ACCEPT") => {
                    self.enabled.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                "CONDSTORE" if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    enabled.push("CONDSTORE");
                }
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                "QRESYNC" if !self.enabled.qresync => {
                    self.enabled.qresync = true;
                    if !self.enabled.condstore {
                        self.enabled.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                    enabled.push("QRESYNC");
                }
                _ => {}
            }
        }
        self.data(Data::Enabled(&enabled));
        self.finish(&tag, Status::ok("ENABLE completed"), true);
    }

    /// UNAUTHENTICATE (RFC 8437): the connection becomes as a new one in the
    /// not-authenticated state, the selected folder closed without expunging and ENABLEd
    /// extensions off. TLS and COMPRESS stay, as neither can be taken off a stream.
    pub(crate) fn unauthenticate(&mut self, tag: String) {
        if let State::Selected(selected) = &self.state {
            let folder = selected.id;
            self.actions
                .push_back(Action::Request(0, Request::Deselect { folder }));
        }
        self.flush();
        self.actions.push_back(Action::Request(0, Request::SignOut));
        self.state = State::NotAuthenticated;
        self.enabled = Enabled::default();
        self.notify = None;
        self.notify_fetch.clear();
        self.user = None;
        self.early_events.clear();
        self.reader.set_limits(Self::preauth_limits(&self.config));
        let capability = self.capability();
        let status = Status::ok("Signed out, authenticate again");
        self.complete(&tag, status.code(Code::Capability(capability)));
    }

    pub(crate) fn capability(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        if !self.is_authenticated() {
            if !self.tls && self.config.tls_available {
                caps.push("STARTTLS");
            }
            if self.tls || self.config.plaintext_login_without_tls {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.push(if self.config.literal_plus {
            "LITERAL+"
        } else {
            "LITERAL-"
        });
        caps.extend([
            "SASL-IR",
            // RFC 2221 §3: a server that supports referrals lists LOGIN-REFERRALS, and
            // no client action invokes them. Portico supports them whether or not a
            // node is set to refer (`[imap] login_referrals`): one that never refers is
            // still a conforming server, and clients lose nothing (Dovecot lists it
            // always too).
            "LOGIN-REFERRALS",
            "ENABLE",
            "IDLE",
            "UIDPLUS",
            "MULTIAPPEND",
            // RFC 4469, with `;PARTIAL=` in its URLs (URL-PARTIAL, RFC 5550).
            "CATENATE",
            "URL-PARTIAL",
            "MOVE",
            "NAMESPACE",
            "ID",
            "UNSELECT",
            "CONDSTORE",
            "QRESYNC",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "WITHIN",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "PARTIAL",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            // draft-ietf-morg-inthread, as Dovecot has it.
            "THREAD=REFS",
            "STATUS=SIZE",
            "METADATA",
            "NOTIFY",
            "OBJECTID",
            "SAVEDATE",
            "BINARY",
            // RFC 8970, and the drafts' forms Dovecot 2.3 still offers.
            "PREVIEW",
            "PREVIEW=FUZZY",
            "SNIPPET=FUZZY",
            "UTF8=ACCEPT",
            // RFC 5255 §4.3: SEARCH, SORT and THREAD compare by i;unicode-casemap.
            "I18NLEVEL=1",
            // RFC 9208: limits are the administrator's, so no QUOTASET.
            "QUOTA",
            "QUOTA=RES-STORAGE",
        ]);
        // RFC 4978 §3: valid only once signed in, so offered only then.
        if self.is_authenticated() {
            caps.push("COMPRESS=DEFLATE");
            caps.push("UNAUTHENTICATE");
        }
        let mut text = caps.join(" ");
        text.push_str(&format!(" APPENDLIMIT={}", self.config.append_limit));
        text
    }
}
