//! Transcripts cut at the login: a proxied session must look exactly like a direct one.
//!
//! Each transcript runs twice. Once on one machine, as a node that holds the mailbox
//! runs it. Once cut in two, as a frontend proxies it: the frontend's machine reads
//! the client up to the sign-in command; when it asks for the credential check, the
//! frontend takes [`Session::hand_off`], and the home node builds its machine with
//! [`Session::resume_signed_in`], answers the sign-in there and reads the rest. The
//! bytes the client gets (the frontend's before the hand-off, then the home node's) must
//! be the direct run's, byte for byte, every command answered once and in order.

use std::sync::Arc;

use crate::command::DateTime;
use crate::request::{
    Copied, Fault, FlagsStored, FolderId, FolderInfo, FolderList, FolderStatus, LoginFailure,
    MessageData, QuotaUsage, Reply, Request, RequestId, SelectedFolder,
};
use crate::session::{Action, HandOff, ImapConfig, Input, Session};

/// `\0alice\0secret`, the SASL PLAIN message of the right credentials.
const PLAIN_ALICE: &str = "AGFsaWNlAHNlY3JldA==";

fn message(uid: u32) -> MessageData {
    MessageData {
        uid,
        email_id: 0,
        flags: if uid == 1 {
            vec!["\\Seen".into()]
        } else {
            vec![]
        },
        internal_date: DateTime {
            timestamp: 1_700_000_000,
            offset: 0,
        },
        save_date: None,
        size: 100 * u64::from(uid),
        modseq: u64::from(uid) + 1,
        summary: None,
        fields: None,
        raw: None,
        raw_in_store: false,
    }
}

/// The host: password `secret`, an INBOX holding UIDs 1 to 3, a Sent folder.
fn store(request: &Request) -> Reply {
    match request {
        Request::Login { password, .. } => Reply::Login(if password.0 == "secret" {
            Ok(())
        } else {
            Err(LoginFailure::BadCredentials)
        }),
        Request::ListFolders => Reply::Folders(Ok(FolderList {
            folders: vec![
                FolderInfo {
                    name: "INBOX".into(),
                    special_use: None,
                },
                FolderInfo {
                    name: "Sent".into(),
                    special_use: Some("\\Sent"),
                },
            ],
            subscriptions: vec!["INBOX".into(), "Sent".into()],
        })),
        Request::Status { .. } => Reply::Status(Ok(FolderStatus {
            messages: 3,
            uidnext: 4,
            uidvalidity: 9,
            unseen: 2,
            ..FolderStatus::default()
        })),
        Request::Select { .. } => Reply::Selected(Ok(SelectedFolder {
            id: FolderId(1),
            uidvalidity: 9,
            uidnext: 4,
            highest_modseq: 4,
            uids: Arc::new(vec![1, 2, 3]),
            first_unseen: Some(2),
            changed: vec![],
            recent: vec![],
            keywords: vec![],
            vanished: None,
        })),
        Request::Scan { job, .. } => {
            Reply::Scanned(job.run(0, |uid, _| Ok::<_, Fault>((uid <= 3).then(|| message(uid)))))
        }
        Request::StoreFlags { uids, flags, .. } => Reply::FlagsStored(Ok(FlagsStored {
            current: uids.iter().map(|&uid| (uid, flags.clone(), 5)).collect(),
            modified: vec![],
        })),
        Request::Append { .. } => Reply::Appended(Ok((9, vec![4]))),
        Request::Catenate { .. } => Reply::Catenated(Ok(crate::catenate::CatenateOutcome::TooBig)),
        Request::Expunge { .. } => Reply::Expunged(Ok(vec![])),
        Request::Copy { uids, .. } => Reply::Copied(Ok(Copied {
            uidvalidity: 10,
            pairs: uids.iter().map(|&uid| (uid, uid + 100)).collect(),
        })),
        Request::Vanished { .. } => Reply::Vanished(Ok(Some(vec![]))),
        Request::Quota { .. } => Reply::Quota(Ok(QuotaUsage {
            used: 3000,
            limit: Some(1 << 20),
        })),
        Request::TextIndex { queries, .. } => Reply::TextIndex(vec![None; queries.len()]),
        Request::Create { .. } => Reply::Created(Ok(FolderId(7))),
        Request::Notify { .. } => Reply::Watched(Ok(vec![])),
        Request::GetMetadata { .. } => Reply::Metadata(Ok(vec![])),
        Request::SetMetadata { .. } => Reply::Done(Ok(())),
        Request::Deselect { .. }
        | Request::SignOut
        | Request::Delete { .. }
        | Request::Rename { .. }
        | Request::RenameInbox { .. }
        | Request::Subscribe { .. } => Reply::Done(Ok(())),
    }
}

/// What the client gets: the bytes written, `[close]` where the connection ends.
#[derive(Default)]
struct Wire {
    bytes: Vec<u8>,
    /// STARTTLS was carried out.
    tls: bool,
}

/// Carries out the session's actions as its host would, answering every request from
/// [`store`]. With `stop_at_login`, stops at a sign-in the check will accept and returns
/// its request id and user name, unanswered: that is where a frontend hands off.
fn settle(
    session: &mut Session,
    wire: &mut Wire,
    stop_at_login: bool,
) -> Option<(RequestId, String)> {
    while let Some(action) = session.next_action() {
        match action {
            Action::Write(bytes) => wire.bytes.extend(bytes),
            Action::Request(id, Request::Login { username, password })
                if stop_at_login && password.0 == "secret" =>
            {
                return Some((id, username));
            }
            Action::Request(id, request) => {
                let reply = store(&request);
                session.handle(Input::Reply(id, reply));
            }
            Action::StartTls => {
                wire.tls = true;
                session.handle(Input::TlsEstablished);
            }
            // Compression by copying: the bytes behind COMPRESS come back as input.
            Action::Compress { unread } => {
                wire.bytes.extend_from_slice(b"[compress]\r\n");
                session.handle(Input::Bytes(&unread));
            }
            Action::Stream { .. } => panic!("nothing here is big enough to stream"),
            Action::Close => wire.bytes.extend_from_slice(b"[close]"),
        }
    }
    None
}

/// One client's side of a session: each element one write, in order.
struct Transcript {
    config: ImapConfig,
    tls: bool,
    writes: Vec<Vec<u8>>,
    /// Writes after the one that completes the sign-in command that reach the frontend
    /// before it hands the session off.
    late: usize,
}

impl Transcript {
    fn new(writes: &[&str]) -> Transcript {
        Transcript {
            config: ImapConfig::default(),
            tls: true,
            writes: writes.iter().map(|w| w.as_bytes().to_vec()).collect(),
            late: 0,
        }
    }

    /// The session on one machine.
    fn direct(&self) -> Vec<u8> {
        let mut session = Session::new(self.config.clone(), self.tls);
        let mut wire = Wire::default();
        settle(&mut session, &mut wire, false);
        for write in &self.writes {
            session.handle(Input::Bytes(write));
            assert_eq!(settle(&mut session, &mut wire, false), None);
        }
        wire.bytes
    }

    /// The session cut at its successful sign-in: what the client gets, and the hand-off.
    fn cut(&self) -> (Vec<u8>, HandOff) {
        let mut frontend = Session::new(self.config.clone(), self.tls);
        let mut wire = Wire {
            tls: self.tls,
            ..Wire::default()
        };
        settle(&mut frontend, &mut wire, true);
        let mut writes = self.writes.iter();
        let (_frontend_id, username) = loop {
            let write = writes.next().expect("the transcript signs in");
            frontend.handle(Input::Bytes(write));
            if let Some(login) = settle(&mut frontend, &mut wire, true) {
                break login;
            }
        };
        // The check takes a while: the client's next writes reach the frontend first.
        for write in writes.by_ref().take(self.late) {
            frontend.handle(Input::Bytes(write));
            assert_eq!(
                frontend.next_action(),
                None,
                "nothing runs behind the sign-in"
            );
        }
        let hand_off = frontend
            .hand_off()
            .expect("the sign-in waits for its reply");
        assert_eq!(frontend.next_action(), None);
        let (mut backend, backend_id) =
            Session::resume_signed_in(self.config.clone(), wire.tls, &username, hand_off.clone());
        let mut client = wire.bytes;
        let mut wire = Wire {
            tls: wire.tls,
            ..Wire::default()
        };
        assert_eq!(
            backend.next_action(),
            None,
            "the backend waits for the sign-in reply"
        );
        backend.handle(Input::Reply(backend_id, Reply::Login(Ok(()))));
        assert_eq!(settle(&mut backend, &mut wire, false), None);
        for write in writes {
            backend.handle(Input::Bytes(write));
            assert_eq!(settle(&mut backend, &mut wire, false), None);
        }
        assert_eq!(backend.username(), Some(username.as_str()));
        client.extend(wire.bytes);
        (client, hand_off)
    }

    /// Both runs give the client the same bytes, and the tagged responses are `tags`,
    /// in order. Returns the direct run's bytes and the hand-off.
    fn check(&self, tags: &[&str]) -> (String, HandOff) {
        let direct = String::from_utf8(self.direct()).unwrap();
        let (cut, hand_off) = self.cut();
        let cut = String::from_utf8(cut).unwrap();
        assert_eq!(cut, direct, "a proxied session looks like a direct one");
        assert_eq!(
            tagged(&direct),
            tags,
            "each command answered once, in order"
        );
        (direct, hand_off)
    }
}

/// The tags of the tagged responses, in order.
fn tagged(wire: &str) -> Vec<&str> {
    wire.split("\r\n")
        .filter_map(|line| line.split(' ').next())
        .filter(|tag| !matches!(*tag, "" | "*" | "+" | "[close]" | "[compress]"))
        .collect()
}

fn plaintext() -> ImapConfig {
    ImapConfig {
        plaintext_login_without_tls: true,
        ..ImapConfig::default()
    }
}

#[test]
fn login_then_commands_one_write_each() {
    let t = Transcript::new(&[
        "a LOGIN alice secret\r\n",
        "b SELECT INBOX\r\n",
        "c FETCH 1:3 (FLAGS UID)\r\n",
        "d STORE 2 +FLAGS (\\Seen)\r\n",
        "e LOGOUT\r\n",
    ]);
    let (direct, hand_off) = t.check(&["a", "b", "c", "d", "e"]);
    assert!(direct.contains("a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+"));
    assert!(direct.contains("* 3 FETCH (FLAGS () UID 3)\r\nc OK FETCH completed\r\n"));
    assert!(direct.ends_with("* BYE Logging out\r\ne OK LOGOUT completed\r\n[close]"));
    assert_eq!(
        hand_off,
        HandOff {
            tag: "a".into(),
            bad_commands: 0,
            unread: vec![],
        }
    );
}

#[test]
fn commands_pipelined_behind_login_are_answered_once_in_order() {
    let t = Transcript::new(&[
        "a LOGIN alice secret\r\nb SELECT INBOX\r\nc FETCH 1 FLAGS\r\n",
        "d LOGOUT\r\n",
    ]);
    let (direct, hand_off) = t.check(&["a", "b", "c", "d"]);
    assert_eq!(hand_off.unread, b"b SELECT INBOX\r\nc FETCH 1 FLAGS\r\n");
    assert_eq!(direct.matches("FETCH (FLAGS (\\Seen))").count(), 1);

    // More kinds behind it: a LITERAL+ APPEND, a bad command, STATUS, LIST, a command
    // cut in the middle and finished by the next write, LOGOUT with a NOOP after it.
    let t = Transcript::new(&[
        "a LOGIN alice secret\r\nb APPEND INBOX {11+}\r\nhello world\r\nc BOGUS\r\n\
         d STATUS INBOX (MESSAGES UIDNEXT)\r\ne LIST \"\" *\r\nf SEL",
        "ECT INBOX\r\ng LOGOUT\r\nh NOOP\r\n",
    ]);
    let (direct, hand_off) = t.check(&["a", "b", "c", "d", "e", "f", "g"]);
    assert!(hand_off.unread.ends_with(b"f SEL"));
    assert!(direct.contains("b OK [APPENDUID 9 4] APPEND completed\r\n"));
    assert!(!direct.contains("h "));
}

#[test]
fn compress_behind_login_is_carried_out_by_the_backend() {
    // RFC 4978 puts COMPRESS after the sign-in, so the node that holds the mailbox
    // compresses, whether it was reached directly or through a frontend.
    let t = Transcript::new(&[
        "a LOGIN alice secret\r\nb COMPRESS DEFLATE\r\nc NOOP\r\n",
        "d LOGOUT\r\n",
    ]);
    let (direct, hand_off) = t.check(&["a", "b", "c", "d"]);
    assert_eq!(hand_off.unread, b"b COMPRESS DEFLATE\r\nc NOOP\r\n");
    assert!(direct.contains("\r\nb OK DEFLATE active\r\n[compress]\r\nc OK NOOP completed\r\n"));
}

#[test]
fn a_synchronizing_literal_behind_login_gets_its_continuation_from_the_backend() {
    let t = Transcript::new(&[
        "a LOGIN alice secret\r\nb APPEND INBOX {11}\r\n",
        "hello world\r\n",
        "c NOOP\r\n",
    ]);
    let (direct, _) = t.check(&["a", "b", "c"]);
    assert!(direct.contains("Logged in\r\n+ Ready for literal data\r\nb OK"));
}

#[test]
fn login_with_literals() {
    // Synchronizing: the frontend sends both continuations.
    let t = Transcript::new(&[
        "a LOGIN {5}\r\n",
        "alice {6}\r\n",
        "secret\r\n",
        "b NOOP\r\n",
    ]);
    let (direct, hand_off) = t.check(&["a", "b"]);
    assert_eq!(direct.matches("+ Ready for literal data\r\n").count(), 2);
    assert!(hand_off.unread.is_empty());
    // LITERAL+, with a command behind it in the same write.
    let t = Transcript::new(&[
        "a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\nb NOOP\r\n",
        "c LOGOUT\r\n",
    ]);
    let (_, hand_off) = t.check(&["a", "b", "c"]);
    assert_eq!(hand_off.unread, b"b NOOP\r\n");
}

#[test]
fn authenticate_plain_with_initial_response() {
    let t = Transcript::new(&[
        &format!("a AUTHENTICATE PLAIN {PLAIN_ALICE}\r\n"),
        "b SELECT INBOX\r\n",
        "c LOGOUT\r\n",
    ]);
    let (_, hand_off) = t.check(&["a", "b", "c"]);
    assert_eq!(hand_off.tag, "a");
    // With commands pipelined behind it.
    let t = Transcript::new(&[
        &format!(
            "x1 AUTHENTICATE PLAIN {PLAIN_ALICE}\r\nx2 SELECT INBOX\r\nx3 FETCH 1:* FLAGS\r\n"
        ),
        "x4 LOGOUT\r\n",
    ]);
    let (_, hand_off) = t.check(&["x1", "x2", "x3", "x4"]);
    assert_eq!(hand_off.tag, "x1");
    assert_eq!(
        hand_off.unread,
        b"x2 SELECT INBOX\r\nx3 FETCH 1:* FLAGS\r\n"
    );
}

#[test]
fn authenticate_plain_with_continuation() {
    let t = Transcript::new(&[
        "a AUTHENTICATE PLAIN\r\n",
        &format!("{PLAIN_ALICE}\r\n"),
        "b SELECT INBOX\r\n",
        "c LOGOUT\r\n",
    ]);
    let (direct, _) = t.check(&["a", "b", "c"]);
    assert!(direct.contains("\r\n+ \r\na OK [CAPABILITY"));
    // The response line with commands behind it in the same write.
    let t = Transcript::new(&[
        "a AUTHENTICATE PLAIN\r\n",
        &format!("{PLAIN_ALICE}\r\nb SELECT INBOX\r\nc FETCH 1 FLAGS\r\n"),
        "d LOGOUT\r\n",
    ]);
    let (_, hand_off) = t.check(&["a", "b", "c", "d"]);
    assert_eq!(hand_off.unread, b"b SELECT INBOX\r\nc FETCH 1 FLAGS\r\n");
    // A cancelled exchange and a wrong password first stay on the frontend.
    let t = Transcript::new(&[
        "a AUTHENTICATE PLAIN\r\n",
        "*\r\n",
        "b AUTHENTICATE PLAIN\r\n",
        "AGFsaWNlAHdyb25n\r\n",
        "c AUTHENTICATE PLAIN\r\n",
        &format!("{PLAIN_ALICE}\r\nd NOOP\r\n"),
    ]);
    let (_, hand_off) = t.check(&["a", "b", "c", "d"]);
    assert_eq!(hand_off.tag, "c");
    assert_eq!(hand_off.bad_commands, 2);
}

#[test]
fn bytes_that_reach_the_frontend_during_the_check_go_to_the_backend() {
    let mut t = Transcript::new(&[
        "a LOGIN alice secret\r\nb SELECT INBOX\r\n",
        "c FETCH 2 FLAGS\r\nd ID NIL\r\ne IDLE\r\n",
        "DONE\r\n",
        "f LOGOUT\r\n",
    ]);
    t.late = 2;
    let (_, hand_off) = t.check(&["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        hand_off.unread,
        b"b SELECT INBOX\r\nc FETCH 2 FLAGS\r\nd ID NIL\r\ne IDLE\r\nDONE\r\n"
    );
}

#[test]
fn bad_commands_before_login_are_carried_over() {
    let config = ImapConfig {
        max_bad_commands: 3,
        ..ImapConfig::default()
    };
    let mut t = Transcript::new(&[
        "a FOO\r\n",
        "b SELECT INBOX\r\n",
        "c LOGIN alice wrong\r\n",
        "d LOGIN alice secret\r\n",
        "e BAR\r\n",
        "f NOOP\r\n",
    ]);
    t.config = config.clone();
    let (direct, hand_off) = t.check(&["a", "b", "c", "d", "e"]);
    assert_eq!(hand_off.bad_commands, 3);
    assert_eq!(hand_off.tag, "d");
    // The fourth mistake is one too many, wherever the session runs.
    assert!(
        direct.ends_with("e BAD Unknown command BAR\r\n* BYE Too many invalid commands\r\n[close]"),
        "{direct}"
    );

    // Not carrying the count over would show: the backend would forgive the fourth.
    let (mut backend, id) = Session::resume_signed_in(
        config,
        true,
        "alice",
        HandOff {
            bad_commands: 0,
            ..hand_off
        },
    );
    backend.handle(Input::Reply(id, Reply::Login(Ok(()))));
    backend.handle(Input::Bytes(b"e BAR\r\n"));
    let mut wire = Wire::default();
    settle(&mut backend, &mut wire, false);
    assert!(!String::from_utf8(wire.bytes).unwrap().contains("BYE"));
}

#[test]
fn starttls_and_plaintext_connections() {
    let mut t = Transcript::new(&[
        "a CAPABILITY\r\n",
        "b STARTTLS\r\n",
        "c CAPABILITY\r\n",
        "d LOGIN alice secret\r\ne CAPABILITY\r\n",
    ]);
    t.tls = false;
    t.check(&["a", "b", "c", "d", "e"]);
    let mut t = Transcript::new(&["a LOGIN alice secret\r\nb CAPABILITY\r\n", "c LOGOUT\r\n"]);
    t.tls = false;
    t.config = plaintext();
    t.check(&["a", "b", "c"]);
}

#[test]
fn every_cut_of_a_stream_gives_the_direct_bytes() {
    let stream = format!(
        "a CAPABILITY\r\nb NOOP\r\nc LOGIN alice wrong\r\nd AUTHENTICATE PLAIN\r\n\
         {PLAIN_ALICE}\r\ne SELECT INBOX\r\nf APPEND INBOX {{5+}}\r\nhello\r\n\
         g FETCH 1:* (FLAGS RFC822.SIZE)\r\nh UID STORE 1 -FLAGS (\\Seen)\r\ni LOGOUT\r\n"
    );
    let stream = stream.as_bytes();
    let whole = Transcript::new(&[std::str::from_utf8(stream).unwrap()]);
    let direct = String::from_utf8(whole.direct()).unwrap();
    assert_eq!(
        tagged(&direct),
        ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    );
    for cut in 1..stream.len() {
        for late in [0, 1] {
            let t = Transcript {
                writes: vec![stream[..cut].to_vec(), stream[cut..].to_vec()],
                late,
                ..Transcript::new(&[])
            };
            // Where the writes are cut must not matter either.
            assert_eq!(
                String::from_utf8(t.direct()).unwrap(),
                direct,
                "cut at {cut}"
            );
            let (proxied, _) = t.cut();
            assert_eq!(
                String::from_utf8(proxied).unwrap(),
                direct,
                "cut at {cut}, late {late}"
            );
        }
    }
    // Byte by byte.
    let t = Transcript {
        writes: stream.iter().map(|&b| vec![b]).collect(),
        ..Transcript::new(&[])
    };
    assert_eq!(String::from_utf8(t.cut().0).unwrap(), direct);
}

#[test]
fn no_hand_off_unless_a_sign_in_waits_for_its_reply() {
    let mut session = Session::new(ImapConfig::default(), false);
    let mut wire = Wire::default();
    settle(&mut session, &mut wire, true);
    assert_eq!(session.hand_off(), None, "fresh");
    session.handle(Input::Bytes(b"a CAPABILITY\r\n"));
    settle(&mut session, &mut wire, true);
    assert_eq!(session.hand_off(), None, "after a command");
    // STARTTLS waits for the handshake, not for a sign-in.
    session.handle(Input::Bytes(b"b STARTTLS\r\n"));
    assert!(matches!(session.next_action(), Some(Action::Write(_))));
    assert_eq!(session.next_action(), Some(Action::StartTls));
    assert_eq!(session.hand_off(), None, "during STARTTLS");
    session.handle(Input::TlsEstablished);
    // AUTHENTICATE waiting for the client's response line.
    session.handle(Input::Bytes(b"c AUTHENTICATE PLAIN\r\n"));
    settle(&mut session, &mut wire, true);
    assert_eq!(session.hand_off(), None, "during the SASL exchange");
    // A wrong password is answered on the spot; nothing waits afterwards.
    session.handle(Input::Bytes(b"AGFsaWNlAHdyb25n\r\n"));
    assert_eq!(settle(&mut session, &mut wire, true), None);
    assert_eq!(session.hand_off(), None, "after a failed sign-in");
    // LOGIN part-read: its second literal has not arrived.
    session.handle(Input::Bytes(b"d LOGIN {5+}\r\nalice {6+}\r\nsec"));
    assert_eq!(settle(&mut session, &mut wire, true), None);
    assert_eq!(session.hand_off(), None, "LOGIN not complete");
    session.handle(Input::Bytes(b"ret\r\ne NOOP\r\n"));
    let (id, username) = settle(&mut session, &mut wire, true).expect("the sign-in");
    assert_eq!(username, "alice");
    let hand_off = session.hand_off().expect("the sign-in waits");
    assert_eq!(hand_off.tag, "d");
    assert_eq!(hand_off.unread, b"e NOOP\r\n");
    // Taking it changes nothing: the session can still finish on its own.
    session.handle(Input::Reply(id, Reply::Login(Ok(()))));
    assert_eq!(settle(&mut session, &mut wire, true), None);
    assert_eq!(session.hand_off(), None, "signed in");
    assert!(
        String::from_utf8(wire.bytes)
            .unwrap()
            .ends_with("e OK NOOP completed\r\n")
    );
    // A command of the signed-in session waiting for the store is no sign-in.
    session.handle(Input::Bytes(b"f SELECT INBOX\r\n"));
    assert!(matches!(
        session.next_action(),
        Some(Action::Request(_, Request::Select { .. }))
    ));
    assert_eq!(session.hand_off(), None, "SELECT waiting");
    // A resumed session hands off nothing either: it is signed in once answered.
    let (mut resumed, id) = Session::resume_signed_in(
        ImapConfig::default(),
        true,
        "alice",
        HandOff {
            tag: "a".into(),
            bad_commands: 0,
            unread: vec![],
        },
    );
    resumed.handle(Input::Reply(id, Reply::Login(Ok(()))));
    assert!(resumed.is_authenticated());
    assert_eq!(resumed.hand_off(), None);
}
