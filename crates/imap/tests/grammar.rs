//! The IMAP grammar layer end to end: realistic client lines (RFC examples, Thunderbird,
//! Apple Mail, Outlook, mutt, Python's imaplib) through the reader and the parser, every
//! error class with its message, literals split at every point, long sequence sets,
//! modified UTF-7.

use std::time::{Duration, Instant};

use portico_imap::command::{
    AppendData, AppendMessage, CatPart, Command, CommandBody, Date, DateTime, FetchAttr,
    FetchItems, ListReturn, ListSelection, Partial, PreviewForm, QresyncParams, SearchKey,
    SearchReturn, Secret, Section, SectionText, SelectParams, SeqBound, SeqRange, SequenceSet,
    StatusItem, StoreMode, Tag, ThreadAlgorithm,
};
use portico_imap::mutf7;
use portico_imap::parser::{BADCHARSET_MESSAGE, ParseError, parse_command};
use portico_imap::reader::{CommandReader, ReadEvent, ReaderLimits, TooBigWhat};

// ---- Helpers ------------------------------------------------------------------------

fn parse(raw: &str) -> Command {
    parse_bytes(raw.as_bytes())
}

fn parse_bytes(raw: &[u8]) -> Command {
    match parse_command(raw) {
        Ok(cmd) => cmd,
        Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(raw)),
    }
}

fn body(raw: &str) -> CommandBody {
    parse(raw).body
}

fn fail(raw: &str) -> ParseError {
    match parse_command(raw.as_bytes()) {
        Ok(cmd) => panic!("{raw:?} parsed as {cmd:?}"),
        Err(e) => e,
    }
}

fn message(raw: &str) -> String {
    fail(raw).message
}

/// A sequence set from test notation, e.g. `1:5,7,9:*` (independent of the parser).
fn set(spec: &str) -> SequenceSet {
    let bound = |s: &str| match s {
        "*" => SeqBound::Star,
        n => SeqBound::Value(n.parse().unwrap()),
    };
    SequenceSet(
        spec.split(',')
            .map(|r| match r.split_once(':') {
                Some((a, b)) => SeqRange {
                    start: bound(a),
                    end: bound(b),
                },
                None => SeqRange {
                    start: bound(r),
                    end: bound(r),
                },
            })
            .collect(),
    )
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn date(day: u8, month: u8, year: u16) -> Date {
    Date { year, month, day }
}

fn section(part: &[u32], text: Option<SectionText>) -> Section {
    Section {
        part: part.to_vec(),
        text,
    }
}

fn body_peek(text: Option<SectionText>) -> FetchAttr {
    FetchAttr::BodySection {
        peek: true,
        section: section(&[], text),
        partial: None,
    }
}

/// Feeds `chunks` through a reader, accepting every continuation, and parses each
/// command.
fn read_all(limits: ReaderLimits, chunks: &[&[u8]]) -> Vec<ReadEvent> {
    let mut reader = CommandReader::new(limits);
    let mut events = Vec::new();
    for chunk in chunks {
        reader.push(chunk);
        while let Some(event) = reader.next_event() {
            if let ReadEvent::NeedContinuation { .. } = event {
                reader.continuation_answered(true);
            }
            events.push(event);
        }
    }
    events
}

fn commands_of(events: &[ReadEvent]) -> Vec<Result<Command, ParseError>> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadEvent::Command(raw) => Some(parse_command(raw)),
            _ => None,
        })
        .collect()
}

// ---- Any-state commands (RFC 9051 §6.1) ---------------------------------------------

#[test]
fn any_state_commands() {
    assert_eq!(
        parse("abcd CAPABILITY\r\n"),
        Command {
            tag: Tag("abcd".into()),
            body: CommandBody::Capability
        }
    );
    assert_eq!(body("a047 NOOP\r\n"), CommandBody::Noop);
    assert_eq!(body("A023 LOGOUT\r\n"), CommandBody::Logout);
    assert_eq!(body("1 capability\r\n"), CommandBody::Capability);
    assert_eq!(body("a1.1 Capability\r\n"), CommandBody::Capability);
    assert_eq!(parse("a[1] NOOP\r\n").tag, Tag("a[1]".into()));
}

#[test]
fn id_command() {
    assert_eq!(
        body(
            "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \
             \"Pink Floyd Music Limited\")\r\n"
        ),
        CommandBody::Id {
            params: Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), Some("19.34".into())),
                ("vendor".into(), Some("Pink Floyd Music Limited".into())),
            ])
        }
    );
    assert_eq!(body("a ID NIL\r\n"), CommandBody::Id { params: None });
    assert_eq!(body("a ID nil\r\n"), CommandBody::Id { params: None });
    // Thunderbird.
    assert_eq!(
        body("3 ID (\"name\" \"Thunderbird\" \"version\" \"128.3.1\" \"os\" NIL)\r\n"),
        CommandBody::Id {
            params: Some(vec![
                ("name".into(), Some("Thunderbird".into())),
                ("version".into(), Some("128.3.1".into())),
                ("os".into(), None),
            ])
        }
    );
    assert_eq!(
        body("a ID ()\r\n"),
        CommandBody::Id {
            params: Some(vec![])
        }
    );
    assert_eq!(message("a ID (\"name\")\r\n"), "Missing ID value");
    assert_eq!(message("a ID (name \"x\")\r\n"), "Invalid ID field");
    assert_eq!(message("a ID\r\n"), "Missing ID parameters");
}

// ---- Not-authenticated state (RFC 9051 §6.2) ----------------------------------------

#[test]
fn starttls_login_authenticate() {
    assert_eq!(body("a002 STARTTLS\r\n"), CommandBody::StartTls);
    assert_eq!(
        body("a001 LOGIN SMITH SESAME\r\n"),
        CommandBody::Login {
            username: b"SMITH".to_vec(),
            password: Secret(b"SESAME".to_vec())
        }
    );
    // imaplib quotes passwords with specials.
    assert_eq!(
        body("JPFK1 LOGIN alice@example.org \"pass \\\"word\\\\\"\r\n"),
        CommandBody::Login {
            username: b"alice@example.org".to_vec(),
            password: Secret(b"pass \"word\\".to_vec())
        }
    );
    // LITERAL+ (RFC 7888 example).
    assert_eq!(
        body("A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"),
        CommandBody::Login {
            username: b"FRED FOOBAR".to_vec(),
            password: Secret(b"fat man".to_vec())
        }
    );
    assert_eq!(
        body("A001 AUTHENTICATE GSSAPI\r\n"),
        CommandBody::Authenticate {
            mechanism: "GSSAPI".into(),
            initial_response: None
        }
    );
    // SASL-IR (RFC 4959).
    assert_eq!(
        body("a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial_response: Some(Secret(b"dGVzdAB0ZXN0AHRlc3Q=".to_vec()))
        }
    );
    assert_eq!(
        body("a02 AUTHENTICATE EXTERNAL =\r\n"),
        CommandBody::Authenticate {
            mechanism: "EXTERNAL".into(),
            initial_response: Some(Secret(b"=".to_vec()))
        }
    );
    assert_eq!(
        message("a AUTHENTICATE PLAIN dGVz*\r\n"),
        "Invalid SASL initial response"
    );
    assert_eq!(
        message("a AUTHENTICATE PLAIN ===\r\n"),
        "Invalid SASL initial response"
    );
    assert_eq!(message("a LOGIN alice\r\n"), "Missing password");
    assert_eq!(message("a LOGIN\r\n"), "Missing user name");
    assert_eq!(
        message("a AUTHENTICATE\r\n"),
        "Missing authentication mechanism"
    );
}

// ---- Authenticated state (RFC 9051 §6.3) --------------------------------------------

#[test]
fn enable() {
    assert_eq!(
        body("t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n"),
        CommandBody::Enable {
            capabilities: strs(&["CONDSTORE", "X-GOOD-IDEA"])
        }
    );
    assert_eq!(
        body("a ENABLE UTF8=ACCEPT\r\n"),
        CommandBody::Enable {
            capabilities: strs(&["UTF8=ACCEPT"])
        }
    );
    assert_eq!(message("a ENABLE\r\n"), "Missing capability");
}

#[test]
fn select_and_examine() {
    assert_eq!(
        body("A142 SELECT INBOX\r\n"),
        CommandBody::Select {
            mailbox: b"INBOX".to_vec(),
            params: SelectParams::default()
        }
    );
    assert_eq!(
        body("A932 EXAMINE blurdybloop\r\n"),
        CommandBody::Examine {
            mailbox: b"blurdybloop".to_vec(),
            params: SelectParams::default()
        }
    );
    // Thunderbird quotes everything.
    assert_eq!(
        body("5 select \"INBOX\" (CONDSTORE)\r\n"),
        CommandBody::Select {
            mailbox: b"INBOX".to_vec(),
            params: SelectParams {
                condstore: true,
                qresync: None
            }
        }
    );
    // RFC 7162 §3.2.5 examples.
    assert_eq!(
        body("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"),
        CommandBody::Select {
            mailbox: b"INBOX".to_vec(),
            params: SelectParams {
                condstore: false,
                qresync: Some(QresyncParams {
                    uidvalidity: 67890007,
                    modseq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None,
                })
            }
        }
    );
    assert_eq!(
        body(
            "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 \
             (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,\
             29982,29985,29988,29991,29994,29997)))\r\n"
        ),
        CommandBody::Select {
            mailbox: b"INBOX".to_vec(),
            params: SelectParams {
                condstore: false,
                qresync: Some(QresyncParams {
                    uidvalidity: 67890007,
                    modseq: 90060115194045000,
                    known_uids: Some(set("1:29997")),
                    seq_match: Some((
                        set("5000,7500,9000,9990:9999"),
                        set(
                            "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"
                        )
                    )),
                })
            }
        }
    );
    assert_eq!(
        body("a EXAMINE Archive (CONDSTORE QRESYNC (1 2 (1:3 4:6)))\r\n"),
        CommandBody::Examine {
            mailbox: b"Archive".to_vec(),
            params: SelectParams {
                condstore: true,
                qresync: Some(QresyncParams {
                    uidvalidity: 1,
                    modseq: 2,
                    known_uids: None,
                    seq_match: Some((set("1:3"), set("4:6"))),
                })
            }
        }
    );
    assert_eq!(message("a SELECT\r\n"), "Missing mailbox name");
    assert_eq!(
        message("a SELECT INBOX (FOO)\r\n"),
        "Unknown SELECT parameter FOO"
    );
    assert_eq!(
        message("a SELECT INBOX (QRESYNC (0 5))\r\n"),
        "Invalid UIDVALIDITY"
    );
    assert_eq!(
        message("a SELECT INBOX (QRESYNC (4294967296 5))\r\n"),
        "Invalid UIDVALIDITY"
    );
    assert_eq!(
        message("a SELECT INBOX (QRESYNC (1 18446744073709551616))\r\n"),
        "Invalid mod-sequence"
    );
    assert_eq!(
        message("a SELECT INBOX (QRESYNC (1))\r\n"),
        "Missing mod-sequence"
    );
}

#[test]
fn create_delete_rename_subscribe() {
    assert_eq!(
        body("A003 CREATE owatagusiam/\r\n"),
        CommandBody::Create {
            mailbox: b"owatagusiam/".to_vec(),
            special_use: vec![]
        }
    );
    assert_eq!(
        body("t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n"),
        CommandBody::Create {
            mailbox: b"MySpecial".to_vec(),
            special_use: strs(&["\\Drafts", "\\Sent"])
        }
    );
    assert_eq!(
        message("t1 CREATE x (USE (Sent))\r\n"),
        "Invalid special-use attribute"
    );
    assert_eq!(
        message("t1 CREATE x (FOO (\\Sent))\r\n"),
        "Unknown CREATE parameter FOO"
    );
    assert_eq!(
        body("A683 DELETE blurdybloop\r\n"),
        CommandBody::Delete {
            mailbox: b"blurdybloop".to_vec()
        }
    );
    assert_eq!(
        body("A683 RENAME blurdybloop sarasoop\r\n"),
        CommandBody::Rename {
            from: b"blurdybloop".to_vec(),
            to: b"sarasoop".to_vec()
        }
    );
    // Modified UTF-7 names are just bytes here.
    assert_eq!(
        body("a RENAME \"Entw&APw-rfe\" \"Drafts old\"\r\n"),
        CommandBody::Rename {
            from: b"Entw&APw-rfe".to_vec(),
            to: b"Drafts old".to_vec()
        }
    );
    assert_eq!(message("a RENAME x\r\n"), "Missing new mailbox name");
    assert_eq!(
        body("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Subscribe {
            mailbox: b"#news.comp.mail.mime".to_vec()
        }
    );
    assert_eq!(
        body("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
        CommandBody::Unsubscribe {
            mailbox: b"#news.comp.mail.mime".to_vec()
        }
    );
    // UTF-8 mailbox name in a quoted string (IMAP4rev2) and in a literal.
    assert_eq!(
        body("a CREATE \"Entwürfe\"\r\n"),
        CommandBody::Create {
            mailbox: "Entwürfe".as_bytes().to_vec(),
            special_use: vec![]
        }
    );
    assert_eq!(
        body("a CREATE {9}\r\nEntwürfe\r\n"),
        CommandBody::Create {
            mailbox: "Entwürfe".as_bytes().to_vec(),
            special_use: vec![]
        }
    );
}

fn basic_list(reference: &str, pattern: &str) -> CommandBody {
    CommandBody::List {
        reference: reference.as_bytes().to_vec(),
        patterns: vec![pattern.as_bytes().to_vec()],
        selection: vec![],
        returns: vec![],
        extended: false,
    }
}

#[test]
fn list_basic() {
    assert_eq!(body("A101 LIST \"\" \"\"\r\n"), basic_list("", ""));
    assert_eq!(
        body("A102 LIST #news.comp.mail.misc \"\"\r\n"),
        basic_list("#news.comp.mail.misc", "")
    );
    assert_eq!(body("A202 LIST ~/Mail/ %\r\n"), basic_list("~/Mail/", "%"));
    assert_eq!(body("A682 LIST \"\" *\r\n"), basic_list("", "*"));
    assert_eq!(
        body("a LIST \"\" INBOX.%.*]\r\n"),
        basic_list("", "INBOX.%.*]")
    );
    assert_eq!(body("a list \"\" \"*\"\r\n"), basic_list("", "*"));
    assert_eq!(
        body("A LSUB \"#news.\" \"comp.mail.*\"\r\n"),
        CommandBody::Lsub {
            reference: b"#news.".to_vec(),
            pattern: b"comp.mail.*".to_vec()
        }
    );
    assert_eq!(message("a LIST \"\"\r\n"), "Missing mailbox pattern");
    assert_eq!(message("a LIST\r\n"), "Missing mailbox reference");
}

#[test]
fn list_extended() {
    // Thunderbird.
    assert_eq!(
        body("3 list (subscribed) \"\" \"*\" return (special-use)\r\n"),
        CommandBody::List {
            reference: vec![],
            patterns: vec![b"*".to_vec()],
            selection: vec![ListSelection::Subscribed],
            returns: vec![ListReturn::SpecialUse],
            extended: true,
        }
    );
    // RFC 5258 examples.
    assert_eq!(
        body("A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n"),
        CommandBody::List {
            reference: vec![],
            patterns: vec![b"%".to_vec()],
            selection: vec![],
            returns: vec![ListReturn::Children],
            extended: true,
        }
    );
    assert_eq!(
        body("A04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n"),
        CommandBody::List {
            reference: vec![],
            patterns: vec![b"%".to_vec()],
            selection: vec![ListSelection::Subscribed, ListSelection::RecursiveMatch],
            returns: vec![ListReturn::Children],
            extended: true,
        }
    );
    assert_eq!(
        body("A05 LIST (REMOTE SUBSCRIBED) \"/\" (\"*\" Inbox/% {3}\r\nfoo)\r\n"),
        CommandBody::List {
            reference: b"/".to_vec(),
            patterns: vec![b"*".to_vec(), b"Inbox/%".to_vec(), b"foo".to_vec()],
            selection: vec![ListSelection::Remote, ListSelection::Subscribed],
            returns: vec![],
            extended: true,
        }
    );
    // LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154).
    assert_eq!(
        body("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n"),
        CommandBody::List {
            reference: vec![],
            patterns: vec![b"%".to_vec()],
            selection: vec![],
            returns: vec![ListReturn::Status(vec![
                StatusItem::Messages,
                StatusItem::Unseen
            ])],
            extended: true,
        }
    );
    assert_eq!(
        body(
            "t LIST (SPECIAL-USE) \"\" * RETURN (SUBSCRIBED CHILDREN SPECIAL-USE \
             STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ RECENT))\r\n"
        ),
        CommandBody::List {
            reference: vec![],
            patterns: vec![b"*".to_vec()],
            selection: vec![ListSelection::SpecialUse],
            returns: vec![
                ListReturn::Subscribed,
                ListReturn::Children,
                ListReturn::SpecialUse,
                ListReturn::Status(vec![
                    StatusItem::Messages,
                    StatusItem::UidNext,
                    StatusItem::UidValidity,
                    StatusItem::Unseen,
                    StatusItem::Deleted,
                    StatusItem::Size,
                    StatusItem::HighestModSeq,
                    StatusItem::Recent,
                ])
            ],
            extended: true,
        }
    );
    assert_eq!(
        message("a LIST (RECURSIVEMATCH) \"\" %\r\n"),
        "RECURSIVEMATCH needs another selection option"
    );
    assert_eq!(
        message("a LIST (FOO) \"\" %\r\n"),
        "Unknown LIST selection option FOO"
    );
    assert_eq!(
        message("a LIST \"\" % RETURN (FOO)\r\n"),
        "Unknown LIST return option FOO"
    );
    assert_eq!(
        message("a LIST \"\" % EXTRA\r\n"),
        "Invalid LIST return options"
    );
}

#[test]
fn namespace_status() {
    assert_eq!(body("A001 NAMESPACE\r\n"), CommandBody::Namespace);
    assert_eq!(
        body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        CommandBody::Status {
            mailbox: b"blurdybloop".to_vec(),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    // Outlook.
    assert_eq!(
        body("b STATUS \"Sent Items\" (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)\r\n"),
        CommandBody::Status {
            mailbox: b"Sent Items".to_vec(),
            items: vec![
                StatusItem::Messages,
                StatusItem::Unseen,
                StatusItem::UidNext,
                StatusItem::UidValidity
            ]
        }
    );
    assert_eq!(
        message("a STATUS INBOX (MESSAGES APPENDLIMIT)\r\n"),
        "Unknown status item APPENDLIMIT"
    );
    assert_eq!(message("a STATUS INBOX ()\r\n"), "Invalid status item");
    assert_eq!(message("a STATUS INBOX\r\n"), "Missing status items");
}

const RFC_MESSAGE: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

#[test]
fn append() {
    let raw = format!(
        "A003 APPEND saved-messages (\\Seen) {{{}}}\r\n{RFC_MESSAGE}\r\n",
        RFC_MESSAGE.len()
    );
    assert_eq!(
        body(&raw),
        CommandBody::Append {
            mailbox: b"saved-messages".to_vec(),
            messages: vec![AppendMessage {
                flags: strs(&["\\Seen"]),
                date: None,
                data: AppendData::Literal(RFC_MESSAGE.as_bytes().to_vec()),
            }],
        }
    );
    // imaplib: empty flag list, date-time from Time2Internaldate.
    let raw = format!(
        "JPFK5 APPEND INBOX () \"17-Jul-1996 02:44:25 -0700\" {{{}}}\r\n{RFC_MESSAGE}\r\n",
        RFC_MESSAGE.len()
    );
    assert_eq!(
        body(&raw),
        CommandBody::Append {
            mailbox: b"INBOX".to_vec(),
            messages: vec![AppendMessage {
                flags: vec![],
                // 1996-07-17 09:44:25 UTC.
                date: Some(DateTime {
                    timestamp: 837_596_665,
                    offset: -7 * 3600
                }),
                data: AppendData::Literal(RFC_MESSAGE.as_bytes().to_vec()),
            }],
        }
    );
    // Space-padded day, positive zone, no flags, LITERAL+.
    assert_eq!(
        body("a APPEND Drafts \" 5-Jan-2024 23:59:59 +0530\" {2+}\r\nhi\r\n"),
        CommandBody::Append {
            mailbox: b"Drafts".to_vec(),
            messages: vec![AppendMessage {
                flags: vec![],
                date: Some(DateTime {
                    timestamp: 1_704_499_199 - 19_800,
                    offset: 19_800
                }),
                data: AppendData::Literal(b"hi".to_vec()),
            }],
        }
    );
    // BINARY literal8 (RFC 3516) and UTF8 APPEND (RFC 6855).
    assert_eq!(
        body("a APPEND Drafts (\\Seen \\Draft $MDNSent) ~{3}\r\n\0\x01\x02\r\n"),
        CommandBody::Append {
            mailbox: b"Drafts".to_vec(),
            messages: vec![AppendMessage {
                flags: strs(&["\\Seen", "\\Draft", "$MDNSent"]),
                date: None,
                data: AppendData::Literal(b"\0\x01\x02".to_vec()),
            }],
        }
    );
    assert_eq!(
        body("A003 APPEND Drafts UTF8 (~{6+}\r\nhällo)\r\n"),
        CommandBody::Append {
            mailbox: b"Drafts".to_vec(),
            messages: vec![AppendMessage {
                flags: vec![],
                date: None,
                data: AppendData::Literal("hällo".as_bytes().to_vec()),
            }],
        }
    );
    // Empty message.
    assert_eq!(
        body("a APPEND INBOX {0}\r\n\r\n"),
        CommandBody::Append {
            mailbox: b"INBOX".to_vec(),
            messages: vec![AppendMessage {
                flags: vec![],
                date: None,
                data: AppendData::Literal(vec![]),
            }],
        }
    );
    assert_eq!(
        message("a APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {1}\r\nx\r\n"),
        "Invalid date-time"
    );
    assert_eq!(
        message("a APPEND INBOX \"1-Jan-2024 24:00:00 +0000\" {1}\r\nx\r\n"),
        "Invalid date-time"
    );
    assert_eq!(
        message("a APPEND INBOX \"1-Jan-2024 10:00:00 0000\" {1}\r\nx\r\n"),
        "Invalid date-time"
    );
    assert_eq!(message("a APPEND INBOX\r\n"), "Missing message literal");
    assert_eq!(
        message("a APPEND INBOX (\\Seen)\r\n"),
        "Missing message literal"
    );
    assert_eq!(message("a APPEND INBOX \"hello\"\r\n"), "Invalid date-time");
    // MULTIAPPEND (RFC 3502): each further message has its own flags and date.
    assert_eq!(
        body("a APPEND INBOX {1}\r\nx (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {1}\r\ny\r\n"),
        CommandBody::Append {
            mailbox: b"INBOX".to_vec(),
            messages: vec![
                AppendMessage {
                    flags: vec![],
                    date: None,
                    data: AppendData::Literal(b"x".to_vec()),
                },
                AppendMessage {
                    flags: strs(&["\\Seen"]),
                    date: Some(DateTime {
                        timestamp: 837_596_665,
                        offset: -25_200
                    }),
                    data: AppendData::Literal(b"y".to_vec()),
                },
            ],
        }
    );
    assert_eq!(
        message("a APPEND INBOX {1}\r\nx \r\n"),
        "Missing message literal"
    );
    assert_eq!(
        message("a APPEND INBOX {1}\r\nx y\r\n"),
        "Unsupported APPEND data y"
    );
    assert_eq!(
        message("a APPEND INBOX UTF8 ({1}\r\nx)\r\n"),
        "UTF8 APPEND data must be a literal8"
    );
    assert_eq!(
        message("a APPEND INBOX {10}\r\nshort\r\n"),
        "Truncated literal"
    );
}

#[test]
fn append_catenate() {
    // RFC 4469 Appendix A, example 1, as the reader frames it.
    let raw = "A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE \
        (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {42}\r\n\
        \r\n--------------030308070208000400050907\r\n \
        URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME\" \
        URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1\" TEXT {42}\r\n\
        \r\n--------------030308070208000400050907\r\n \
        URL \"/Drafts;UIDVALIDITY=385759045/;UID=30\" TEXT {44}\r\n\
        \r\n--------------030308070208000400050907--\r\n)\r\n";
    let url = |u: &str| CatPart::Url(u.as_bytes().to_vec());
    let text = |t: &str| CatPart::Text(t.as_bytes().to_vec());
    assert_eq!(
        body(raw),
        CommandBody::Append {
            mailbox: b"Drafts".to_vec(),
            messages: vec![AppendMessage {
                flags: strs(&["\\Seen", "\\Draft", "$MDNSent"]),
                date: None,
                data: AppendData::Catenate(vec![
                    url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
                    text("\r\n--------------030308070208000400050907\r\n"),
                    url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"),
                    url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1"),
                    text("\r\n--------------030308070208000400050907\r\n"),
                    url("/Drafts;UIDVALIDITY=385759045/;UID=30"),
                    text("\r\n--------------030308070208000400050907--\r\n"),
                ]),
            }],
        }
    );
    // Case-insensitive keywords, LITERAL+, literal8 TEXT, a URL as an atom or a
    // literal, inside MULTIAPPEND beside a plain message.
    assert_eq!(
        body(
            "a APPEND INBOX catenate (text {2+}\r\nhi url ;UID=1 TEXT ~{1}\r\n\0 \
             URL {6}\r\n;UID=2) (\\Seen) {1+}\r\nx\r\n"
        ),
        CommandBody::Append {
            mailbox: b"INBOX".to_vec(),
            messages: vec![
                AppendMessage {
                    flags: vec![],
                    date: None,
                    data: AppendData::Catenate(vec![
                        text("hi"),
                        url(";UID=1"),
                        text("\0"),
                        url(";UID=2"),
                    ]),
                },
                AppendMessage {
                    flags: strs(&["\\Seen"]),
                    date: None,
                    data: AppendData::Literal(b"x".to_vec()),
                },
            ],
        }
    );
    for (raw, error) in [
        ("a APPEND INBOX CATENATE ()\r\n", "Empty CATENATE list"),
        ("a APPEND INBOX CATENATE\r\n", "Missing CATENATE parts"),
        (
            "a APPEND INBOX CATENATE URL \"/x\"\r\n",
            "CATENATE needs a parenthesized list of parts",
        ),
        ("a APPEND INBOX CATENATE (URL)\r\n", "Missing URL"),
        (
            "a APPEND INBOX CATENATE (TEXT \"quoted\")\r\n",
            "TEXT must be followed by a literal",
        ),
        (
            "a APPEND INBOX CATENATE (FILE \"/x\")\r\n",
            "Unknown CATENATE part FILE: TEXT or URL",
        ),
        (
            "a APPEND INBOX CATENATE (URL /x\r\n",
            "Missing CATENATE part",
        ),
        (
            "a APPEND INBOX CATENATE (URL /x  URL /y)\r\n",
            "Invalid CATENATE part",
        ),
        (
            "a APPEND INBOX CATENATE (URL /x)x\r\n",
            "Extra data after command",
        ),
    ] {
        assert_eq!(message(raw), error, "{raw:?}");
    }
}

#[test]
fn idle() {
    assert_eq!(body("A001 IDLE\r\n"), CommandBody::Idle);
    assert_eq!(message("A001 IDLE now\r\n"), "Extra data after command");
}

// ---- Selected state (RFC 9051 §6.4) -------------------------------------------------

#[test]
fn check_close_unselect_expunge() {
    assert_eq!(body("FXXZ CHECK\r\n"), CommandBody::Check);
    assert_eq!(body("A341 CLOSE\r\n"), CommandBody::Close);
    assert_eq!(body("A342 UNSELECT\r\n"), CommandBody::Unselect);
    assert_eq!(body("A202 EXPUNGE\r\n"), CommandBody::Expunge);
    assert_eq!(
        body("A003 UID EXPUNGE 3000:3002\r\n"),
        CommandBody::UidExpunge {
            set: set("3000:3002")
        }
    );
    assert_eq!(message("a UID EXPUNGE\r\n"), "Missing sequence set");
}

fn search(criteria: SearchKey) -> CommandBody {
    CommandBody::Search {
        uid: false,
        charset: None,
        returns: None,
        criteria,
    }
}

#[test]
fn search_rfc_examples() {
    assert_eq!(
        body("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
        search(SearchKey::And(vec![
            SearchKey::Flagged,
            SearchKey::Since(date(1, 2, 1994)),
            SearchKey::Not(Box::new(SearchKey::From("Smith".into()))),
        ]))
    );
    assert_eq!(
        body("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            returns: Some(vec![SearchReturn::Min, SearchReturn::Count]),
            criteria: SearchKey::And(vec![
                SearchKey::Flagged,
                SearchKey::Since(date(1, 2, 1994)),
                SearchKey::Not(Box::new(SearchKey::From("Smith".into()))),
            ]),
        }
    );
    assert_eq!(
        body("A283 SEARCH RETURN () FLAGGED\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            returns: Some(vec![]),
            criteria: SearchKey::Flagged,
        }
    );
    assert_eq!(
        body("A284 SEARCH TEXT \"string not in mailbox\"\r\n"),
        search(SearchKey::Text("string not in mailbox".into()))
    );
    assert_eq!(
        body("A285 SEARCH CHARSET UTF-8 TEXT {9}\r\n台北市\r\n"),
        CommandBody::Search {
            uid: false,
            charset: Some("UTF-8".into()),
            returns: None,
            criteria: SearchKey::Text("台北市".into()),
        }
    );
    assert_eq!(
        body("a UID SEARCH RETURN (MIN MAX ALL COUNT SAVE) CHARSET us-ascii UID 1:*\r\n"),
        CommandBody::Search {
            uid: true,
            charset: Some("us-ascii".into()),
            returns: Some(vec![
                SearchReturn::Min,
                SearchReturn::Max,
                SearchReturn::All,
                SearchReturn::Count,
                SearchReturn::Save
            ]),
            criteria: SearchKey::Uid(set("1:*")),
        }
    );
    // RFC 7162 §3.1.5 examples.
    assert_eq!(
        body("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n"),
        search(SearchKey::ModSeq(620162338))
    );
    assert_eq!(
        body("t SEARCH OR NOT MODSEQ 720162338 LARGER 50000\r\n"),
        search(SearchKey::Or(
            Box::new(SearchKey::Not(Box::new(SearchKey::ModSeq(720162338)))),
            Box::new(SearchKey::Larger(50000))
        ))
    );
}

#[test]
fn search_every_key() {
    let line = "a SEARCH ALL ANSWERED BCC b BEFORE 1-Jan-2000 BODY x CC c DELETED DRAFT \
                FLAGGED FROM f HEADER X-Spam yes KEYWORD $Junk LARGER 10 MODSEQ 5 NEW \
                NOT SEEN OLD ON 29-Feb-2024 OR ANSWERED DELETED RECENT SEEN \
                SENTBEFORE 2-Mar-2001 SENTON \"3-Apr-2002\" SENTSINCE 04-May-2003 \
                1:3,5 SINCE 31-Dec-1999 SMALLER 100 SUBJECT s TEXT t TO o UID 4:* \
                UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Forwarded UNSEEN \
                (SEEN FLAGGED) (UNSEEN) *\r\n";
    assert_eq!(
        body(line),
        search(SearchKey::And(vec![
            SearchKey::All,
            SearchKey::Answered,
            SearchKey::Bcc("b".into()),
            SearchKey::Before(date(1, 1, 2000)),
            SearchKey::Body("x".into()),
            SearchKey::Cc("c".into()),
            SearchKey::Deleted,
            SearchKey::Draft,
            SearchKey::Flagged,
            SearchKey::From("f".into()),
            SearchKey::Header("X-Spam".into(), "yes".into()),
            SearchKey::Keyword("$Junk".into()),
            SearchKey::Larger(10),
            SearchKey::ModSeq(5),
            SearchKey::New,
            SearchKey::Not(Box::new(SearchKey::Seen)),
            SearchKey::Old,
            SearchKey::On(date(29, 2, 2024)),
            SearchKey::Or(Box::new(SearchKey::Answered), Box::new(SearchKey::Deleted)),
            SearchKey::Recent,
            SearchKey::Seen,
            SearchKey::SentBefore(date(2, 3, 2001)),
            SearchKey::SentOn(date(3, 4, 2002)),
            SearchKey::SentSince(date(4, 5, 2003)),
            SearchKey::SequenceSet(set("1:3,5")),
            SearchKey::Since(date(31, 12, 1999)),
            SearchKey::Smaller(100),
            SearchKey::Subject("s".into()),
            SearchKey::Text("t".into()),
            SearchKey::To("o".into()),
            SearchKey::Uid(set("4:*")),
            SearchKey::Unanswered,
            SearchKey::Undeleted,
            SearchKey::Undraft,
            SearchKey::Unflagged,
            SearchKey::Unkeyword("$Forwarded".into()),
            SearchKey::Unseen,
            SearchKey::And(vec![SearchKey::Seen, SearchKey::Flagged]),
            SearchKey::Unseen,
            SearchKey::SequenceSet(set("*")),
        ]))
    );
    // Case-insensitive keywords; HEADER with an empty value (presence test).
    assert_eq!(
        body("a search header \"Message-ID\" \"\" unseen\r\n"),
        search(SearchKey::And(vec![
            SearchKey::Header("Message-ID".into(), String::new()),
            SearchKey::Unseen
        ]))
    );
}

#[test]
fn search_client_traffic() {
    // Thunderbird's quick filter.
    assert_eq!(
        body("12 UID SEARCH UNDELETED OR OR FROM \"bob\" SUBJECT \"bob\" TO \"bob\"\r\n"),
        CommandBody::Search {
            uid: true,
            charset: None,
            returns: None,
            criteria: SearchKey::And(vec![
                SearchKey::Undeleted,
                SearchKey::Or(
                    Box::new(SearchKey::Or(
                        Box::new(SearchKey::From("bob".into())),
                        Box::new(SearchKey::Subject("bob".into()))
                    )),
                    Box::new(SearchKey::To("bob".into()))
                ),
            ]),
        }
    );
    // Apple Mail.
    assert_eq!(
        body("8.4 UID SEARCH 1:* NOT DELETED SINCE 1-Jan-2024\r\n"),
        CommandBody::Search {
            uid: true,
            charset: None,
            returns: None,
            criteria: SearchKey::And(vec![
                SearchKey::SequenceSet(set("1:*")),
                SearchKey::Not(Box::new(SearchKey::Deleted)),
                SearchKey::Since(date(1, 1, 2024)),
            ]),
        }
    );
    // imaplib.
    assert_eq!(body("JPFK3 SEARCH ALL\r\n"), search(SearchKey::All));
    assert_eq!(body("JPFK4 SEARCH (UNSEEN)\r\n"), search(SearchKey::Unseen));
    assert_eq!(
        body("a SEARCH CHARSET UTF-8 SUBJECT \"Grüße\"\r\n"),
        CommandBody::Search {
            uid: false,
            charset: Some("UTF-8".into()),
            returns: None,
            criteria: SearchKey::Subject("Grüße".into()),
        }
    );
}

#[test]
fn search_errors() {
    assert_eq!(
        parse_command(b"A286 SEARCH CHARSET KOI8-R TEXT {4}\r\n\xf0\xd2\xc9\xd7\r\n")
            .unwrap_err()
            .message,
        BADCHARSET_MESSAGE
    );
    // RFC 9051 §6.4.4: a tagged NO with the charsets the server takes.
    let error = fail("a SEARCH CHARSET \"ISO-8859-1\" ALL\r\n");
    assert_eq!(
        error.status().to_bytes(error.tag.as_deref()),
        b"a NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n"
    );
    let error = fail("a SEARCH FOO\r\n");
    assert_eq!(
        error.status().to_bytes(error.tag.as_deref()),
        b"a BAD Unknown search key FOO\r\n"
    );
    let e = parse_command(b"a SEARCH SUBJECT {2}\r\n\xc3\x28\r\n").unwrap_err();
    assert_eq!(
        (e.tag.as_deref(), e.message.as_str()),
        (Some("a"), "Invalid UTF-8 in search string")
    );
    assert_eq!(message("a SEARCH FOO\r\n"), "Unknown search key FOO");
    assert_eq!(
        message("a SEARCH X-GM-RAW \"x\"\r\n"),
        "Unknown search key X-GM-RAW"
    );
    assert_eq!(message("a SEARCH\r\n"), "Missing search criteria");
    assert_eq!(message("a SEARCH ALL \r\n"), "Missing search key");
    assert_eq!(message("a SEARCH ()\r\n"), "Invalid search key");
    assert_eq!(message("a SEARCH (ALL\r\n"), "Missing search key");
    assert_eq!(message("a SEARCH ALL)\r\n"), "Extra data after command");
    assert_eq!(message("a SEARCH OR ALL\r\n"), "Missing search key");
    assert_eq!(message("a SEARCH SINCE\r\n"), "Missing date");
    assert_eq!(message("a SEARCH SINCE 1-Feb-94\r\n"), "Invalid date");
    assert_eq!(message("a SEARCH SINCE 30-Feb-2024\r\n"), "Invalid date");
    assert_eq!(message("a SEARCH SINCE 1-Foo-2024\r\n"), "Invalid date");
    assert_eq!(message("a SEARCH SINCE 001-Jan-2024\r\n"), "Invalid date");
    assert_eq!(
        message("a SEARCH LARGER 18446744073709551616\r\n"),
        "Invalid size"
    );
    assert_eq!(message("a SEARCH LARGER x\r\n"), "Invalid size");
    // SEARCHRES (RFC 5182): `$` alone is a set, as a key and after UID.
    assert_eq!(
        body("a SEARCH $\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            returns: None,
            criteria: SearchKey::SequenceSet(SequenceSet::saved()),
        }
    );
    assert_eq!(
        body("a SEARCH UID $ SEEN\r\n"),
        CommandBody::Search {
            uid: false,
            charset: None,
            returns: None,
            criteria: SearchKey::And(vec![SearchKey::Uid(SequenceSet::saved()), SearchKey::Seen]),
        }
    );
    assert_eq!(
        message("a SEARCH $x\r\n"),
        "Invalid sequence set: $ stands alone (RFC 5182)"
    );
    assert_eq!(message("a SEARCH 0\r\n"), "Invalid sequence set");
    assert_eq!(message("a SEARCH KEYWORD \\Seen\r\n"), "Invalid keyword");
    assert_eq!(
        message("a SEARCH RETURN (FOO) ALL\r\n"),
        "Unknown search return option FOO"
    );
    assert_eq!(
        message("a SEARCH MODSEQ \"/flags/\\\\draft\" none 5\r\n"),
        "Invalid entry type"
    );
}

#[test]
fn fetch_rfc_examples() {
    assert_eq!(
        body("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("2:4"),
            items: FetchItems::List(vec![
                FetchAttr::Flags,
                FetchAttr::BodySection {
                    peek: false,
                    section: section(
                        &[],
                        Some(SectionText::HeaderFields(strs(&["DATE", "FROM"])))
                    ),
                    partial: None
                }
            ]),
            changed_since: None,
            vanished: false,
        }
    );
    assert_eq!(
        body("A999 UID FETCH 4827313:4828442 FLAGS\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("4827313:4828442"),
            items: FetchItems::List(vec![FetchAttr::Flags]),
            changed_since: None,
            vanished: false,
        }
    );
    for (macro_name, items) in [
        ("ALL", FetchItems::All),
        ("fast", FetchItems::Fast),
        ("Full", FetchItems::Full),
    ] {
        assert_eq!(
            body(&format!("a FETCH 1:* {macro_name}\r\n")),
            CommandBody::Fetch {
                uid: false,
                set: set("1:*"),
                items,
                changed_since: None,
                vanished: false,
            }
        );
    }
    // RFC 7162.
    assert_eq!(
        body("a103 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: FetchItems::List(vec![FetchAttr::Flags]),
            changed_since: Some(12345),
            vanished: true,
        }
    );
    assert_eq!(
        body("s100 UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12345)\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: FetchItems::List(vec![FetchAttr::Flags, FetchAttr::ModSeq]),
            changed_since: Some(12345),
            vanished: false,
        }
    );
}

#[test]
fn fetch_thunderbird_headers() {
    let line = "a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc \
                Bcc Subject Date Message-ID Priority X-Priority References Newsgroups \
                In-Reply-To Content-Type Reply-To)])\r\n";
    assert_eq!(
        body(line),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: FetchItems::List(vec![
                FetchAttr::Uid,
                FetchAttr::Rfc822Size,
                FetchAttr::Flags,
                body_peek(Some(SectionText::HeaderFields(strs(&[
                    "From",
                    "To",
                    "Cc",
                    "Bcc",
                    "Subject",
                    "Date",
                    "Message-ID",
                    "Priority",
                    "X-Priority",
                    "References",
                    "Newsgroups",
                    "In-Reply-To",
                    "Content-Type",
                    "Reply-To"
                ]))))
            ]),
            changed_since: None,
            vanished: false,
        }
    );
}

#[test]
fn fetch_client_traffic() {
    // Apple Mail: a header subset and the start of the first part.
    assert_eq!(
        body(
            "9.10 UID FETCH 4512 (BODY.PEEK[HEADER.FIELDS (content-class \
             x-mail-has-hidden-attachments)] BODY.PEEK[1]<0.10240>)\r\n"
        ),
        CommandBody::Fetch {
            uid: true,
            set: set("4512"),
            items: FetchItems::List(vec![
                body_peek(Some(SectionText::HeaderFields(strs(&[
                    "content-class",
                    "x-mail-has-hidden-attachments"
                ])))),
                FetchAttr::BodySection {
                    peek: true,
                    section: section(&[1], None),
                    partial: Some(Partial {
                        origin: 0,
                        count: 10240
                    })
                }
            ]),
            changed_since: None,
            vanished: false,
        }
    );
    // Outlook.
    assert_eq!(
        body("c FETCH 1:12 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("1:12"),
            items: FetchItems::List(vec![
                FetchAttr::Uid,
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                body_peek(Some(SectionText::Header)),
            ]),
            changed_since: None,
            vanished: false,
        }
    );
    // imaplib.
    assert_eq!(
        body("JPFK6 FETCH 1 (RFC822)\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("1"),
            items: FetchItems::List(vec![FetchAttr::Rfc822]),
            changed_since: None,
            vanished: false,
        }
    );
    // mutt: HEADER.FIELDS.NOT and every simple item.
    assert_eq!(
        body(
            "a0007 UID FETCH 5,7:9 (ENVELOPE BODY BODYSTRUCTURE RFC822.HEADER RFC822.TEXT \
             BODY[] BODY[TEXT] BODY[1.2.MIME] BODY[2.HEADER.FIELDS.NOT (Received)] \
             BODY.PEEK[3.TEXT]<100.200> BINARY[1] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3] \
             BINARY[])\r\n"
        ),
        CommandBody::Fetch {
            uid: true,
            set: set("5,7:9"),
            items: FetchItems::List(vec![
                FetchAttr::Envelope,
                FetchAttr::Body,
                FetchAttr::BodyStructure,
                FetchAttr::Rfc822Header,
                FetchAttr::Rfc822Text,
                FetchAttr::BodySection {
                    peek: false,
                    section: Section::default(),
                    partial: None
                },
                FetchAttr::BodySection {
                    peek: false,
                    section: section(&[], Some(SectionText::Text)),
                    partial: None
                },
                FetchAttr::BodySection {
                    peek: false,
                    section: section(&[1, 2], Some(SectionText::Mime)),
                    partial: None
                },
                FetchAttr::BodySection {
                    peek: false,
                    section: section(
                        &[2],
                        Some(SectionText::HeaderFieldsNot(strs(&["Received"])))
                    ),
                    partial: None
                },
                FetchAttr::BodySection {
                    peek: true,
                    section: section(&[3], Some(SectionText::Text)),
                    partial: Some(Partial {
                        origin: 100,
                        count: 200
                    })
                },
                FetchAttr::Binary {
                    peek: false,
                    part: vec![1],
                    partial: None
                },
                FetchAttr::Binary {
                    peek: true,
                    part: vec![1, 2],
                    partial: Some(Partial {
                        origin: 0,
                        count: 100
                    })
                },
                FetchAttr::BinarySize { part: vec![3] },
                FetchAttr::Binary {
                    peek: false,
                    part: vec![],
                    partial: None
                },
            ]),
            changed_since: None,
            vanished: false,
        }
    );
    // Header names as quoted strings and literals.
    assert_eq!(
        body("a FETCH 1 BODY.PEEK[HEADER.FIELDS (\"Subject\" {4}\r\nDate)]\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("1"),
            items: FetchItems::List(vec![body_peek(Some(SectionText::HeaderFields(strs(&[
                "Subject", "Date"
            ]))))]),
            changed_since: None,
            vanished: false,
        }
    );
}

#[test]
fn fetch_errors() {
    assert_eq!(
        message("a FETCH 1 (FLAGS X-GM-LABELS)\r\n"),
        "Unknown FETCH item X-GM-LABELS"
    );
    // Gmail's X-GM-* and Dovecot's X-* items are not served.
    assert_eq!(
        message("a FETCH 1 X-SAVEDATE\r\n"),
        "Unknown FETCH item X-SAVEDATE"
    );
    assert_eq!(message("a FETCH 1\r\n"), "Missing fetch items");
    assert_eq!(message("a FETCH\r\n"), "Missing sequence set");
    assert_eq!(message("a FETCH 1 ()\r\n"), "Invalid fetch item");
    assert_eq!(message("a FETCH 1 (FLAGS\r\n"), "Missing fetch item");
    assert_eq!(
        message("a FETCH 1 BODY.PEEK\r\n"),
        "Missing section after BODY.PEEK"
    );
    assert_eq!(
        message("a FETCH 1 FLAGS[]\r\n"),
        "Unexpected section after FLAGS"
    );
    assert_eq!(message("a FETCH 1 BODY[MIME]\r\n"), "Invalid section");
    assert_eq!(message("a FETCH 1 BODY[0]\r\n"), "Invalid section part");
    assert_eq!(message("a FETCH 1 BODY[1.FOO]\r\n"), "Invalid section");
    assert_eq!(
        message("a FETCH 1 BODY[HEADER.FIELDS]\r\n"),
        "Expected SP before header list"
    );
    assert_eq!(
        message("a FETCH 1 BODY[HEADER.FIELDS ()]\r\n"),
        "Invalid header field name"
    );
    assert_eq!(
        message("a FETCH 1 BODY[]<0.0>\r\n"),
        "Invalid partial length"
    );
    assert_eq!(message("a FETCH 1 BODY[]<5>\r\n"), "Invalid partial range");
    assert_eq!(
        message("a FETCH 1 BINARY[TEXT]\r\n"),
        "Invalid section part"
    );
    assert_eq!(
        message("a FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)\r\n"),
        "VANISHED is only allowed with UID FETCH"
    );
    assert_eq!(
        message("a UID FETCH 1 FLAGS (VANISHED)\r\n"),
        "VANISHED requires CHANGEDSINCE"
    );
    assert_eq!(
        message("a UID FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)\r\n"),
        "Unknown or repeated FETCH modifier CHANGEDSINCE"
    );
    assert_eq!(
        message("a FETCH 1 FLAGS (FOO)\r\n"),
        "Unknown or repeated FETCH modifier FOO"
    );
}

fn store(uid: bool, set_spec: &str, mode: StoreMode, silent: bool, flags: &[&str]) -> CommandBody {
    CommandBody::Store {
        uid,
        set: set(set_spec),
        mode,
        silent,
        flags: strs(flags),
        unchanged_since: None,
    }
}

#[test]
fn store_forms() {
    assert_eq!(
        body("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
        store(false, "2:4", StoreMode::Add, false, &["\\Deleted"])
    );
    assert_eq!(
        body("a UID STORE 12 -FLAGS.SILENT (\\Seen $Forwarded)\r\n"),
        store(
            true,
            "12",
            StoreMode::Remove,
            true,
            &["\\Seen", "$Forwarded"]
        )
    );
    assert_eq!(
        body("a STORE 1 FLAGS ()\r\n"),
        store(false, "1", StoreMode::Replace, false, &[])
    );
    // Flags without parentheses (RFC 9051 allows `flag *(SP flag)`).
    assert_eq!(
        body("a uid store 7 +flags.silent \\Seen \\Flagged\r\n"),
        store(true, "7", StoreMode::Add, true, &["\\Seen", "\\Flagged"])
    );
    // RFC 7162 §3.1.3 example.
    assert_eq!(
        body("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("7,5,9"),
            mode: StoreMode::Add,
            silent: true,
            flags: strs(&["\\Deleted"]),
            unchanged_since: Some(320162338),
        }
    );
    assert_eq!(
        body("a STORE 1 (UNCHANGEDSINCE 0) FLAGS (\\Seen)\r\n"),
        CommandBody::Store {
            uid: false,
            set: set("1"),
            mode: StoreMode::Replace,
            silent: false,
            flags: strs(&["\\Seen"]),
            unchanged_since: Some(0),
        }
    );
    assert_eq!(message("a STORE 1 +FLAGS\r\n"), "Missing flags");
    assert_eq!(
        message("a STORE 1 +FLAGZ (\\Seen)\r\n"),
        "Unknown STORE item +FLAGZ"
    );
    assert_eq!(message("a STORE 1 +FLAGS (\\*)\r\n"), "Invalid flag");
    assert_eq!(message("a STORE 1 +FLAGS (\\Seen\r\n"), "Missing flag");
    assert_eq!(message("a STORE 1\r\n"), "Missing store item");
    assert_eq!(
        message("a STORE 1 (FOO 1) FLAGS ()\r\n"),
        "Unknown or repeated STORE modifier FOO"
    );
}

#[test]
fn copy_and_move() {
    assert_eq!(
        body("A003 COPY 2:4 MEETING\r\n"),
        CommandBody::Copy {
            uid: false,
            set: set("2:4"),
            mailbox: b"MEETING".to_vec()
        }
    );
    assert_eq!(
        body("a UID MOVE 42:69 foo\r\n"),
        CommandBody::Move {
            uid: true,
            set: set("42:69"),
            mailbox: b"foo".to_vec()
        }
    );
    assert_eq!(
        body("a UID COPY 1,3:5 \"Deleted Items\"\r\n"),
        CommandBody::Copy {
            uid: true,
            set: set("1,3:5"),
            mailbox: b"Deleted Items".to_vec()
        }
    );
    assert_eq!(
        body("a MOVE 5:1 Trash\r\n"),
        CommandBody::Move {
            uid: false,
            set: set("5:1"),
            mailbox: b"Trash".to_vec()
        }
    );
    assert_eq!(message("a COPY 1\r\n"), "Missing mailbox name");
    assert_eq!(message("a UID FOO 1\r\n"), "Unknown UID command FOO");
    assert_eq!(message("a UID\r\n"), "Missing UID command");
}

// ---- Error classes ------------------------------------------------------------------

#[test]
fn error_classes_and_tags() {
    let e = fail("a1 FOO bar\r\n");
    assert_eq!(e.tag.as_deref(), Some("a1"));
    assert_eq!(e.message, "Unknown command FOO");
    assert_eq!(e.to_string(), "Unknown command FOO");
    assert_eq!(message("a XLIST \"\" *\r\n"), "Unknown command XLIST");
    assert_eq!(message("a1 F\u{fc}\r\n"), "Invalid command name");
    let e = fail("\r\n");
    assert_eq!((e.tag, e.message.as_str()), (None, "Empty command line"));
    let e = fail("a+b NOOP\r\n");
    assert_eq!((e.tag, e.message.as_str()), (None, "Invalid tag"));
    let e = fail("* NOOP\r\n");
    assert_eq!((e.tag, e.message.as_str()), (None, "Invalid tag"));
    assert_eq!(message("a NOOP extra\r\n"), "Extra data after command");
    assert_eq!(message("a  NOOP\r\n"), "Invalid command name");
    // Unknown-command text is sanitised and bounded.
    let long = format!("a {}\r\n", "Z".repeat(100));
    assert_eq!(
        message(&long),
        format!("Unknown command {}...", "Z".repeat(40))
    );
}

#[test]
fn sequence_set_errors() {
    for bad in [
        "0",
        "1:0",
        "0:*",
        "4294967296",
        "1,,2",
        "1:",
        ",1",
        "1:2:3",
        "1.5",
        "-1",
        "x",
    ] {
        assert_eq!(
            message(&format!("a FETCH {bad} FLAGS\r\n")),
            "Invalid sequence set",
            "{bad}"
        );
    }
    assert_eq!(
        body("a FETCH $ FLAGS\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: SequenceSet::saved(),
            items: FetchItems::List(vec![FetchAttr::Flags]),
            changed_since: None,
            vanished: false,
        }
    );
    assert_eq!(
        message("a COPY 1,$ x\r\n"),
        "Invalid sequence set: $ stands alone (RFC 5182)"
    );
    assert_eq!(
        body("a FETCH 4294967295,1:*,*:3,* FLAGS\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("4294967295,1:*,*:3,*"),
            items: FetchItems::List(vec![FetchAttr::Flags]),
            changed_since: None,
            vanished: false,
        }
    );
}

#[test]
fn string_errors() {
    assert_eq!(
        message("a SELECT \"INBOX\r\n"),
        "Unterminated quoted string"
    );
    assert_eq!(
        message("a SELECT \"IN\\BOX\"\r\n"),
        "Invalid escape in quoted string"
    );
    assert_eq!(message("a SELECT {9}\r\nINB\r\n"), "Truncated literal");
    assert_eq!(
        message("a SELECT {5} x\r\nINBOX\r\n"),
        "Literal size must end its line"
    );
    assert_eq!(message("a SELECT {}\r\n\r\n"), "Invalid literal size");
    assert_eq!(message("a SELECT (x)\r\n"), "Invalid mailbox name");
    assert_eq!(
        message("a SELECT ~{5}\r\nINBOX\r\n"),
        "literal8 is not allowed here"
    );
    // `~` alone is an ordinary atom character.
    assert_eq!(
        body("a SELECT ~peter/mail\r\n"),
        CommandBody::Select {
            mailbox: b"~peter/mail".to_vec(),
            params: SelectParams::default()
        }
    );
}

// ---- Through the reader -------------------------------------------------------------

/// A session's worth of client traffic, literals included.
const TRAFFIC: &[u8] = b"1 CAPABILITY\r\n\
2 ID (\"name\" \"Thunderbird\" \"version\" \"128.3.1\")\r\n\
3 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n\
4 ENABLE UTF8=ACCEPT CONDSTORE\r\n\
5 LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n\
6 SELECT \"INBOX\" (CONDSTORE)\r\n\
7 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 4)\n\
8 UID SEARCH CHARSET UTF-8 SUBJECT {7}\r\nGr\xc3\xbc\xc3\x9fe\r\n\
9 APPEND Sent (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {11}\r\nHello\r\nBye!\r\n\
10 APPEND Drafts UTF8 (~{3+}\r\n\0\r\n)\r\n\
11 UID STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\n\
12 UID EXPUNGE 1:3\r\n\
13 IDLE\r\n";

#[test]
fn traffic_parses_the_same_however_split() {
    let whole = read_all(ReaderLimits::default(), &[TRAFFIC]);
    let commands = commands_of(&whole);
    assert_eq!(commands.len(), 13);
    for (i, cmd) in commands.iter().enumerate() {
        let cmd = cmd
            .as_ref()
            .unwrap_or_else(|e| panic!("command {i}: {e:?}"));
        assert_eq!(cmd.tag.0, (i + 1).to_string());
    }
    assert_eq!(
        commands[2].as_ref().map(|c| c.body.clone()),
        Ok(CommandBody::Login {
            username: b"alice".to_vec(),
            password: Secret(b"secret".to_vec())
        })
    );
    assert_eq!(
        commands[8].as_ref().map(|c| c.body.clone()),
        Ok(CommandBody::Append {
            mailbox: b"Sent".to_vec(),
            messages: vec![AppendMessage {
                flags: strs(&["\\Seen"]),
                date: Some(DateTime {
                    timestamp: 837_596_665,
                    offset: -25_200
                }),
                data: AppendData::Literal(b"Hello\r\nBye!".to_vec()),
            }],
        })
    );
    // Continuations asked for exactly the synchronizing literals, in order.
    let asked: Vec<u64> = whole
        .iter()
        .filter_map(|e| match e {
            ReadEvent::NeedContinuation { literal_len } => Some(*literal_len),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![5, 7, 11]);

    for at in 0..=TRAFFIC.len() {
        let (a, b) = TRAFFIC.split_at(at);
        assert_eq!(
            read_all(ReaderLimits::default(), &[a, b]),
            whole,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = TRAFFIC.chunks(1).collect();
    assert_eq!(read_all(ReaderLimits::default(), &bytes), whole);
    for size in [2, 3, 7, 64] {
        let chunks: Vec<&[u8]> = TRAFFIC.chunks(size).collect();
        assert_eq!(read_all(ReaderLimits::default(), &chunks), whole);
    }
}

/// SORT and THREAD with a literal in their search keys, however TCP splits them.
#[test]
fn sort_and_thread_parse_the_same_however_split() {
    const LINES: &[u8] =
        b"s1 UID SORT RETURN (COUNT) (REVERSE DATE SUBJECT) UTF-8 SUBJECT {5}\r\nhello UNSEEN\r\n\
        s2 THREAD REFERENCES US-ASCII FROM {3+}\r\nbob\r\n";
    let whole = read_all(ReaderLimits::default(), &[LINES]);
    let commands = commands_of(&whole);
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].as_ref().map(|c| c.body.name()), Ok("UID SORT"));
    assert_eq!(
        commands[1].as_ref().map(|c| c.body.clone()),
        Ok(CommandBody::Thread {
            uid: false,
            algorithm: ThreadAlgorithm::References,
            charset: "US-ASCII".into(),
            search: SearchKey::From("bob".into()),
        })
    );
    for at in 0..=LINES.len() {
        let (a, b) = LINES.split_at(at);
        assert_eq!(
            read_all(ReaderLimits::default(), &[a, b]),
            whole,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = LINES.chunks(1).collect();
    assert_eq!(read_all(ReaderLimits::default(), &bytes), whole);
}

#[test]
fn refused_literal_then_next_command() {
    let limits = ReaderLimits {
        max_line: 1024,
        max_literal: 100,
        max_command: 2048,
        max_non_sync_literal: u64::MAX,
    };
    let mut reader = CommandReader::new(limits);
    reader.push(b"a1 APPEND INBOX {1000}\r\na2 APPEND INBOX {5+}\r\n");
    assert_eq!(
        reader.next_event(),
        Some(ReadEvent::TooBig {
            tag: Some("a1".into()),
            what: TooBigWhat::Literal
        })
    );
    assert_eq!(reader.next_event(), None);
    reader.push(b"hello\r\na3 NOOP\r\n");
    let Some(ReadEvent::Command(raw)) = reader.next_event() else {
        panic!("expected a command")
    };
    assert_eq!(parse_bytes(&raw).tag, Tag("a2".into()));
    assert_eq!(
        reader.next_event(),
        Some(ReadEvent::Command(b"a3 NOOP\r\n".to_vec()))
    );
}

#[test]
fn authenticate_and_idle_in_line_mode() {
    let mut reader = CommandReader::new(ReaderLimits::default());
    reader.push(b"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nb IDLE\r\nDONE\r\nc NOOP\r\n");
    let Some(ReadEvent::Command(raw)) = reader.next_event() else {
        panic!("expected a command")
    };
    assert!(matches!(
        parse_bytes(&raw).body,
        CommandBody::Authenticate { .. }
    ));
    reader.set_line_mode(true);
    assert_eq!(
        reader.next_event(),
        Some(ReadEvent::Line(b"AGFsaWNlAHNlY3JldA==".to_vec()))
    );
    reader.set_line_mode(false);
    let Some(ReadEvent::Command(raw)) = reader.next_event() else {
        panic!("expected a command")
    };
    assert_eq!(parse_bytes(&raw).body, CommandBody::Idle);
    reader.set_line_mode(true);
    assert_eq!(reader.next_event(), Some(ReadEvent::Line(b"DONE".to_vec())));
    reader.set_line_mode(false);
    assert_eq!(
        reader.next_event(),
        Some(ReadEvent::Command(b"c NOOP\r\n".to_vec()))
    );
}

// ---- Long sequence sets -------------------------------------------------------------

fn long_uid_set(min_len: usize) -> String {
    let mut s = String::new();
    let mut uid = 1u32;
    while s.len() < min_len {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&format!("{uid}:{}", uid + 2));
        uid += 5;
    }
    s
}

#[test]
fn fifty_kb_uid_set_through_reader() {
    let uids = long_uid_set(50 * 1024);
    let line = format!("a1 UID FETCH {uids} (FLAGS)\r\n");
    assert!(line.len() > 50 * 1024 && line.len() < 64 * 1024);
    let start = Instant::now();
    let events = read_all(ReaderLimits::default(), &[line.as_bytes()]);
    let commands = commands_of(&events);
    let [Ok(cmd)] = commands.as_slice() else {
        panic!("{events:?}")
    };
    let CommandBody::Fetch { set, .. } = &cmd.body else {
        panic!("{cmd:?}")
    };
    assert_eq!(set.0.len(), uids.split(',').count());
    assert_eq!(
        set.0[1],
        SeqRange {
            start: SeqBound::Value(6),
            end: SeqBound::Value(8)
        }
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // Byte by byte as well (the reader scans each byte once).
    let bytes: Vec<&[u8]> = line.as_bytes().chunks(1).collect();
    let start = Instant::now();
    assert_eq!(read_all(ReaderLimits::default(), &bytes), events);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn huge_sequence_sets_parse_in_linear_time() {
    let uids = long_uid_set(4 * 1024 * 1024);
    let line = format!("a UID SEARCH UID {uids} NOT DELETED\r\n");
    let start = Instant::now();
    let cmd = parse(&line);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(cmd.body, CommandBody::Search { .. }));
    // A line above the default limit is refused by the reader instead.
    let events = read_all(ReaderLimits::default(), &[line.as_bytes()]);
    assert_eq!(
        events,
        vec![ReadEvent::TooBig {
            tag: Some("a".into()),
            what: TooBigWhat::Line
        }]
    );
}

// ---- Encoding round trips on realistic commands ---------------------------------------

/// RFC 8514: the SAVEDATE fetch item and the four search keys, in SEARCH, UID SEARCH,
/// ESEARCH and SORT criteria, and their malformed dates.
#[test]
fn savedate_fetch_item_and_search_keys() {
    assert_eq!(
        body("A101 FETCH 998 (SAVEDATE)\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("998"),
            items: FetchItems::List(vec![FetchAttr::SaveDate]),
            changed_since: None,
            vanished: false,
        }
    );
    assert_eq!(
        body("a uid fetch 1:* (uid savedate internaldate)\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: FetchItems::List(vec![
                FetchAttr::Uid,
                FetchAttr::SaveDate,
                FetchAttr::InternalDate
            ]),
            changed_since: None,
            vanished: false,
        }
    );
    assert_eq!(
        body("A102 SEARCH SAVEDON 28-Dec-2014\r\n"),
        search(SearchKey::SavedOn(date(28, 12, 2014)))
    );
    assert_eq!(
        body("A103 SEARCH SAVEDSINCE 28-Dec-2014\r\n"),
        search(SearchKey::SavedSince(date(28, 12, 2014)))
    );
    assert_eq!(
        body("a search savedbefore \"1-Jan-2015\" savedatesupported NOT SAVEDON 2-Jan-2015\r\n"),
        search(SearchKey::And(vec![
            SearchKey::SavedBefore(date(1, 1, 2015)),
            SearchKey::SaveDateSupported,
            SearchKey::Not(Box::new(SearchKey::SavedOn(date(2, 1, 2015)))),
        ]))
    );
    assert_eq!(
        body("a UID SEARCH RETURN (SAVE COUNT) OR SAVEDATESUPPORTED SAVEDSINCE 1-Feb-2026\r\n"),
        CommandBody::Search {
            uid: true,
            charset: None,
            returns: Some(vec![SearchReturn::Save, SearchReturn::Count]),
            criteria: SearchKey::Or(
                Box::new(SearchKey::SaveDateSupported),
                Box::new(SearchKey::SavedSince(date(1, 2, 2026)))
            ),
        }
    );
    assert!(matches!(
        body("a SORT (ARRIVAL) UTF-8 SAVEDSINCE 1-Feb-2026\r\n"),
        CommandBody::Sort { search: SearchKey::SavedSince(d), .. } if d == date(1, 2, 2026)
    ));
    assert!(matches!(
        body("a THREAD REFERENCES UTF-8 SAVEDBEFORE 1-Feb-2026\r\n"),
        CommandBody::Thread { search: SearchKey::SavedBefore(d), .. } if d == date(1, 2, 2026)
    ));
    for key in ["SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"] {
        assert_eq!(
            message(&format!("a SEARCH {key}\r\n")),
            "Missing date",
            "{key}"
        );
        for bad in [
            "30-Feb-2026",
            "1-Feb-26",
            "1-Foo-2026",
            "2026-02-01",
            "\"1-Feb-2026",
        ] {
            assert_eq!(
                message(&format!("a SEARCH {key} {bad}\r\n")),
                "Invalid date",
                "{key} {bad}"
            );
        }
    }
    // SAVEDATESUPPORTED takes no argument: a date after it is a key of its own.
    assert_eq!(
        message("a SEARCH SAVEDATESUPPORTED 1-Feb-2026\r\n"),
        "Invalid sequence set"
    );
    assert_eq!(
        message("a FETCH 1 SAVEDATE[]\r\n"),
        "Unexpected section after SAVEDATE"
    );
}

/// RFC 8970 §6 PREVIEW with its LAZY modifier, and the drafts' forms Dovecot answers:
/// `PREVIEW (FUZZY)`, `LAZY=FUZZY`, `SNIPPET`; a list after a lone item that starts
/// with a FETCH modifier belongs to the command.
#[test]
fn preview_fetch_items_and_modifiers() {
    let items = |raw: &str| match body(raw) {
        CommandBody::Fetch { items, .. } => items,
        other => panic!("{other:?}"),
    };
    let one = |form| FetchItems::List(vec![FetchAttr::Preview(form)]);
    assert_eq!(items("a FETCH 1 (PREVIEW)\r\n"), one(PreviewForm::Rfc8970));
    assert_eq!(items("a FETCH 1 preview\r\n"), one(PreviewForm::Rfc8970));
    assert_eq!(
        items("a FETCH 1 (PREVIEW (LAZY))\r\n"),
        one(PreviewForm::Rfc8970)
    );
    assert_eq!(
        items("a FETCH 1 PREVIEW (lazy LAZY)\r\n"),
        one(PreviewForm::Rfc8970)
    );
    assert_eq!(
        items("a FETCH 1 (PREVIEW (FUZZY))\r\n"),
        one(PreviewForm::Fuzzy)
    );
    assert_eq!(
        items("a FETCH 1 (PREVIEW (LAZY=FUZZY))\r\n"),
        one(PreviewForm::Fuzzy)
    );
    assert_eq!(
        items("a FETCH 1 (PREVIEW (LAZY FUZZY))\r\n"),
        one(PreviewForm::Fuzzy)
    );
    assert_eq!(items("a FETCH 1 (SNIPPET)\r\n"), one(PreviewForm::Snippet));
    assert_eq!(
        items("a FETCH 1 (SNIPPET (LAZY))\r\n"),
        one(PreviewForm::Snippet)
    );
    assert_eq!(
        items("a FETCH 1 (snippet (fuzzy))\r\n"),
        one(PreviewForm::Snippet)
    );
    // LAZY changes nothing, so the two collapse; the other forms answer differently.
    assert_eq!(
        items("a FETCH 1:* (UID PREVIEW (LAZY) PREVIEW SNIPPET PREVIEW (FUZZY) FLAGS)\r\n"),
        FetchItems::List(vec![
            FetchAttr::Uid,
            FetchAttr::Preview(PreviewForm::Rfc8970),
            FetchAttr::Preview(PreviewForm::Snippet),
            FetchAttr::Preview(PreviewForm::Fuzzy),
            FetchAttr::Flags,
        ])
    );
    assert_eq!(
        body("a UID FETCH 1:* PREVIEW (CHANGEDSINCE 5)\r\n"),
        CommandBody::Fetch {
            uid: true,
            set: set("1:*"),
            items: one(PreviewForm::Rfc8970),
            changed_since: Some(5),
            vanished: false,
        }
    );
    assert_eq!(
        body("a FETCH 2 PREVIEW (LAZY) (CHANGEDSINCE 5)\r\n"),
        CommandBody::Fetch {
            uid: false,
            set: set("2"),
            items: one(PreviewForm::Rfc8970),
            changed_since: Some(5),
            vanished: false,
        }
    );
    assert_eq!(
        message("a FETCH 1 (PREVIEW (EAGER))\r\n"),
        "Unknown PREVIEW modifier EAGER (LAZY and FUZZY are)"
    );
    assert_eq!(
        message("a FETCH 1 (SNIPPET (LAZY SHORT))\r\n"),
        "Unknown SNIPPET modifier SHORT (LAZY and FUZZY are)"
    );
    assert_eq!(
        message("a FETCH 1 (PREVIEW ())\r\n"),
        "Invalid PREVIEW modifier"
    );
    assert_eq!(
        message("a FETCH 1 (PREVIEW (LAZY\r\n"),
        "Missing PREVIEW modifier"
    );
    assert_eq!(
        message("a FETCH 1 (PREVIEW[])\r\n"),
        "Unexpected section after PREVIEW"
    );
    // `PREVIEW=FUZZY` is a capability, not a FETCH item.
    assert_eq!(
        message("a FETCH 1 (PREVIEW=FUZZY)\r\n"),
        "Unknown FETCH item PREVIEW=FUZZY"
    );
}

#[test]
fn realistic_commands_round_trip() {
    let lines = [
        "a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
        "A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500 15000,22500)))\r\n",
        "d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
        "t LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (% \"Other Users/*\") RETURN (CHILDREN STATUS (MESSAGES))\r\n",
        "a APPEND Sent (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5}\r\nhello\r\n",
        "a023 ID (\"name\" \"sodr\" \"os\" NIL)\r\n",
        "t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n",
        "E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk\r\n",
        "s1 SORT RETURN (MIN COUNT PARTIAL -1:-50) (DISPLAYFROM REVERSE ARRIVAL) \"utf-8\" OR SEEN SUBJECT {3}\r\nabc\r\n",
        "A285 UID THREAD REFERENCES UTF-8 SINCE 5-Mar-2000 NOT DELETED\r\n",
        "A01 UID SEARCH RETURN (PARTIAL 23500:24000) UNDELETED UNKEYWORD $Junk\r\n",
        "a UID FETCH 1:* (UID SAVEDATE)\r\n",
        "a SEARCH SAVEDATESUPPORTED OR SAVEDBEFORE 1-Jan-2015 SAVEDON 2-Jan-2015 SAVEDSINCE 3-Jan-2015\r\n",
    ];
    for line in lines {
        let cmd = parse(line);
        assert_eq!(parse_bytes(&cmd.encode()), cmd, "{line}");
    }
}

// ---- Modified UTF-7 -----------------------------------------------------------------

#[test]
fn mutf7_names() {
    assert_eq!(mutf7::encode("&"), "&-");
    assert_eq!(mutf7::decode(b"&-").as_deref(), Ok("&"));
    assert_eq!(
        mutf7::encode("~peter/mail/台北/日本語"),
        "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    );
    assert_eq!(
        mutf7::decode(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
        Ok("~peter/mail/台北/日本語")
    );
    for name in [
        "INBOX",
        "Sent Items",
        "Entwürfe",
        "Корзина",
        "📥 Inbox & 🗑",
        "R&D",
    ] {
        let wire = mutf7::encode(name);
        assert!(wire.is_ascii());
        assert_eq!(mutf7::decode(wire.as_bytes()).as_deref(), Ok(name));
    }
    assert!(mutf7::decode(b"&Jjo!").is_err());
    assert!(mutf7::decode(b"&U,BTFw").is_err());
    assert!(mutf7::decode(b"&AGE-").is_err());
    assert!(mutf7::decode("台北".as_bytes()).is_err());
    // A mailbox name from a SELECT, decoded by the session's rules.
    let CommandBody::Select { mailbox, .. } = body("a SELECT \"Entw&APw-rfe\"\r\n") else {
        panic!()
    };
    assert_eq!(mutf7::decode(&mailbox).as_deref(), Ok("Entwürfe"));
}

#[test]
fn list_with_wildcard_pattern_after_empty_reference() {
    let parsed = parse_command(b"a LIST \"\" Work*\r\n").unwrap();
    assert!(
        matches!(parsed.body, CommandBody::List { .. }),
        "{parsed:?}"
    );
}
