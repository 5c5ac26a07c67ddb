//! The wire vocabulary: every reply the session sends, in one place.
//!
//! Client mistakes are one closed enum, [`ClientError`], mapped to the wire once (reply
//! code and RFC 3463 enhanced status code) by [`ClientError::status`], as rustls maps its
//! one error type. Every such reply counts toward `max_errors`; those that say the command
//! did not parse or came out of order ([`ClientError::makes_junk`]) also make it a junk
//! command, counted toward `max_commands`. Replies that are not the client's fault
//! (success, the host's temporary failures, the server's limits) are plain constants.
//!
//! smtp-proto has a `Response` type with a `write` method, but a reply here is one
//! `format!` of a code, an enhanced code and a text; going through `io::Write` into a
//! `Vec` would add an `io::Result` that can never be an error, and nothing else.

/// A mistake by the client: a `4xx`/`5xx` reply that counts toward `max_errors`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientError {
    /// RFC 5321 §4.2.4: a verb this server does not know.
    #[error("Unknown command")]
    UnknownCommand,
    /// A known verb this server does not implement (ETRN, TURN, EXPN, ...).
    #[error("Command not implemented")]
    NotImplemented,
    /// RFC 5321 §4.5.3.1.4 and §4.2.2 (`5.5.6`: syntax error, line too long).
    #[error("Line too long")]
    LineTooLong,
    /// The command's arguments do not parse; the text is the expected syntax.
    #[error("Syntax: {0}")]
    Syntax(&'static str),
    /// A known ESMTP parameter with a bad value (`SIZE=abc`).
    #[error("Invalid {0} parameter")]
    InvalidParameter(&'static str),
    /// RFC 5321 §4.1.1.11: a parameter of an extension not offered.
    #[error("Unsupported parameter {0}")]
    UnsupportedParameter(String),
    /// RFC 3463 `5.1.7`: bad sender's mailbox address syntax.
    #[error("Invalid sender address")]
    InvalidSender,
    /// RFC 3463 `5.1.3`: bad destination mailbox address syntax.
    #[error("Invalid recipient address")]
    InvalidRecipient,
    /// RFC 5321 §4.2.4 `503`: the command is fine but not now; the text says why.
    #[error("{0}")]
    BadSequence(&'static str),
    /// RFC 4954 §6 `530 5.7.0`: submission needs AUTH before MAIL (RFC 6409 §4.3).
    #[error("Authentication required")]
    AuthRequired,
    /// RFC 4954 §6 `538 5.7.11`.
    #[error("Encryption required for requested authentication mechanism")]
    EncryptionRequired,
    /// RFC 4954 §4 `504 5.5.4`.
    #[error("Unrecognized authentication type")]
    UnknownMechanism,
    /// RFC 4954 §4: the client answered a challenge with `*`.
    #[error("Authentication cancelled")]
    AuthCancelled,
    /// RFC 4954 §4 `501 5.5.2`: a response that is not base64.
    #[error("Invalid base64 data")]
    BadBase64,
    /// Base64, but not a SASL message of the mechanism (no NULs in PLAIN, not UTF-8).
    #[error("Invalid SASL response")]
    BadSaslResponse,
    /// RFC 4954 §6 `535 5.7.8`.
    #[error("Authentication credentials invalid")]
    BadCredentials,
    /// RFC 6409 §6.1: the sender is not an address of the authenticated user.
    #[error("Sender address not owned by authenticated user")]
    SenderNotOwned,
    /// RFC 6409 §8: a `From:` header address that is not the authenticated user's.
    #[error("From header address not owned by authenticated user")]
    FromNotOwned,
    /// Inbound MAIL FROM in one of the server's own domains, unauthenticated, from a
    /// client outside the trusted networks: the server's users send through submission.
    #[error("Authentication required to send as a local sender")]
    LocalSenderNeedsAuth,
    /// RFC 6531 §3.5: a non-ASCII address without `SMTPUTF8` on MAIL.
    #[error("Non-ASCII address requires SMTPUTF8")]
    NeedsSmtputf8,
    /// RFC 1870 §6.1: `SIZE=` on MAIL above the limit.
    #[error("Message size exceeds fixed maximum message size")]
    DeclaredTooBig,
    /// RFC 1870 §6.2 / RFC 3030 §3: the message itself went over the limit.
    #[error("Message too big")]
    TooBig,
    /// RFC 5321 §3.3 `554`: DATA or BDAT with no accepted recipient.
    #[error("No valid recipients")]
    NoValidRecipients,
    /// RFC 5321 §3.3: a local address nobody has. The text never says more.
    #[error("Mailbox unavailable")]
    UnknownUser,
    /// RFC 5321 §3.6.2: not a local recipient, and this client may not relay.
    #[error("Relaying denied")]
    RelayDenied,
    /// STARTTLS without a certificate (RFC 3207 gives no code; it was not offered).
    #[error("STARTTLS not available")]
    TlsUnavailable,
}

impl ClientError {
    /// The reply code and enhanced status code (RFC 3463) of this error.
    pub(crate) fn status(&self) -> (u16, &'static str) {
        use ClientError::*;
        match self {
            UnknownCommand => (500, "5.5.1"),
            NotImplemented | TlsUnavailable => (502, "5.5.1"),
            LineTooLong => (500, "5.5.6"),
            Syntax(_) | InvalidParameter(_) => (501, "5.5.4"),
            UnsupportedParameter(_) => (555, "5.5.4"),
            InvalidSender => (501, "5.1.7"),
            InvalidRecipient => (501, "5.1.3"),
            BadSequence(_) => (503, "5.5.1"),
            AuthRequired => (530, "5.7.0"),
            EncryptionRequired => (538, "5.7.11"),
            UnknownMechanism => (504, "5.5.4"),
            AuthCancelled => (501, "5.0.0"),
            BadBase64 | BadSaslResponse => (501, "5.5.2"),
            BadCredentials => (535, "5.7.8"),
            SenderNotOwned | FromNotOwned => (553, "5.7.1"),
            LocalSenderNeedsAuth => (550, "5.7.1"),
            NeedsSmtputf8 => (553, "5.6.7"),
            DeclaredTooBig | TooBig => (552, "5.3.4"),
            NoValidRecipients => (554, "5.5.1"),
            UnknownUser => (550, "5.1.1"),
            RelayDenied => (550, "5.7.1"),
        }
    }

    /// Whether the command this error answers counts as a junk command toward
    /// `max_commands`: the RFC 5321 §4.2.1 syntax class (`500`-`504`: unrecognised,
    /// malformed, not implemented, out of sequence) and `555` (MAIL or RCPT parameters
    /// not recognised). Refusals of a well-formed command in its place (an unknown
    /// recipient, a sender not owned, a message too big, bad credentials) are not junk:
    /// they count toward `max_errors` only.
    pub(crate) fn makes_junk(&self) -> bool {
        matches!(self.status().0, 500..=504 | 555)
    }

    /// The reply line, without its CRLF.
    pub(crate) fn reply(&self) -> String {
        let (code, enhanced) = self.status();
        format!("{code} {enhanced} {self}")
    }
}

// Sequence errors (503 5.5.1), each saying what the client should have done.
pub(crate) const NEED_HELO: &str = "Send EHLO or HELO first";
pub(crate) const NESTED_MAIL: &str = "Sender already specified";
pub(crate) const NEED_MAIL: &str = "Need MAIL command first";
pub(crate) const RCPT_AFTER_BDAT: &str = "RCPT not allowed after BDAT";
pub(crate) const DATA_AFTER_BDAT: &str = "DATA not allowed after BDAT, use BDAT LAST";
pub(crate) const TLS_ACTIVE: &str = "TLS already active";
pub(crate) const ALREADY_AUTHENTICATED: &str = "Already authenticated";
pub(crate) const AUTH_NOT_OFFERED: &str = "Authentication not available";
pub(crate) const AUTH_IN_TRANSACTION: &str = "AUTH not permitted during a mail transaction";

// Replies that are no client error.
pub(crate) const OK: &str = "250 2.0.0 Ok";
pub(crate) const SENDER_OK: &str = "250 2.1.0 Sender OK";
pub(crate) const RECIPIENT_OK: &str = "250 2.1.5 Recipient OK";
pub(crate) const START_DATA: &str = "354 Start mail input; end with <CRLF>.<CRLF>";
pub(crate) const READY_FOR_TLS: &str = "220 2.0.0 Ready to start TLS";
pub(crate) const BYE: &str = "221 2.0.0 Bye";
pub(crate) const HELP: &str = "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT \
                                RSET NOOP VRFY HELP QUIT";
pub(crate) const CANNOT_VRFY: &str = "252 2.5.0 Cannot VRFY user, but will accept message";
pub(crate) const AUTH_OK: &str = "235 2.7.0 Authentication successful";
/// RFC 4954 §6 `454 4.7.0`: the credential check itself failed.
pub(crate) const AUTH_TEMPORARY: &str = "454 4.7.0 Temporary authentication failure";
/// The client's address failed too many logins lately: closed without a check.
pub(crate) const AUTH_REFUSED: &str =
    "421 4.7.0 Too many failed logins from your address, try again later";
/// RFC 5321 §4.5.3.1.10: `452` lets the client send the rest in another transaction.
pub(crate) const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Too many recipients";
pub(crate) const RECIPIENT_TEMPORARY: &str =
    "451 4.3.0 Recipient temporarily unavailable, try again later";
pub(crate) const SENDER_TEMPORARY: &str =
    "451 4.3.0 Sender temporarily unverifiable, try again later";
pub(crate) const DELIVERY_TEMPORARY: &str =
    "451 4.3.0 Temporary failure, message not accepted, try again later";
pub(crate) const DELIVERY_TOO_BIG: &str = "552 5.3.4 Message too big";
/// RFC 3463 X.2.2: the recipient's mailbox is over its storage limit; `452` (RFC 5321
/// §4.2.2) so the sender tries again, at RCPT and after the content alike.
pub(crate) const MAILBOX_FULL: &str = "452 4.2.2 Mailbox full";
/// RFC 3463 4.3.1: mail system full.
pub(crate) const DELIVERY_NO_SPACE: &str = "452 4.3.1 Insufficient system storage, try again later";
pub(crate) const SHUTTING_DOWN: &str = "421 4.3.2 Service shutting down";
pub(crate) const TOO_MANY_ERRORS: &str = "421 4.7.0 Too many errors, closing connection";
pub(crate) const TOO_MANY_COMMANDS: &str = "421 4.7.0 Too many commands, closing connection";
pub(crate) const PIPELINE_OVERFLOW: &str = "421 4.7.0 Too much pipelined input, closing connection";
/// RFC 4954 §4: PLAIN sends its one message after an empty challenge.
pub(crate) const EMPTY_CHALLENGE: &str = "334 ";
/// LOGIN's challenges, `Username:` and `Password:` in base64 (draft-murchison-sasl-login).
pub(crate) const LOGIN_USERNAME: &str = "334 VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD: &str = "334 UGFzc3dvcmQ6";

/// Text from elsewhere (the host, the client) made safe to put in a reply line: printable
/// ASCII only, so it can neither end the line nor inject a second reply, and bounded.
pub(crate) fn sanitize(text: &str, max_len: usize) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max_len)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error, with whether it counts as a junk command.
    fn every_error() -> Vec<(ClientError, bool)> {
        vec![
            (ClientError::UnknownCommand, true),
            (ClientError::NotImplemented, true),
            (ClientError::LineTooLong, true),
            (ClientError::Syntax("X"), true),
            (ClientError::InvalidParameter("SIZE"), true),
            (ClientError::UnsupportedParameter("FOO".into()), true),
            (ClientError::InvalidSender, true),
            (ClientError::InvalidRecipient, true),
            (ClientError::BadSequence("x"), true),
            (ClientError::AuthRequired, false),
            (ClientError::EncryptionRequired, false),
            (ClientError::UnknownMechanism, true),
            (ClientError::AuthCancelled, true),
            (ClientError::BadBase64, true),
            (ClientError::BadSaslResponse, true),
            (ClientError::BadCredentials, false),
            (ClientError::SenderNotOwned, false),
            (ClientError::FromNotOwned, false),
            (ClientError::LocalSenderNeedsAuth, false),
            (ClientError::NeedsSmtputf8, false),
            (ClientError::DeclaredTooBig, false),
            (ClientError::TooBig, false),
            (ClientError::NoValidRecipients, false),
            (ClientError::UnknownUser, false),
            (ClientError::RelayDenied, false),
            (ClientError::TlsUnavailable, true),
        ]
    }

    #[test]
    fn every_error_carries_an_enhanced_code_matching_its_class() {
        for (error, _) in every_error() {
            let (code, enhanced) = error.status();
            assert_eq!(
                enhanced.as_bytes()[0],
                b'0' + (code / 100) as u8,
                "{error:?}"
            );
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn syntax_and_sequence_errors_make_junk_and_refusals_do_not() {
        for (error, junk) in every_error() {
            assert_eq!(error.makes_junk(), junk, "{error:?}");
        }
    }

    #[test]
    fn replies_read_as_expected() {
        assert_eq!(
            ClientError::EncryptionRequired.reply(),
            "538 5.7.11 Encryption required for requested authentication mechanism"
        );
        assert_eq!(
            ClientError::Syntax("EHLO domain").reply(),
            "501 5.5.4 Syntax: EHLO domain"
        );
    }

    #[test]
    fn sanitize_removes_line_breaks_and_bounds_length() {
        assert_eq!(sanitize("a\r\n250 b\tc", 100), "a250 bc");
        assert_eq!(sanitize("abcdef", 3), "abc");
        assert_eq!(sanitize("zoë", 10), "zo");
    }
}
