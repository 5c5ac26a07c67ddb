//! The mail transaction: MAIL, RCPT, DATA and BDAT (RFC 5321 §3.3, RFC 3030), with SIZE
//! (RFC 1870), 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531), and the hand-over of the
//! message to the host.

use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, Request};

use super::{
    Action, Awaiting, DeliveryFailure, Envelope, Mode, Reading, RecipientVerdict, SenderVerdict,
    Session, Transaction,
};
use crate::body::{BodyEnd, ChunkBody, DataBody};
use crate::command::{
    EmptyPath, classify_empty_path, unsupported_mail_parameter, unsupported_rcpt_parameter,
};
use crate::reply::{self, ClientError};

impl Session {
    /// RFC 5321 §4.1.1.2 MAIL. Sequence first (EHLO, then AUTH in submission per RFC 6409
    /// §4.3, no transaction open), then the arguments, then the sender itself.
    pub(super) fn cmd_mail(&mut self, line: &[u8]) {
        if self.helo.is_none() {
            return self.client_error(ClientError::BadSequence(reply::NEED_HELO));
        }
        if self.config.mode == Mode::Submission && self.authenticated.is_none() {
            return self.client_error(ClientError::AuthRequired);
        }
        if self.transaction.is_some() {
            return self.client_error(ClientError::BadSequence(reply::NESTED_MAIL));
        }
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Mail { from } = request else {
            return self.client_error(ClientError::Syntax("MAIL FROM:<reverse-path> [parameters]"));
        };
        if let Some(name) = unsupported_mail_parameter(&from, self.auth_offered()) {
            return self.client_error(ClientError::UnsupportedParameter(name.to_string()));
        }
        // RFC 1870 §6.1: refuse early what would be refused after the content.
        if from.size > self.config.max_message_size {
            return self.client_error(ClientError::DeclaredTooBig);
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let address = from.address.into_owned();
        if address.is_empty() && classify_empty_path(line) != EmptyPath::Null {
            // `<postmaster>` or `<"">`: neither is a valid reverse-path.
            return self.client_error(ClientError::InvalidSender);
        }
        if let Err(error) = check_address(line, &address, smtputf8) {
            return self.client_error(error);
        }
        if self.config.mode == Mode::Submission && self.config.sender_must_match_login {
            let owned = self
                .authenticated
                .as_deref()
                .is_some_and(|user| !address.is_empty() && same_address(user, &address));
            if !owned {
                return self.client_error(ClientError::SenderNotOwned);
            }
        }
        let transaction = Transaction {
            mail_from: address,
            body_8bit: from.flags & MAIL_BODY_8BITMIME != 0,
            smtputf8,
            declared_size: from.size as u64,
            ..Transaction::default()
        };
        // Only the host knows its domains; the null sender claims none.
        if self.config.mode == Mode::Inbound
            && self.config.check_sender
            && self.authenticated.is_none()
            && !transaction.mail_from.is_empty()
        {
            let address = transaction.mail_from.clone();
            return self.request(
                Action::CheckSender { address },
                Awaiting::Sender { transaction },
            );
        }
        self.transaction = Some(transaction);
        self.reply(reply::SENDER_OK);
    }

    /// The host's verdict on an unauthenticated inbound sender. A refusal counts as a
    /// client error (it bounds probing); a temporary failure does not.
    pub(super) fn on_sender_checked(&mut self, transaction: Transaction, verdict: SenderVerdict) {
        match verdict {
            SenderVerdict::Accepted => {
                self.transaction = Some(transaction);
                self.reply(reply::SENDER_OK);
            }
            SenderVerdict::LocalNeedsAuth => self.client_error(ClientError::LocalSenderNeedsAuth),
            SenderVerdict::Temporary => self.reply(reply::SENDER_TEMPORARY),
        }
    }

    /// RFC 5321 §4.1.1.3 RCPT. The host decides what the address is; an address already
    /// accepted is accepted again without asking.
    pub(super) fn cmd_rcpt(&mut self, line: &[u8]) {
        let Some(transaction) = &self.transaction else {
            return self.client_error(ClientError::BadSequence(reply::NEED_MAIL));
        };
        if transaction.chunking {
            return self.client_error(ClientError::BadSequence(reply::RCPT_AFTER_BDAT));
        }
        let smtputf8 = transaction.smtputf8;
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Rcpt { to } = request else {
            return self.client_error(ClientError::Syntax("RCPT TO:<forward-path> [parameters]"));
        };
        if let Some(name) = unsupported_rcpt_parameter(&to) {
            return self.client_error(ClientError::UnsupportedParameter(name.to_string()));
        }
        let mut address = to.address.into_owned();
        if address.is_empty() {
            match classify_empty_path(line) {
                EmptyPath::Postmaster => address = "postmaster".to_string(),
                EmptyPath::Null | EmptyPath::Invalid => {
                    return self.client_error(ClientError::InvalidRecipient);
                }
            }
        }
        if let Err(error) = check_address(line, &address, smtputf8) {
            return self.client_error(if error == ClientError::InvalidSender {
                ClientError::InvalidRecipient
            } else {
                error
            });
        }
        let size = self.transaction.as_ref().map_or(0, |tx| tx.declared_size);
        let recipients = self
            .transaction
            .as_ref()
            .map_or(&[][..], |tx| tx.recipients.as_slice());
        if recipients.iter().any(|known| same_address(known, &address)) {
            return self.reply(reply::RECIPIENT_OK);
        }
        if recipients.len() >= self.config.max_recipients {
            return self.reply(reply::TOO_MANY_RECIPIENTS);
        }
        self.request(
            Action::CheckRecipient {
                address: address.clone(),
                size,
            },
            Awaiting::Recipient { address },
        );
    }

    /// RFC 5321 §3.3: the host's verdict on one RCPT. Refusals count as client errors,
    /// which bounds address harvesting; a temporary failure does not.
    pub(super) fn on_recipient_checked(&mut self, address: String, verdict: RecipientVerdict) {
        match verdict {
            RecipientVerdict::Local | RecipientVerdict::Remote => {
                if let Some(transaction) = &mut self.transaction {
                    transaction.recipients.push(address);
                }
                self.reply(reply::RECIPIENT_OK);
            }
            RecipientVerdict::UnknownUser => self.client_error(ClientError::UnknownUser),
            RecipientVerdict::RelayDenied => self.client_error(ClientError::RelayDenied),
            // Not the client's mistake: not counted.
            RecipientVerdict::MailboxFull => self.reply(reply::MAILBOX_FULL),
            RecipientVerdict::Temporary => self.reply(reply::RECIPIENT_TEMPORARY),
        }
    }

    /// RFC 5321 §4.1.1.4 DATA.
    pub(super) fn cmd_data(&mut self, line: &[u8]) {
        if self.parse(line).is_none() {
            return;
        }
        let Some(transaction) = &self.transaction else {
            return self.client_error(ClientError::BadSequence(reply::NEED_MAIL));
        };
        if transaction.chunking {
            return self.client_error(ClientError::BadSequence(reply::DATA_AFTER_BDAT));
        }
        if transaction.recipients.is_empty() {
            return self.client_error(ClientError::NoValidRecipients);
        }
        self.reading = Reading::Data(DataBody::new());
        self.reply(reply::START_DATA);
    }

    /// The content after `354` ended.
    pub(super) fn on_data_end(&mut self, end: BodyEnd) {
        match end {
            BodyEnd::Complete => self.deliver(),
            // RFC 1870 §6.2; the transaction is over either way.
            BodyEnd::TooBig => {
                self.reset_transaction();
                self.client_error(ClientError::TooBig);
            }
        }
    }

    /// RFC 3030 §2 BDAT. The chunk follows the command whatever the reply will be, so
    /// once its size is known it is read in any case; a refused chunk is dropped and the
    /// refusal sent after it. Only a command whose size cannot be read leaves the bytes
    /// after it to be read as commands: nothing else can be done with them.
    pub(super) fn cmd_bdat(&mut self, line: &[u8]) {
        let Some(request) = self.parse(line) else {
            return;
        };
        let Request::Bdat {
            chunk_size: size,
            is_last: last,
        } = request
        else {
            return self.client_error(ClientError::Syntax("BDAT chunk-size [LAST]"));
        };
        let limit = self.config.max_message_size;
        let refusal = match &mut self.transaction {
            None => Some(ClientError::BadSequence(reply::NEED_MAIL)),
            Some(tx) if tx.recipients.is_empty() => Some(ClientError::NoValidRecipients),
            Some(tx) if (tx.spooled + tx.message.len()).saturating_add(size) > limit => {
                Some(ClientError::TooBig)
            }
            Some(tx) => {
                tx.chunking = true;
                None
            }
        };
        let body = match refusal {
            None => ChunkBody::keep(size, last),
            Some(ClientError::TooBig) => {
                // RFC 3030 §3: a refused chunk fails the whole transaction.
                self.reset_transaction();
                ChunkBody::discard(size)
            }
            Some(_) => ChunkBody::discard(size),
        };
        self.reading = Reading::Chunk {
            body,
            size,
            last,
            refusal,
        };
    }

    /// A BDAT chunk was read: its reply, or, with LAST, the message goes to the host.
    pub(super) fn on_chunk_end(&mut self, size: usize, last: bool, refusal: Option<ClientError>) {
        match refusal {
            Some(error) => self.client_error(error),
            None if last => self.deliver(),
            None => {
                let text = format!("250 2.0.0 {size} octets received");
                self.reply(&text);
            }
        }
    }

    /// Hands the message to the host. The transaction ends here (RFC 5321 §4.1.1.4): the
    /// next MAIL starts afresh, whatever the outcome; the login stays.
    fn deliver(&mut self) {
        let Some(transaction) = self.transaction.take() else {
            return self.client_error(ClientError::BadSequence(reply::NEED_MAIL));
        };
        if self.config.mode == Mode::Submission
            && self.config.from_must_match_login
            && let Some(user) = &self.authenticated
            && !transaction
                .header_bytes()
                .is_some_and(|header| from_header_owned(header, user))
        {
            return self.client_error(ClientError::FromNotOwned);
        }
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            esmtp: self.esmtp,
            authenticated_as: self.authenticated.clone(),
            mail_from: transaction.mail_from,
            recipients: transaction.recipients,
            body_8bit: transaction.body_8bit,
            smtputf8: transaction.smtputf8,
            message: transaction.message,
            spooled: transaction.spooled,
            tls: self.tls_active,
        };
        self.request(Action::Deliver(envelope), Awaiting::Delivery);
    }

    /// The reply that tells the client whether the message is now the server's
    /// responsibility (RFC 5321 §4.1.1.4, §6.1). A host refusal is not the client's
    /// mistake and is not counted.
    pub(super) fn on_delivered(&mut self, result: Result<String, DeliveryFailure>) {
        let text = match result {
            Ok(queue_id) => format!("250 2.0.0 Ok: queued as {}", reply::sanitize(&queue_id, 64)),
            Err(DeliveryFailure::Temporary) => reply::DELIVERY_TEMPORARY.to_string(),
            Err(DeliveryFailure::NoSpace) => reply::DELIVERY_NO_SPACE.to_string(),
            Err(DeliveryFailure::TooBig) => reply::DELIVERY_TOO_BIG.to_string(),
            Err(DeliveryFailure::MailboxFull) => reply::MAILBOX_FULL.to_string(),
            Err(DeliveryFailure::Permanent(text)) => {
                format!("554 5.0.0 {}", reply::sanitize(&text, 200))
            }
        };
        self.reply(&text);
    }
}

/// Address checks smtp-proto leaves to the server: RFC 6531 §3.4, a non-ASCII address
/// needs `SMTPUTF8` on MAIL; and the address must be the client's own bytes (smtp-proto
/// replaces invalid UTF-8 with U+FFFD, which would make it another address).
fn check_address(line: &[u8], address: &str, smtputf8: bool) -> Result<(), ClientError> {
    if address.is_ascii() {
        return Ok(());
    }
    if std::str::from_utf8(line).is_err() || address.chars().any(char::is_control) {
        return Err(ClientError::InvalidSender);
    }
    if !smtputf8 {
        return Err(ClientError::NeedsSmtputf8);
    }
    Ok(())
}

/// RFC 6409 §8: whether every address of every `From:` field of the message's header is
/// `user`'s. No `From:` at all passes (it poses as nobody); a `From:` field without a
/// readable address, or a group, fails (it cannot be shown to be the user's). Only the
/// header section is parsed.
fn from_header_owned(message: &[u8], user: &str) -> bool {
    use mail_parser::{HeaderName, HeaderValue, MessageParser};
    let Some(parsed) = MessageParser::new().parse_headers(message) else {
        return true;
    };
    parsed
        .headers()
        .iter()
        .filter(|header| header.name == HeaderName::From)
        .all(|header| match &header.value {
            HeaderValue::Address(addresses) => {
                let mut count = 0;
                addresses.iter().all(|addr| {
                    count += 1;
                    addr.address()
                        .is_some_and(|address| same_address(address, user))
                }) && count > 0
            }
            _ => false,
        })
}

/// Two addresses are the same mailbox, as far as this server tells them apart: equal but
/// for case. (RFC 5321 §2.4 lets the local part be case-sensitive; no mailbox here is.)
fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    fn inbound_greeted() -> Session {
        let mut s = start(inbound(), false);
        send(&mut s, "EHLO relay.example.net\r\n");
        s
    }

    fn submission_logged_in() -> Session {
        let mut s = start(submission(), true);
        login(&mut s);
        s
    }

    /// Runs a message through with the host accepting everything.
    fn with_recipient(s: &mut Session, from: &str, rcpt: &str) {
        assert_eq!(
            send(s, &format!("MAIL FROM:<{from}>\r\n")),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            send(s, &format!("RCPT TO:<{rcpt}>\r\n")),
            format!("[check {rcpt}]\n")
        );
        assert_eq!(
            answer(s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 Recipient OK\r\n"
        );
    }

    #[test]
    fn submission_needs_auth_and_ehlo() {
        let mut s = start(submission(), true);
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com>\r\n"),
            "503 5.5.1 Send EHLO or HELO first\r\n"
        );
        send(&mut s, "EHLO client\r\n");
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com>\r\n"),
            "530 5.7.0 Authentication required\r\n"
        );
    }

    #[test]
    fn sender_must_match_login() {
        let mut s = submission_logged_in();
        assert_eq!(
            send(&mut s, "MAIL FROM:<mallory@example.com>\r\n"),
            "553 5.7.1 Sender address not owned by authenticated user\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<>\r\n"),
            "553 5.7.1 Sender address not owned by authenticated user\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<Alice@Example.COM>\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
    }

    /// Sends one message as alice and returns what the session answered after the DATA.
    fn submit(s: &mut Session, message: &str) -> String {
        with_recipient(s, "alice@example.com", "bob@example.com");
        assert_eq!(send(s, "DATA\r\n"), format!("{}\r\n", reply::START_DATA));
        send(s, &format!("{message}.\r\n"))
    }

    const FROM_NOT_OWNED: &str =
        "553 5.7.1 From header address not owned by authenticated user\r\n";

    #[test]
    fn from_header_must_be_the_login() {
        for message in [
            "From: \"CEO\" <ceo@example.com>\r\nSubject: x\r\n\r\nhi\r\n",
            "From: alice@example.com, ceo@example.com\r\n\r\nhi\r\n",
            "From: alice@example.com\r\nFrom: ceo@example.com\r\n\r\nhi\r\n",
            "From: ceo@example.com\r\nFrom: alice@example.com\r\n\r\nhi\r\n",
            "From: Team: ceo@example.com;\r\n\r\nhi\r\n",
            "From: Nobody;\r\n\r\nhi\r\n",
            "From: undisclosed:;\r\n\r\nhi\r\n",
            "From:\r\n\r\nhi\r\n",
            "from: \"alice@example.com\" <ceo@example.com>\r\n\r\nhi\r\n",
            "Subject: folded\r\nFROM: Alice\r\n <ceo@example.com>\r\n\r\nhi\r\n",
        ] {
            let mut s = submission_logged_in();
            assert_eq!(submit(&mut s, message), FROM_NOT_OWNED, "{message:?}");
            // The transaction is over; the session goes on.
            assert_eq!(
                send(&mut s, "RCPT TO:<bob@example.com>\r\n"),
                "503 5.5.1 Need MAIL command first\r\n"
            );
        }
    }

    #[test]
    fn own_from_header_or_none_passes() {
        for message in [
            "From: alice@example.com\r\n\r\nhi\r\n",
            "From: \"Alice A.\" <Alice@EXAMPLE.com>\r\nSubject: x\r\n\r\n",
            "From: alice@example.com, ALICE@example.com\r\n\r\n",
            "Subject: no from\r\n\r\nFrom: ceo@example.com\r\n",
            "hi\r\n",
        ] {
            let mut s = submission_logged_in();
            let out = submit(&mut s, message);
            assert!(
                out.starts_with("[deliver <alice@example.com>"),
                "{message:?}: {out}"
            );
        }
    }

    #[test]
    fn from_header_unchecked_when_off_and_inbound() {
        let config = SmtpConfig {
            from_must_match_login: false,
            ..submission()
        };
        let mut s = start(config, true);
        login(&mut s);
        let out = submit(&mut s, "From: ceo@example.com\r\n\r\nhi\r\n");
        assert!(out.starts_with("[deliver "), "{out}");
        let mut s = inbound_greeted();
        with_recipient(&mut s, "ceo@remote.example", "alice@example.com");
        send(&mut s, "DATA\r\n");
        let out = send(&mut s, "From: bob@example.com\r\n\r\nhi\r\n.\r\n");
        assert!(out.starts_with("[deliver "), "{out}");
    }

    fn inbound_checking_senders() -> Session {
        let config = SmtpConfig {
            check_sender: true,
            ..inbound()
        };
        let mut s = start(config, false);
        send(&mut s, "EHLO relay.example.net\r\n");
        s
    }

    #[test]
    fn local_senders_need_authentication_inbound() {
        let mut s = inbound_checking_senders();
        assert_eq!(
            send(
                &mut s,
                "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
            ),
            "[sender alice@example.com]\n"
        );
        assert_eq!(
            answer(&mut s, Input::SenderChecked(SenderVerdict::LocalNeedsAuth)),
            "550 5.7.1 Authentication required to send as a local sender\r\n\
             503 5.5.1 Need MAIL command first\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<x@remote.example>\r\n"),
            "[sender x@remote.example]\n"
        );
        assert_eq!(
            answer(&mut s, Input::SenderChecked(SenderVerdict::Temporary)),
            "451 4.3.0 Sender temporarily unverifiable, try again later\r\n"
        );
        send(&mut s, "MAIL FROM:<x@remote.example>\r\n");
        assert_eq!(
            answer(&mut s, Input::SenderChecked(SenderVerdict::Accepted)),
            "250 2.1.0 Sender OK\r\n"
        );
        send(&mut s, "RSET\r\n");
        // The null sender claims no domain: the host is not asked.
        assert_eq!(send(&mut s, "MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
        // An answer nobody asked for is ignored.
        assert_eq!(
            answer(&mut s, Input::SenderChecked(SenderVerdict::LocalNeedsAuth)),
            ""
        );
    }

    #[test]
    fn senders_unchecked_without_check_sender() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com>\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
    }

    #[test]
    fn bare_postmaster_is_a_recipient() {
        // RFC 5321 §4.5.1: handed to the host as `postmaster`, in any case.
        let mut s = inbound_greeted();
        send(&mut s, "MAIL FROM:<x@remote.example>\r\n");
        assert_eq!(
            send(&mut s, "RCPT TO:<PostMaster>\r\n"),
            "[check postmaster]\n"
        );
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 Recipient OK\r\n"
        );
    }

    #[test]
    fn any_sender_when_matching_is_off() {
        let config = SmtpConfig {
            sender_must_match_login: false,
            ..submission()
        };
        let mut s = start(config, true);
        login(&mut s);
        assert_eq!(send(&mut s, "MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
    }

    #[test]
    fn mail_parameters() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example> SIZE=1001\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example> SIZE=abc\r\n"),
            "501 5.5.4 Invalid SIZE parameter\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example> FOO=BAR\r\n"),
            "555 5.5.4 Unsupported parameter FOO=BAR\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example> RET=HDRS\r\n"),
            "555 5.5.4 Unsupported parameter RET\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<a@remote.example> AUTH=<>\r\n"),
            "555 5.5.4 Unsupported parameter AUTH\r\n"
        );
        assert_eq!(
            send(
                &mut s,
                "MAIL FROM:<a@remote.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n"
            ),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<b@remote.example>\r\n"),
            "503 5.5.1 Sender already specified\r\n"
        );
    }

    #[test]
    fn mail_syntax() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "MAIL FROM:a@remote.example\r\n"),
            "501 5.5.4 Syntax: MAIL FROM:<reverse-path> [parameters]\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL TO:<a@remote.example>\r\n"),
            "501 5.5.4 Syntax: MAIL FROM:<reverse-path> [parameters]\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<no-domain>\r\n"),
            "501 5.1.7 Invalid sender address\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<postmaster>\r\n"),
            "501 5.1.7 Invalid sender address\r\n"
        );
        assert_eq!(send(&mut s, "MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
    }

    #[test]
    fn smtputf8_addresses() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "MAIL FROM:<zoë@remote.example>\r\n"),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"
        );
        assert_eq!(
            send_bytes(&mut s, b"MAIL FROM:<zo\xff@remote.example> SMTPUTF8\r\n"),
            "501 5.1.7 Invalid sender address\r\n"
        );
        assert_eq!(
            send(&mut s, "MAIL FROM:<zoë@remote.example> SMTPUTF8\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<élodie@example.com>\r\n"),
            "[check élodie@example.com]\n"
        );
    }

    #[test]
    fn rcpt_sequence_and_syntax() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "RCPT TO:<alice@example.com>\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        assert_eq!(
            send(&mut s, "RCPT TO:<>\r\n"),
            "501 5.1.3 Invalid recipient address\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:alice@example.com\r\n"),
            "501 5.5.4 Syntax: RCPT TO:<forward-path> [parameters]\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<alice@example.com> NOTIFY=NEVER\r\n"),
            "555 5.5.4 Unsupported parameter NOTIFY\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<zoë@example.com>\r\n"),
            "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<Postmaster>\r\n"),
            "[check postmaster]\n"
        );
    }

    #[test]
    fn recipient_verdicts() {
        let mut s = inbound_greeted();
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        for (index, (verdict, reply)) in [
            (
                RecipientVerdict::UnknownUser,
                "550 5.1.1 Mailbox unavailable\r\n",
            ),
            (
                RecipientVerdict::RelayDenied,
                "550 5.7.1 Relaying denied\r\n",
            ),
            (
                RecipientVerdict::Temporary,
                "451 4.3.0 Recipient temporarily unavailable, try again later\r\n",
            ),
            (RecipientVerdict::Remote, "250 2.1.5 Recipient OK\r\n"),
            (RecipientVerdict::Local, "250 2.1.5 Recipient OK\r\n"),
            (RecipientVerdict::MailboxFull, "452 4.2.2 Mailbox full\r\n"),
        ]
        .into_iter()
        .enumerate()
        {
            send(&mut s, &format!("RCPT TO:<x{index}@example.com>\r\n"));
            assert_eq!(answer(&mut s, Input::RecipientChecked(verdict)), reply);
        }
        // Already accepted: no second check, no duplicate.
        assert_eq!(
            send(&mut s, "RCPT TO:<X3@example.com>\r\n"),
            "250 2.1.5 Recipient OK\r\n"
        );
        assert_eq!(send(&mut s, "DATA\r\n"), format!("{START}\r\n"));
        let out = send(&mut s, "hi\r\n.\r\n");
        assert_eq!(
            out,
            "[deliver <a@remote.example> -> x3@example.com,x4@example.com 4]\n"
        );
    }

    const START: &str = "354 Start mail input; end with <CRLF>.<CRLF>";

    /// RFC 1870 SIZE reaches the recipient check; a full mailbox is refused with 452
    /// without counting as the client's error, and the message goes to the others.
    #[test]
    fn a_full_mailbox_is_refused_alone_with_the_declared_size() {
        let mut s = start(
            SmtpConfig {
                max_errors: 1,
                ..submission()
            },
            true,
        );
        login(&mut s);
        assert_eq!(
            send(&mut s, "MAIL FROM:<alice@example.com> SIZE=234\r\n"),
            "250 2.1.0 Sender OK\r\n"
        );
        s.handle(Input::Bytes(b"RCPT TO:<full@example.com>\r\n"));
        assert_eq!(
            s.next_action(),
            Some(Action::CheckRecipient {
                address: "full@example.com".into(),
                size: 234,
            })
        );
        for _ in 0..3 {
            assert_eq!(
                answer(
                    &mut s,
                    Input::RecipientChecked(RecipientVerdict::MailboxFull)
                ),
                "452 4.2.2 Mailbox full\r\n"
            );
            send(&mut s, "RCPT TO:<full@example.com>\r\n");
        }
        assert_eq!(
            answer(
                &mut s,
                Input::RecipientChecked(RecipientVerdict::MailboxFull)
            ),
            "452 4.2.2 Mailbox full\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<bob@example.com>\r\n"),
            "[check bob@example.com]\n"
        );
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local)),
            "250 2.1.5 Recipient OK\r\n"
        );
        assert_eq!(send(&mut s, "DATA\r\n"), format!("{START}\r\n"));
        assert_eq!(
            send(&mut s, "From: alice@example.com\r\n\r\nhi\r\n.\r\n"),
            "[deliver <alice@example.com> -> bob@example.com 31]\n"
        );
        assert_eq!(
            answer(&mut s, Input::Delivered(Ok("Q1".into()))),
            "250 2.0.0 Ok: queued as Q1\r\n"
        );
        // A message without SIZE is checked with 0: at or over the limit only.
        send(&mut s, "MAIL FROM:<alice@example.com>\r\n");
        s.handle(Input::Bytes(b"RCPT TO:<bob@example.com>\r\n"));
        assert_eq!(
            s.next_action(),
            Some(Action::CheckRecipient {
                address: "bob@example.com".into(),
                size: 0,
            })
        );
    }

    #[test]
    fn too_many_recipients() {
        let config = SmtpConfig {
            max_recipients: 2,
            ..inbound()
        };
        let mut s = start(config, false);
        send(&mut s, "EHLO client\r\n");
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        for rcpt in ["one@example.com", "two@example.com"] {
            send(&mut s, &format!("RCPT TO:<{rcpt}>\r\n"));
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        }
        assert_eq!(
            send(&mut s, "RCPT TO:<three@example.com>\r\n"),
            "452 4.5.3 Too many recipients\r\n"
        );
    }

    #[test]
    fn data_needs_recipients() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "DATA\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        send(&mut s, "RCPT TO:<nobody@example.com>\r\n");
        answer(
            &mut s,
            Input::RecipientChecked(RecipientVerdict::UnknownUser),
        );
        assert_eq!(
            send(&mut s, "DATA\r\n"),
            "554 5.5.1 No valid recipients\r\n"
        );
        // The body a client sent anyway is read as commands.
        assert_eq!(
            send(&mut s, "Subject: x\r\n"),
            "500 5.5.1 Unknown command\r\n"
        );
    }

    #[test]
    fn data_unstuffs_and_delivers() {
        let mut s = submission_logged_in();
        with_recipient(&mut s, "alice@example.com", "bob@example.com");
        assert_eq!(send(&mut s, "DATA\r\n"), format!("{START}\r\n"));
        assert_eq!(send(&mut s, "Subject: hi\r\n\r\n..dot\r\n"), "");
        let out = send(&mut s, ".\r\n");
        assert_eq!(out, "[deliver <alice@example.com> -> bob@example.com 21]\n");
        let envelope = last_envelope();
        assert_eq!(envelope.message, b"Subject: hi\r\n\r\n.dot\r\n");
        assert_eq!(envelope.helo, "client.example.org");
        assert_eq!(
            envelope.authenticated_as.as_deref(),
            Some("alice@example.com")
        );
        assert!(envelope.tls);
        assert!(!envelope.body_8bit && !envelope.smtputf8);
        assert_eq!(
            answer(&mut s, Input::Delivered(Ok("Q1".into()))),
            "250 2.0.0 Ok: queued as Q1\r\n"
        );
        // The transaction is over; the login is not.
        assert_eq!(
            send(&mut s, "RCPT TO:<bob@example.com>\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
        assert_eq!(s.authenticated_user(), Some("alice@example.com"));
    }

    #[test]
    fn delivery_failures() {
        for (failure, reply) in [
            (
                DeliveryFailure::Temporary,
                "451 4.3.0 Temporary failure, message not accepted, try again later\r\n",
            ),
            (DeliveryFailure::TooBig, "552 5.3.4 Message too big\r\n"),
            (DeliveryFailure::MailboxFull, "452 4.2.2 Mailbox full\r\n"),
            (
                DeliveryFailure::NoSpace,
                "452 4.3.1 Insufficient system storage, try again later\r\n",
            ),
            (
                DeliveryFailure::Permanent("Policy\r\nrejection".into()),
                "554 5.0.0 Policyrejection\r\n",
            ),
        ] {
            let mut s = inbound_greeted();
            with_recipient(&mut s, "a@remote.example", "alice@example.com");
            send(&mut s, "DATA\r\n");
            send(&mut s, "x\r\n.\r\n");
            assert_eq!(answer(&mut s, Input::Delivered(Err(failure))), reply);
            assert_eq!(
                send(&mut s, "MAIL FROM:<a@remote.example>\r\n"),
                "250 2.1.0 Sender OK\r\n"
            );
        }
    }

    #[test]
    fn data_too_big_is_read_to_the_end() {
        let mut s = inbound_greeted();
        with_recipient(&mut s, "a@remote.example", "alice@example.com");
        send(&mut s, "DATA\r\n");
        let big = "0123456789\r\n".repeat(200);
        assert_eq!(send(&mut s, &big), "");
        assert_eq!(
            send(&mut s, ".\r\nNOOP\r\n"),
            "552 5.3.4 Message too big\r\n250 2.0.0 Ok\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<alice@example.com>\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
    }

    #[test]
    fn body_8bit_and_smtputf8_reach_the_envelope() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(
                &mut s,
                "MAIL FROM:<a@remote.example> BODY=8BITMIME SMTPUTF8\r\n"
            ),
            "250 2.1.0 Sender OK\r\n"
        );
        send(&mut s, "RCPT TO:<alice@example.com>\r\n");
        answer(&mut s, Input::RecipientChecked(RecipientVerdict::Local));
        send(&mut s, "DATA\r\n");
        send_bytes(&mut s, b"caf\xc3\xa9\r\n.\r\n");
        let envelope = last_envelope();
        assert!(envelope.body_8bit && envelope.smtputf8 && !envelope.tls);
        assert_eq!(envelope.authenticated_as, None);
        assert_eq!(envelope.message, b"caf\xc3\xa9\r\n");
    }

    #[test]
    fn rset_clears_the_transaction() {
        let mut s = inbound_greeted();
        with_recipient(&mut s, "a@remote.example", "alice@example.com");
        assert_eq!(send(&mut s, "RSET\r\n"), "250 2.0.0 Ok\r\n");
        assert_eq!(
            send(&mut s, "DATA\r\n"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
    }

    #[test]
    fn bdat_chunks() {
        let mut s = inbound_greeted();
        with_recipient(&mut s, "a@remote.example", "alice@example.com");
        assert_eq!(
            send(&mut s, "BDAT 5\r\nab\r\n."),
            "250 2.0.0 5 octets received\r\n"
        );
        assert_eq!(
            send(&mut s, "RCPT TO:<bob@example.com>\r\n"),
            "503 5.5.1 RCPT not allowed after BDAT\r\n"
        );
        assert_eq!(
            send(&mut s, "DATA\r\n"),
            "503 5.5.1 DATA not allowed after BDAT, use BDAT LAST\r\n"
        );
        assert_eq!(
            send(&mut s, "BDAT 0\r\n"),
            "250 2.0.0 0 octets received\r\n"
        );
        assert_eq!(send(&mut s, "BDAT 3 LAST\r\n"), "");
        assert_eq!(send(&mut s, "x\r"), "");
        assert_eq!(
            send(&mut s, "\n"),
            "[deliver <a@remote.example> -> alice@example.com 8]\n"
        );
        assert_eq!(last_envelope().message, b"ab\r\n.x\r\n");
        assert_eq!(
            answer(&mut s, Input::Delivered(Ok("Q7".into()))),
            "250 2.0.0 Ok: queued as Q7\r\n"
        );
    }

    #[test]
    fn bdat_refusals_still_read_the_chunk() {
        let mut s = inbound_greeted();
        assert_eq!(
            send(&mut s, "BDAT 6 LAST\r\nRSET\r\nNOOP\r\n"),
            "503 5.5.1 Need MAIL command first\r\n250 2.0.0 Ok\r\n"
        );
        send(&mut s, "MAIL FROM:<a@remote.example>\r\n");
        assert_eq!(
            send(&mut s, "BDAT 6\r\nQUIT\r\n"),
            "554 5.5.1 No valid recipients\r\n"
        );
        assert_eq!(
            send(&mut s, "BDAT x\r\n"),
            "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n"
        );
    }

    #[test]
    fn bdat_too_big_fails_the_transaction() {
        let mut s = inbound_greeted();
        with_recipient(&mut s, "a@remote.example", "alice@example.com");
        assert_eq!(send(&mut s, "BDAT 600\r\n"), "");
        assert_eq!(
            send(&mut s, &"x".repeat(600)),
            "250 2.0.0 600 octets received\r\n"
        );
        assert_eq!(send(&mut s, "BDAT 401 LAST\r\n"), "");
        assert_eq!(
            send(&mut s, &format!("{}NOOP\r\n", "y".repeat(401))),
            "552 5.3.4 Message too big\r\n250 2.0.0 Ok\r\n"
        );
        assert_eq!(
            send(&mut s, "BDAT 1 LAST\r\nz"),
            "503 5.5.1 Need MAIL command first\r\n"
        );
    }

    #[test]
    fn pipelined_group_replies_in_one_write_in_order() {
        let mut s = submission_logged_in();
        s.handle(Input::Bytes(
            b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n\
              RCPT TO:<carol@remote.example>\r\nDATA\r\n",
        ));
        assert_eq!(
            s.next_action(),
            Some(Action::Write(b"250 2.1.0 Sender OK\r\n".to_vec()))
        );
        assert_eq!(
            s.next_action(),
            Some(Action::CheckRecipient {
                address: "bob@example.com".into(),
                size: 0,
            })
        );
        assert_eq!(s.next_action(), None);
        s.handle(Input::RecipientChecked(RecipientVerdict::Local));
        assert_eq!(
            drain(&mut s),
            "250 2.1.5 Recipient OK\r\n[check carol@remote.example]\n"
        );
        assert_eq!(
            answer(&mut s, Input::RecipientChecked(RecipientVerdict::Remote)),
            format!("250 2.1.5 Recipient OK\r\n{START}\r\n")
        );
    }

    /// A session spooling past 64 bytes, with 4,000 bytes allowed per message.
    fn spooling(config: SmtpConfig) -> Session {
        let config = SmtpConfig {
            spool_threshold: 64,
            max_message_size: 4000,
            ..config
        };
        let mut s = start(config, true);
        login(&mut s);
        s
    }

    /// Sends `bytes` in pieces of `step`, returning the actions, spooled chunks apart.
    fn send_spooling(s: &mut Session, bytes: &[u8], step: usize) -> (String, Vec<(bool, usize)>) {
        let (mut out, mut spools) = (String::new(), Vec::new());
        for piece in bytes.chunks(step) {
            s.handle(Input::Bytes(piece));
            while let Some(action) = s.next_action() {
                if let Action::Spool { first, bytes } = &action {
                    spools.push((*first, bytes.len()));
                }
                out.push_str(&render(action));
            }
            let held = s.transaction.as_ref().map_or(0, |tx| tx.message.len());
            assert!(held <= 64 + 2 + step, "{held} bytes held in memory");
        }
        (out, spools)
    }

    fn big_message(from: &str, lines: usize) -> String {
        let mut message = format!("From: {from}\r\nSubject: big\r\n\r\n");
        for i in 0..lines {
            message.push_str(&format!("line {i}\r\n.dot {i}\r\n"));
        }
        message
    }

    #[test]
    fn data_past_the_threshold_is_spooled_and_reassembled_exactly() {
        for step in [1, 7, 100, 5000] {
            let mut s = spooling(submission());
            with_recipient(&mut s, "alice@example.com", "bob@example.com");
            assert_eq!(
                send(&mut s, "DATA\r\n"),
                format!("{}\r\n", reply::START_DATA)
            );
            let message = big_message("alice@example.com", 100);
            let wire = message.replace("\r\n.", "\r\n..") + ".\r\n";
            let (out, spools) = send_spooling(&mut s, wire.as_bytes(), step);
            assert!(
                out.ends_with(&format!(
                    "[deliver <alice@example.com> -> bob@example.com {}]\n",
                    message.len()
                )),
                "{out}"
            );
            assert!(!spools.is_empty() || step == 5000, "{step}");
            assert!(
                spools
                    .iter()
                    .enumerate()
                    .all(|(i, (first, _))| *first == (i == 0))
            );
            assert_eq!(last_envelope().message, message.as_bytes(), "{step}");
        }
    }

    #[test]
    fn spooled_content_counts_toward_the_size_limit() {
        let mut s = spooling(submission());
        with_recipient(&mut s, "alice@example.com", "bob@example.com");
        send(&mut s, "DATA\r\n");
        // 100 lines of ~20 bytes: over 4,000.
        let wire = big_message("alice@example.com", 250).replace("\r\n.", "\r\n..") + ".\r\n";
        let (out, _) = send_spooling(&mut s, wire.as_bytes(), 100);
        assert!(out.ends_with("552 5.3.4 Message too big\r\n"), "{out}");
        let mut s = spooling(submission());
        with_recipient(&mut s, "alice@example.com", "bob@example.com");
        assert_eq!(send(&mut s, "BDAT 3000\r\n"), "");
        let (out, spools) = send_spooling(&mut s, &[b'x'; 3000], 500);
        assert_eq!(out, "250 2.0.0 3000 octets received\r\n");
        assert_eq!(spools.iter().map(|(_, n)| n).sum::<usize>(), 2998);
        // 3,000 spooled and kept plus 1,001 is over 4,000; the chunk is read and dropped.
        let out = send(&mut s, &format!("BDAT 1001 LAST\r\n{}", "y".repeat(1001)));
        assert_eq!(out, "552 5.3.4 Message too big\r\n");
    }

    #[test]
    fn a_new_transaction_starts_a_new_spool() {
        let mut s = spooling(submission());
        with_recipient(&mut s, "alice@example.com", "bob@example.com");
        assert_eq!(send(&mut s, "BDAT 500\r\n"), "");
        let (_, spools) = send_spooling(&mut s, &[b'a'; 500], 500);
        assert_eq!(spools, vec![(true, 498)]);
        assert_eq!(send(&mut s, "RSET\r\n"), "250 2.0.0 Ok\r\n");
        with_recipient(&mut s, "alice@example.com", "bob@example.com");
        assert_eq!(send(&mut s, "BDAT 200 LAST\r\n"), "");
        // No header at all: it poses as nobody.
        let message = [b"\r\n".as_slice(), &[b'b'; 198]].concat();
        let (out, spools) = send_spooling(&mut s, &message, 200);
        assert_eq!(spools, vec![(true, 198)]);
        assert!(
            out.ends_with("[deliver <alice@example.com> -> bob@example.com 200]\n"),
            "{out}"
        );
        assert_eq!(last_envelope().message, message);
    }

    #[test]
    fn the_from_check_sees_the_header_of_a_spooled_message() {
        let submit_in_pieces = |message: &str| {
            let mut s = spooling(submission());
            with_recipient(&mut s, "alice@example.com", "bob@example.com");
            send(&mut s, "DATA\r\n");
            let wire = message.replace("\r\n.", "\r\n..") + ".\r\n";
            let (out, spools) = send_spooling(&mut s, wire.as_bytes(), 10);
            assert!(!spools.is_empty());
            out
        };
        let out = submit_in_pieces(&big_message("ceo@example.com", 50));
        assert!(out.ends_with(FROM_NOT_OWNED), "{out}");
        let out = submit_in_pieces(&big_message("alice@example.com", 50));
        assert!(out.contains("[deliver <alice@example.com>"), "{out}");
        // A header longer than what is kept cannot be checked: refused, not passed.
        let long = format!(
            "X-Pad: {}\r\n{}",
            "p".repeat(100),
            big_message("alice@example.com", 5)
        );
        let out = submit_in_pieces(&long);
        assert!(out.ends_with(FROM_NOT_OWNED), "{out}");
    }
}
