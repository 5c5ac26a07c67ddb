//! RFC 4954 AUTH with PLAIN (RFC 4616) and LOGIN, for submission (RFC 6409 §4.3).

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Request};

use super::{Action, AuthFailure, Awaiting, Mode, Reading, SaslStep, Secret, Session};
use crate::reply::{self, ClientError};
use portico_sasl::{SaslError, decode_plain, decode_text};

impl Session {
    /// RFC 4954 §4 AUTH. Refused in inbound mode (not offered there), once logged in,
    /// before EHLO, inside a transaction, and without TLS unless the login type is
    /// plaintext (`538`, RFC 4954 §6).
    pub(super) fn cmd_auth(&mut self, line: &[u8]) {
        if self.config.mode == Mode::Inbound {
            return self.client_error(ClientError::BadSequence(reply::AUTH_NOT_OFFERED));
        }
        if self.authenticated.is_some() {
            return self.client_error(ClientError::BadSequence(reply::ALREADY_AUTHENTICATED));
        }
        if self.helo.is_none() {
            return self.client_error(ClientError::BadSequence(reply::NEED_HELO));
        }
        if self.transaction.is_some() {
            return self.client_error(ClientError::BadSequence(reply::AUTH_IN_TRANSACTION));
        }
        if !self.auth_offered() {
            return self.client_error(ClientError::EncryptionRequired);
        }
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Auth {
            mechanism,
            initial_response,
        } = request
        else {
            return self.client_error(ClientError::Syntax("AUTH mechanism [initial-response]"));
        };
        let initial = initial_response.as_bytes();
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.reading = Reading::Sasl(SaslStep::Plain);
                self.reply(reply::EMPTY_CHALLENGE);
            }
            AUTH_PLAIN => self.on_plain(initial),
            AUTH_LOGIN if initial.is_empty() => {
                self.reading = Reading::Sasl(SaslStep::LoginUsername);
                self.reply(reply::LOGIN_USERNAME);
            }
            // Not in the LOGIN draft, but sent by clients that treat LOGIN like PLAIN.
            AUTH_LOGIN => self.on_login_username(initial),
            _ => self.client_error(ClientError::UnknownMechanism),
        }
    }

    /// The line answering a `334`. Only here can `*` cancel (RFC 4954 §4).
    pub(super) fn on_sasl_response(&mut self, step: SaslStep, line: &[u8]) {
        let response = super::trim_line_end(line).trim_ascii();
        if response == b"*" {
            return self.client_error(ClientError::AuthCancelled);
        }
        match step {
            SaslStep::Plain => self.on_plain(response),
            SaslStep::LoginUsername => self.on_login_username(response),
            SaslStep::LoginPassword { username } => match decode_text(response) {
                Ok(password) => self.authenticate(username, Secret::new(password)),
                Err(error) => self.client_error(sasl_error(error)),
            },
        }
    }

    fn on_plain(&mut self, response: &[u8]) {
        match decode_plain(response) {
            Ok(credentials) => self.authenticate(credentials.authcid, credentials.password),
            Err(error) => self.client_error(sasl_error(error)),
        }
    }

    fn on_login_username(&mut self, response: &[u8]) {
        match decode_text(response) {
            Ok(username) if !username.is_empty() => {
                self.reading = Reading::Sasl(SaslStep::LoginPassword { username });
                self.reply(reply::LOGIN_PASSWORD);
            }
            Ok(_) => self.client_error(ClientError::BadSaslResponse),
            Err(error) => self.client_error(sasl_error(error)),
        }
    }

    fn authenticate(&mut self, username: String, password: Secret) {
        self.request(
            Action::Authenticate {
                username: username.clone(),
                password,
            },
            Awaiting::Auth { username },
        );
    }

    /// RFC 4954 §6: `235`, `535` (a client error, so that `max_errors` bounds guessing on
    /// one connection), `454` when the check itself failed, or `421` and close for an
    /// address refused after too many failed logins.
    pub(super) fn on_auth_result(&mut self, username: String, result: Result<(), AuthFailure>) {
        match result {
            Ok(()) => {
                self.authenticated = Some(username);
                self.reply(reply::AUTH_OK);
            }
            Err(AuthFailure::BadCredentials) => self.client_error(ClientError::BadCredentials),
            Err(AuthFailure::Temporary) => self.reply(reply::AUTH_TEMPORARY),
            Err(AuthFailure::Refused) => {
                self.reply(reply::AUTH_REFUSED);
                self.close();
            }
        }
    }
}

/// How a refused SASL message is answered (RFC 4954 §4): bad base64 and wrong shapes are
/// syntax errors; acting as another user is refused like bad credentials.
fn sasl_error(error: SaslError) -> ClientError {
    match error {
        SaslError::NotBase64 => ClientError::BadBase64,
        SaslError::Malformed => ClientError::BadSaslResponse,
        SaslError::AuthzidMismatch => ClientError::BadCredentials,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    /// `\0alice@example.com\0secret`
    const PLAIN_ALICE: &str = "AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==";

    fn greeted(config: SmtpConfig, tls: bool) -> Session {
        let mut s = start(config, tls);
        send(&mut s, "EHLO client.example.org\r\n");
        s
    }

    #[test]
    fn plain_with_initial_response() {
        let mut s = greeted(submission(), true);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "[auth alice@example.com:secret]\n"
        );
        assert_eq!(s.authenticated_user(), None);
        assert_eq!(
            answer(&mut s, Input::AuthResult(Ok(()))),
            "235 2.7.0 Authentication successful\r\n"
        );
        assert_eq!(s.authenticated_user(), Some("alice@example.com"));
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "503 5.5.1 Already authenticated\r\n"
        );
    }

    #[test]
    fn plain_after_empty_challenge() {
        let mut s = greeted(submission(), true);
        assert_eq!(send(&mut s, "auth plain\r\n"), "334 \r\n");
        assert_eq!(
            send(&mut s, &format!("{PLAIN_ALICE}\r\n")),
            "[auth alice@example.com:secret]\n"
        );
        // SASL responses are not commands.
        assert_eq!(s.commands(), 2);
    }

    #[test]
    fn login_exchange() {
        let mut s = greeted(submission(), true);
        assert_eq!(send(&mut s, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
        assert_eq!(
            send(&mut s, "YWxpY2VAZXhhbXBsZS5jb20=\r\n"),
            "334 UGFzc3dvcmQ6\r\n"
        );
        assert_eq!(
            send(&mut s, "c2VjcmV0\r\n"),
            "[auth alice@example.com:secret]\n"
        );
        assert_eq!(
            answer(&mut s, Input::AuthResult(Ok(()))),
            "235 2.7.0 Authentication successful\r\n"
        );
    }

    #[test]
    fn login_with_initial_user_name() {
        let mut s = greeted(submission(), true);
        assert_eq!(
            send(&mut s, "AUTH LOGIN YWxpY2VAZXhhbXBsZS5jb20=\r\n"),
            "334 UGFzc3dvcmQ6\r\n"
        );
        assert_eq!(
            send(&mut s, "c2VjcmV0\r\n"),
            "[auth alice@example.com:secret]\n"
        );
    }

    #[test]
    fn bad_and_temporary_results() {
        let mut s = greeted(submission(), true);
        send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n"));
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials))),
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(s.authenticated_user(), None);
        send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n"));
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::Temporary))),
            "454 4.7.0 Temporary authentication failure\r\n"
        );
        assert_eq!(s.authenticated_user(), None);
        send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n"));
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::Refused))),
            "421 4.7.0 Too many failed logins from your address, try again later\r\n[close]\n"
        );
        assert_eq!(s.authenticated_user(), None);
    }

    #[test]
    fn cancel_with_star() {
        let mut s = greeted(submission(), true);
        send(&mut s, "AUTH LOGIN\r\n");
        assert_eq!(
            send(&mut s, "*\r\n"),
            "501 5.0.0 Authentication cancelled\r\n"
        );
        send(&mut s, "AUTH LOGIN\r\n");
        send(&mut s, "YWxpY2U=\r\n");
        assert_eq!(
            send(&mut s, "*\r\n"),
            "501 5.0.0 Authentication cancelled\r\n"
        );
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(
            send(&mut s, "*\r\n"),
            "501 5.0.0 Authentication cancelled\r\n"
        );
        // Back to commands.
        assert_eq!(send(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn bad_base64_and_bad_messages() {
        let mut s = greeted(submission(), true);
        assert_eq!(
            send(&mut s, "AUTH PLAIN !!!\r\n"),
            "501 5.5.2 Invalid base64 data\r\n"
        );
        send(&mut s, "AUTH PLAIN\r\n");
        assert_eq!(
            send(&mut s, "not base64\r\n"),
            "501 5.5.2 Invalid base64 data\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH PLAIN =\r\n"),
            "501 5.5.2 Invalid SASL response\r\n"
        );
        // "bob\0alice\0pw": acting as someone else.
        assert_eq!(
            send(&mut s, "AUTH PLAIN Ym9iAGFsaWNlAHB3\r\n"),
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH LOGIN =\r\n"),
            "501 5.5.2 Invalid SASL response\r\n"
        );
    }

    #[test]
    fn unknown_mechanism_and_syntax() {
        let mut s = greeted(submission(), true);
        assert_eq!(
            send(&mut s, "AUTH CRAM-MD5\r\n"),
            "504 5.5.4 Unrecognized authentication type\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH FOOBAR\r\n"),
            "504 5.5.4 Unrecognized authentication type\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH\r\n"),
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
        );
    }

    #[test]
    fn refused_before_tls() {
        let mut s = greeted(submission(), false);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
        assert_eq!(
            send(&mut s, "AUTH LOGIN\r\n"),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
    }

    #[test]
    fn plaintext_login_type_allows_it_before_tls() {
        let config = SmtpConfig {
            plaintext_auth_without_tls: true,
            ..submission()
        };
        let mut s = greeted(config, false);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "[auth alice@example.com:secret]\n"
        );
    }

    #[test]
    fn refused_inbound_before_ehlo_and_in_a_transaction() {
        let mut s = greeted(inbound(), true);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "503 5.5.1 Authentication not available\r\n"
        );
        let mut s = start(submission(), true);
        assert_eq!(
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n")),
            "503 5.5.1 Send EHLO or HELO first\r\n"
        );
    }

    #[test]
    fn overlong_response_ends_the_exchange() {
        let mut s = greeted(submission(), true);
        send(&mut s, "AUTH PLAIN\r\n");
        let long = format!("{}\r\n", "A".repeat(MAX_COMMAND_LINE));
        assert_eq!(send(&mut s, &long), "500 5.5.6 Line too long\r\n");
        assert_eq!(send(&mut s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn password_is_redacted_in_debug_output() {
        let action = Action::Authenticate {
            username: "alice".into(),
            password: Secret::new("hunter2".into()),
        };
        let printed = format!("{action:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn failed_logins_count_toward_max_errors() {
        let config = SmtpConfig {
            max_errors: 2,
            ..submission()
        };
        let mut s = greeted(config, true);
        for _ in 0..2 {
            send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n"));
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials)));
        }
        send(&mut s, &format!("AUTH PLAIN {PLAIN_ALICE}\r\n"));
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials))),
            "535 5.7.8 Authentication credentials invalid\r\n\
             421 4.7.0 Too many errors, closing connection\r\n[close]\n"
        );
    }
}
