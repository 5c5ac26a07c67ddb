//! What a command line is, before the session decides what to do with it.
//!
//! Arguments are parsed by smtp-proto's `Request::parse`. The verb is also read here, on
//! its own, for two reasons smtp-proto does not cover: a command's state checks come
//! before its argument checks (RFC 5321 §4.2.4 `503` for `MAIL` before `EHLO`, whatever
//! the arguments), which needs the verb even when the arguments do not parse; and verbs
//! smtp-proto does not know at all still deserve `502` rather than `500` when they are
//! real SMTP verbs this server does not implement.

use std::borrow::Cow;

use smtp_proto::{
    MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom, RcptTo,
};

/// The command verbs, by their RFC names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    /// A real verb this server does not implement: ETRN, ATRN, TURN, BURL, LHLO, SEND,
    /// SOML, SAML, VERB, ONEX.
    NotImplemented,
    Unknown,
}

impl Verb {
    /// The verb of a command line: its first word, in any case. Leading spaces are
    /// skipped, as smtp-proto skips them, so both agree on which word is the verb.
    pub(crate) fn of(line: &[u8]) -> Verb {
        let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
        let line = &line[start..];
        let end = line
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let word = &line[..end];
        let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
        match () {
            _ if is("EHLO") => Verb::Ehlo,
            _ if is("HELO") => Verb::Helo,
            _ if is("STARTTLS") => Verb::StartTls,
            _ if is("AUTH") => Verb::Auth,
            _ if is("MAIL") => Verb::Mail,
            _ if is("RCPT") => Verb::Rcpt,
            _ if is("DATA") => Verb::Data,
            _ if is("BDAT") => Verb::Bdat,
            _ if is("RSET") => Verb::Rset,
            _ if is("NOOP") => Verb::Noop,
            _ if is("QUIT") => Verb::Quit,
            _ if is("VRFY") => Verb::Vrfy,
            _ if is("EXPN") => Verb::Expn,
            _ if is("HELP") => Verb::Help,
            _ if [
                "ETRN", "ATRN", "TURN", "BURL", "LHLO", "SEND", "SOML", "SAML", "VERB", "ONEX",
            ]
            .iter()
            .any(|name| is(name)) =>
            {
                Verb::NotImplemented
            }
            _ => Verb::Unknown,
        }
    }
}

/// The first MAIL parameter this server does not offer, by name (RFC 5321 §4.1.1.11:
/// `555`). smtp-proto parses every registered parameter, so the ones of extensions not in
/// the EHLO reply (DSN, BINARYMIME, REQUIRETLS, FUTURERELEASE, DELIVERBY, ...) are turned
/// away here. `AUTH=` (RFC 4954 §5) is accepted, and ignored, where AUTH is offered.
pub(crate) fn unsupported_mail_parameter(
    from: &MailFrom<Cow<'_, str>>,
    auth_offered: bool,
) -> Option<&'static str> {
    let offered_flags = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    if from.flags & MAIL_BODY_BINARYMIME != 0 {
        Some("BODY=BINARYMIME")
    } else if from.flags & !offered_flags != 0 {
        // RET, REQUIRETLS, CONPERM, BY's notify/return/trace flags.
        Some(first_flag_name(from.flags & !offered_flags))
    } else if from.env_id.is_some() {
        Some("ENVID")
    } else if from.by != 0 {
        Some("BY")
    } else if from.trans_id.is_some() {
        Some("TRANSID")
    } else if from.solicit.is_some() {
        Some("SOLICIT")
    } else if from.mtrk.is_some() {
        Some("MTRK")
    } else if from.hold_for != 0 {
        Some("HOLDFOR")
    } else if from.hold_until != 0 {
        Some("HOLDUNTIL")
    } else if from.mt_priority != 0 {
        Some("MT-PRIORITY")
    } else if from.auth.is_some() && !auth_offered {
        Some("AUTH")
    } else {
        None
    }
}

fn first_flag_name(flags: u64) -> &'static str {
    use smtp_proto::*;
    if flags & (MAIL_RET_FULL | MAIL_RET_HDRS) != 0 {
        "RET"
    } else if flags & MAIL_REQUIRETLS != 0 {
        "REQUIRETLS"
    } else if flags & MAIL_CONPERM != 0 {
        "CONPERM"
    } else if flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE) != 0 {
        "BY"
    } else {
        "parameter"
    }
}

/// The first RCPT parameter this server does not offer (all of them: DSN's NOTIFY and
/// ORCPT, RRVS, CONNEG).
pub(crate) fn unsupported_rcpt_parameter(to: &RcptTo<Cow<'_, str>>) -> Option<&'static str> {
    use smtp_proto::*;
    if to.orcpt.is_some() {
        Some("ORCPT")
    } else if to.flags
        & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER)
        != 0
    {
        Some("NOTIFY")
    } else if to.rrvs != 0 || to.flags & (RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0 {
        Some("RRVS")
    } else if to.flags & RCPT_CONNEG != 0 {
        Some("CONNEG")
    } else if to.flags != 0 {
        Some("parameter")
    } else {
        None
    }
}

/// What a path smtp-proto returned as empty really was. It returns `""` both for the null
/// path `<>` and for `<postmaster>` (RFC 5321 §4.1.1.3: the one address without a domain
/// a server must accept), and also for a quoted empty local part; only the raw text tells
/// them apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EmptyPath {
    Null,
    Postmaster,
    Invalid,
}

pub(crate) fn classify_empty_path(line: &[u8]) -> EmptyPath {
    let inner = line
        .iter()
        .position(|&b| b == b'<')
        .and_then(|open| {
            let rest = &line[open + 1..];
            rest.iter()
                .position(|&b| b == b'>')
                .map(|close| &rest[..close])
        })
        .map(<[u8]>::trim_ascii);
    match inner {
        Some(b"") => EmptyPath::Null,
        Some(path) if path.eq_ignore_ascii_case(b"postmaster") => EmptyPath::Postmaster,
        _ => EmptyPath::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtp_proto::Request;

    fn parse(line: &str) -> Request<Cow<'_, str>> {
        match Request::parse(&mut line.as_bytes().iter()) {
            Ok(request) => request,
            Err(error) => panic!("{line:?}: {error:?}"),
        }
    }

    #[test]
    fn verbs_in_any_case() {
        assert_eq!(Verb::of(b"ehlo x\r\n"), Verb::Ehlo);
        assert_eq!(Verb::of(b"  MaIl FROM:<>\r\n"), Verb::Mail);
        assert_eq!(Verb::of(b"StartTLS\r\n"), Verb::StartTls);
        assert_eq!(Verb::of(b"STARTTLSX\r\n"), Verb::Unknown);
        assert_eq!(Verb::of(b"QUIT"), Verb::Quit);
        assert_eq!(Verb::of(b"etrn example.com\r\n"), Verb::NotImplemented);
        assert_eq!(Verb::of(b"\r\n"), Verb::Unknown);
        assert_eq!(Verb::of(b""), Verb::Unknown);
        assert_eq!(Verb::of(b"\xff\xfe\r\n"), Verb::Unknown);
    }

    #[test]
    fn offered_mail_parameters() {
        let Request::Mail { from } =
            parse("MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME SMTPUTF8 AUTH=<>\r\n")
        else {
            panic!("not MAIL");
        };
        assert_eq!(unsupported_mail_parameter(&from, true), None);
        assert_eq!(unsupported_mail_parameter(&from, false), Some("AUTH"));
    }

    #[test]
    fn parameters_not_offered() {
        for (line, name) in [
            ("MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n", "BODY=BINARYMIME"),
            ("MAIL FROM:<a@b.c> RET=FULL\r\n", "RET"),
            ("MAIL FROM:<a@b.c> ENVID=x\r\n", "ENVID"),
            ("MAIL FROM:<a@b.c> REQUIRETLS\r\n", "REQUIRETLS"),
            ("MAIL FROM:<a@b.c> HOLDFOR=10\r\n", "HOLDFOR"),
            ("MAIL FROM:<a@b.c> MT-PRIORITY=3\r\n", "MT-PRIORITY"),
        ] {
            let Request::Mail { from } = parse(line) else {
                panic!("{line}");
            };
            assert_eq!(
                unsupported_mail_parameter(&from, true),
                Some(name),
                "{line}"
            );
        }
        for (line, name) in [
            ("RCPT TO:<a@b.c> NOTIFY=NEVER\r\n", "NOTIFY"),
            ("RCPT TO:<a@b.c> ORCPT=rfc822;a@b.c\r\n", "ORCPT"),
            ("RCPT TO:<a@b.c> CONNEG\r\n", "CONNEG"),
        ] {
            let Request::Rcpt { to } = parse(line) else {
                panic!("{line}");
            };
            assert_eq!(unsupported_rcpt_parameter(&to), Some(name), "{line}");
        }
        let Request::Rcpt { to } = parse("RCPT TO:<a@b.c>\r\n") else {
            panic!("RCPT");
        };
        assert_eq!(unsupported_rcpt_parameter(&to), None);
    }

    #[test]
    fn empty_paths() {
        assert_eq!(classify_empty_path(b"MAIL FROM:<>\r\n"), EmptyPath::Null);
        assert_eq!(classify_empty_path(b"MAIL FROM: < >\r\n"), EmptyPath::Null);
        assert_eq!(
            classify_empty_path(b"RCPT TO:<PostMaster>\r\n"),
            EmptyPath::Postmaster
        );
        assert_eq!(
            classify_empty_path(b"RCPT TO:<\"\">\r\n"),
            EmptyPath::Invalid
        );
        assert_eq!(classify_empty_path(b"RCPT TO:x\r\n"), EmptyPath::Invalid);
    }

    #[test]
    fn smtp_proto_reads_postmaster_and_null_path_alike() {
        // The reason for `classify_empty_path`.
        let Request::Rcpt { to } = parse("RCPT TO:<postmaster>\r\n") else {
            panic!("RCPT");
        };
        assert_eq!(to.address, "");
        let Request::Rcpt { to } = parse("RCPT TO:<>\r\n") else {
            panic!("RCPT");
        };
        assert_eq!(to.address, "");
    }
}
