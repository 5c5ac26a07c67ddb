//! The commands outside mail transactions and AUTH: EHLO, HELO, STARTTLS, RSET, NOOP,
//! QUIT, VRFY (HELP and EXPN are single replies in `on_command`).

use smtp_proto::Request;

use super::{Action, Awaiting, Mode, Reading, RecipientVerdict, Session};
use crate::reply::{self, ClientError};

impl Session {
    /// RFC 5321 §4.1.1.1 EHLO: names the client, resets any transaction, and lists the
    /// extensions as they apply right now. STARTTLS only while it can be used (RFC 3207
    /// §4); AUTH only where it would be accepted (RFC 4954 §4, RFC 6409 §4.3: never
    /// offered in a way that exposes the password). smtp-proto's `EhloResponse` is not
    /// used to write the reply: it orders capabilities by its own bit values and adds a
    /// greeting text to the first line, and this order is part of the interface.
    pub(super) fn cmd_ehlo(&mut self, line: &[u8]) {
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Ehlo { host } = request else {
            return self.client_error(ClientError::Syntax("EHLO domain"));
        };
        self.helo = Some(host.into_owned());
        self.esmtp = true;
        self.reset_transaction();
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.starttls_offered() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let mut out = String::new();
        let count = lines.len();
        for (index, line) in lines.into_iter().enumerate() {
            out.push_str(if index + 1 == count { "250 " } else { "250-" });
            out.push_str(&line);
            out.push_str("\r\n");
        }
        self.write(out.into_bytes());
    }

    /// RFC 5321 §4.1.1.1 HELO: no extensions, so no enhanced status code either.
    pub(super) fn cmd_helo(&mut self, line: &[u8]) {
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Helo { host } = request else {
            return self.client_error(ClientError::Syntax("HELO domain"));
        };
        self.helo = Some(host.into_owned());
        self.esmtp = false;
        self.reset_transaction();
        let text = format!("250 {}", self.config.hostname);
        self.reply(&text);
    }

    /// RFC 3207 §4 STARTTLS. Whatever follows the command in the same read, and anything
    /// arriving before the handshake completes, is dropped (RFC 3207 §6, CVE-2011-0411):
    /// `discards_input` sees to that from the moment the machine waits for the handshake.
    pub(super) fn cmd_starttls(&mut self, line: &[u8]) {
        if self.parse(line).is_none() {
            return;
        }
        if self.tls_active {
            return self.client_error(ClientError::BadSequence(reply::TLS_ACTIVE));
        }
        if !self.config.tls_available {
            return self.client_error(ClientError::TlsUnavailable);
        }
        self.reply(reply::READY_FOR_TLS);
        self.pending = Vec::new();
        self.request(Action::StartTls, Awaiting::Tls);
    }

    /// RFC 3207 §4.2: the client starts over with EHLO, and the server forgets everything
    /// it learnt in the clear, a login included. No second greeting.
    pub(super) fn on_tls_established(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.authenticated = None;
        self.transaction = None;
        self.reading = Reading::Command;
        self.pending = Vec::new();
        self.skipping_line = false;
        self.overflowed = false;
    }

    /// RFC 5321 §4.1.1.5 RSET.
    pub(super) fn cmd_rset(&mut self, line: &[u8]) {
        if self.parse(line).is_none() {
            return;
        }
        self.reset_transaction();
        self.reply(reply::OK);
    }

    /// RFC 5321 §4.1.1.9 NOOP (any argument is ignored).
    pub(super) fn cmd_noop(&mut self, line: &[u8]) {
        if self.parse(line).is_none() {
            return;
        }
        self.reply(reply::OK);
    }

    /// RFC 5321 §4.1.1.10 QUIT: anything pipelined behind it is not read.
    pub(super) fn cmd_quit(&mut self, line: &[u8]) {
        if self.parse(line).is_none() {
            return;
        }
        self.reply(reply::BYE);
        self.close();
    }

    /// RFC 5321 §3.5.3 VRFY. Disabled (the default), `252`: neither yes nor no, so the
    /// command cannot harvest addresses. Enabled, the host is asked about an address with
    /// a domain, and only a local mailbox gets a `250`; in submission only once
    /// authenticated.
    pub(super) fn cmd_vrfy(&mut self, line: &[u8]) {
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Vrfy { value } = request else {
            return self.client_error(ClientError::Syntax("VRFY string"));
        };
        if !self.config.vrfy_enabled {
            return self.reply(reply::CANNOT_VRFY);
        }
        if self.config.mode == Mode::Submission && self.authenticated.is_none() {
            return self.client_error(ClientError::AuthRequired);
        }
        let address = value
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        if !address.contains('@') || address.chars().any(char::is_control) {
            return self.reply(reply::CANNOT_VRFY);
        }
        self.request(
            Action::CheckRecipient {
                address: address.clone(),
                size: 0,
            },
            Awaiting::Verify { address },
        );
    }

    pub(super) fn on_verified(&mut self, address: String, verdict: RecipientVerdict) {
        match verdict {
            // A full mailbox exists all the same.
            RecipientVerdict::Local | RecipientVerdict::MailboxFull => {
                let text = format!("250 2.1.5 <{}>", reply::sanitize(&address, 256));
                self.reply(&text);
            }
            RecipientVerdict::UnknownUser => self.client_error(ClientError::UnknownUser),
            _ => self.reply(reply::CANNOT_VRFY),
        }
    }

    pub(super) fn starttls_offered(&self) -> bool {
        self.config.tls_available && !self.tls_active
    }

    /// AUTH is offered in submission once a password would not cross in the clear.
    pub(super) fn auth_offered(&self) -> bool {
        self.config.mode == Mode::Submission
            && (self.tls_active || self.config.plaintext_auth_without_tls)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    const EHLO_BASE: &str = "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n\
        250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n";

    #[test]
    fn greeting() {
        let mut s = Session::new(submission(), false);
        assert_eq!(drain(&mut s), "220 mail.example.com ESMTP Portico\r\n");
    }

    #[test]
    fn greeting_hostname_loses_control_characters_and_spaces() {
        let config = SmtpConfig {
            hostname: "evil\r\n250 x".into(),
            ..submission()
        };
        let mut s = Session::new(config, false);
        assert_eq!(drain(&mut s), "220 evil250x ESMTP Portico\r\n");
    }

    #[test]
    fn ehlo_before_tls_offers_starttls_but_not_auth() {
        let mut s = start(submission(), false);
        assert_eq!(
            send(&mut s, "EHLO client.example.org\r\n"),
            format!("{EHLO_BASE}250-CHUNKING\r\n250 STARTTLS\r\n")
        );
    }

    #[test]
    fn ehlo_with_plaintext_auth_offers_both() {
        let config = SmtpConfig {
            plaintext_auth_without_tls: true,
            ..submission()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "ehlo client\r\n"),
            format!("{EHLO_BASE}250-CHUNKING\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
        );
    }

    #[test]
    fn ehlo_under_tls_offers_auth_but_not_starttls() {
        let mut s = start(submission(), true);
        assert_eq!(
            send(&mut s, "EHLO client\r\n"),
            format!("{EHLO_BASE}250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n")
        );
    }

    #[test]
    fn ehlo_inbound_never_offers_auth() {
        let mut s = start(inbound(), true);
        assert_eq!(
            send(&mut s, "EHLO client\r\n"),
            format!("{EHLO_BASE}250 CHUNKING\r\n")
        );
        let config = SmtpConfig {
            tls_available: false,
            ..inbound()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "EHLO client\r\n"),
            format!("{EHLO_BASE}250 CHUNKING\r\n")
        );
    }

    #[test]
    fn ehlo_and_helo_need_a_name() {
        let mut s = start(inbound(), false);
        assert_eq!(
            send(&mut s, "EHLO\r\n"),
            "501 5.5.4 Syntax: EHLO domain\r\n"
        );
        assert_eq!(
            send(&mut s, "HELO \r\n"),
            "501 5.5.4 Syntax: HELO domain\r\n"
        );
        assert_eq!(send(&mut s, "HELO client\r\n"), "250 mail.example.com\r\n");
    }

    #[test]
    fn helo_allows_mail() {
        let mut s = start(inbound(), false);
        send(&mut s, "HELO client\r\n");
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example>\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
    }

    #[test]
    fn ehlo_resets_the_transaction() {
        let mut s = start(inbound(), false);
        send(&mut s, "EHLO a\r\n");
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        send(&mut s, "EHLO b\r\n");
        assert_eq!(
            send(&mut s, "RCPT TO:<alice@example.com>\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
    }

    #[test]
    fn starttls_then_ehlo_again() {
        let mut s = start(submission(), false);
        send(&mut s, "EHLO client\r\n");
        assert_eq!(
            send(&mut s, "STARTTLS\r\n"),
            "220 2.0.0 Ready to start TLS\r\n[starttls]\n"
        );
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        // RFC 3207 §4.2: the EHLO name is forgotten.
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com>\r\n"),
            "503 5.5.1 Send EHLO or HELO first\r\n"
        );
        assert_eq!(
            send(&mut s, "EHLO client\r\n"),
            format!("{EHLO_BASE}250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n")
        );
        assert_eq!(
            send(&mut s, "STARTTLS\r\n"),
            "503 5.5.1 TLS already active\r\n"
        );
    }

    #[test]
    fn starttls_discards_pipelined_and_early_bytes() {
        let config = SmtpConfig {
            plaintext_auth_without_tls: true,
            ..submission()
        };
        let mut s = start(config, false);
        send(&mut s, "EHLO client\r\n");
        assert_eq!(
            send(&mut s, "STARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            "220 2.0.0 Ready to start TLS\r\n[starttls]\n"
        );
        // Still before the handshake: dropped too, including a partial line.
        assert_eq!(send(&mut s, "NOOP\r\nMAIL FR"), "");
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(s.authenticated_user(), None);
        assert_eq!(send(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn starttls_forgets_a_login_made_in_the_clear() {
        let config = SmtpConfig {
            plaintext_auth_without_tls: true,
            ..submission()
        };
        let mut s = start(config, false);
        login(&mut s);
        send(&mut s, "STARTTLS\r\n");
        answer(&mut s, Input::TlsEstablished);
        assert_eq!(s.authenticated_user(), None);
    }

    #[test]
    fn starttls_unavailable() {
        let config = SmtpConfig {
            tls_available: false,
            ..submission()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "STARTTLS\r\n"),
            "502 5.5.1 STARTTLS not available\r\n"
        );
    }

    #[test]
    fn starttls_on_implicit_tls() {
        let mut s = start(submission(), true);
        assert_eq!(
            send(&mut s, "STARTTLS\r\n"),
            "503 5.5.1 TLS already active\r\n"
        );
    }

    #[test]
    fn early_tls_answer_is_ignored() {
        let mut s = start(submission(), false);
        assert_eq!(answer(&mut s, Input::TlsEstablished), "");
        assert_eq!(
            send(&mut s, "EHLO client\r\n"),
            format!("{EHLO_BASE}250-CHUNKING\r\n250 STARTTLS\r\n")
        );
    }

    #[test]
    fn simple_commands() {
        let mut s = start(inbound(), false);
        assert_eq!(send(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
        assert_eq!(send(&mut s, "noop whatever\r\n"), "250 2.0.0 Ok\r\n");
        assert_eq!(send(&mut s, "RSET\r\n"), "250 2.0.0 Ok\r\n");
        assert_eq!(
            send(&mut s, "HELP\r\n"),
            "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP \
             VRFY HELP QUIT\r\n"
        );
        assert_eq!(
            send(&mut s, "VRFY alice\r\n"),
            "252 2.5.0 Cannot VRFY user, but will accept message\r\n"
        );
        assert_eq!(
            send(&mut s, "EXPN staff\r\n"),
            "502 5.5.1 Command not implemented\r\n"
        );
        assert_eq!(
            send(&mut s, "ETRN example.com\r\n"),
            "502 5.5.1 Command not implemented\r\n"
        );
        assert_eq!(send(&mut s, "XYZZY\r\n"), "500 5.5.1 Unknown command\r\n");
        assert_eq!(send(&mut s, "\r\n"), "500 5.5.1 Unknown command\r\n");
        assert_eq!(
            send(&mut s, "QUIT\r\nNOOP\r\n"),
            "221 2.0.0 Bye\r\n[close]\n"
        );
        assert!(s.is_closed());
        assert_eq!(send(&mut s, "NOOP\r\n"), "");
        assert_eq!(s.commands(), 10);
    }

    #[test]
    fn vrfy_enabled_asks_the_host() {
        let config = SmtpConfig {
            vrfy_enabled: true,
            ..inbound()
        };
        let mut s = start(config, false);
        assert_eq!(
            send(&mut s, "VRFY <alice@example.com>\r\n"),
            "[check alice@example.com]\n"
        );
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 <alice@example.com>\r\n"
        );
        send(&mut s, "VRFY nobody@example.com\r\n");
        assert_eq!(
            answer(
                &mut s,
                Input::RecipientChecked(RecipientVerdict::UnknownUser)
            ),
            "550 5.1.1 Mailbox unavailable\r\n"
        );
        send(&mut s, "VRFY bob@elsewhere.example\r\n");
        assert_eq!(
            answer(
                &mut s,
                Input::RecipientChecked(RecipientVerdict::RelayDenied)
            ),
            "252 2.5.0 Cannot VRFY user, but will accept message\r\n"
        );
        assert_eq!(
            send(&mut s, "VRFY Smith\r\n"),
            "252 2.5.0 Cannot VRFY user, but will accept message\r\n"
        );
        assert_eq!(
            send(&mut s, "VRFY\r\n"),
            "501 5.5.4 Syntax: VRFY string\r\n"
        );
    }

    #[test]
    fn vrfy_enabled_in_submission_needs_login() {
        let config = SmtpConfig {
            vrfy_enabled: true,
            ..submission()
        };
        let mut s = start(config, true);
        assert_eq!(
            send(&mut s, "VRFY alice@example.com\r\n"),
            "530 5.7.0 Authentication required\r\n"
        );
    }

    #[test]
    fn shutdown_says_421_and_closes() {
        let mut s = start(inbound(), false);
        send(&mut s, "EHLO client\r\n");
        assert_eq!(
            answer(&mut s, Input::Shutdown),
            "421 4.3.2 Service shutting down\r\n[close]\n"
        );
        assert!(s.is_closed());
        assert_eq!(answer(&mut s, Input::Shutdown), "");
    }
}
