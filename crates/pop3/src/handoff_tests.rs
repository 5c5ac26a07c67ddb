//! Transcripts cut at the login: a proxied session must look exactly like a direct one.
//!
//! Each transcript runs twice. Once on one machine, as a node that holds the maildrop
//! runs it. Once cut in two, as a frontend proxies it: the frontend's machine reads the
//! client up to PASS or AUTH; when it asks for the credential check, the frontend takes
//! [`Session::hand_off`], and the home node builds its machine with
//! [`Session::resume_signed_in`], opens the maildrop there and reads the rest. The bytes
//! the client gets (the frontend's before the hand-off, then the home node's) must be
//! the direct run's, byte for byte, every command answered once and in order.

use crate::session::{Action, AuthFailure, HandOff, Input, MaildropError, Pop3Config, Session};

/// `\0alice\0secret`, the SASL PLAIN message of the right credentials.
const PLAIN_ALICE: &str = "AGFsaWNlAHNlY3JldA==";
/// `\0alice\0wrong`.
const PLAIN_WRONG: &str = "AGFsaWNlAHdyb25n";

use crate::session::tests::{entries, fixture};

/// What the client gets: the bytes written, with `[commit …]` where the deletions are
/// committed and `[close]` where the connection ends.
#[derive(Default)]
struct Wire {
    bytes: Vec<u8>,
    /// STLS was carried out.
    tls: bool,
}

/// Carries out the session's actions as its host would: password `secret`, the fixture
/// maildrop. With `stop_at_auth`, stops at a credential check that will succeed and
/// returns its user name, unanswered: that is where a frontend hands off.
fn settle(session: &mut Session, wire: &mut Wire, stop_at_auth: bool) -> Option<String> {
    while let Some(action) = session.next_action() {
        match action {
            Action::Write(bytes) => wire.bytes.extend(bytes),
            Action::StartTls => {
                wire.tls = true;
                session.handle(Input::TlsEstablished);
            }
            Action::Authenticate { username, password } => {
                if stop_at_auth && password.expose() == "secret" {
                    return Some(username);
                }
                session.handle(Input::AuthResult(if password.expose() == "secret" {
                    Ok(())
                } else {
                    Err(AuthFailure::BadCredentials)
                }));
            }
            Action::OpenMaildrop => session.handle(Input::MaildropOpened(Ok(entries()))),
            Action::FetchMessage { uid, .. } => {
                let body = fixture().into_iter().find(|&(u, _)| u == uid);
                session.handle(Input::MessageFetched(
                    body.map(|(_, b)| b.to_vec())
                        .ok_or(MaildropError::Unavailable),
                ));
            }
            Action::CommitDeletes { uids } => {
                wire.bytes.extend(format!("[commit {uids:?}]").into_bytes());
                session.handle(Input::DeletesCommitted(Ok(())));
            }
            Action::Close => wire.bytes.extend_from_slice(b"[close]"),
        }
    }
    None
}

/// One client's side of a session: each element one write, in order.
struct Transcript {
    config: Pop3Config,
    tls: bool,
    writes: Vec<Vec<u8>>,
    /// Writes after the one that completes the sign-in that reach the frontend before
    /// it hands the session off.
    late: usize,
}

impl Transcript {
    fn new(writes: &[&str]) -> Transcript {
        Transcript {
            config: Pop3Config::default(),
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
        let username = loop {
            let write = writes.next().expect("the transcript signs in");
            frontend.handle(Input::Bytes(write));
            if let Some(username) = settle(&mut frontend, &mut wire, true) {
                break username;
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
        assert_eq!(hand_off.username, username);
        let mut backend =
            Session::resume_signed_in(self.config.clone(), wire.tls, hand_off.clone());
        assert_eq!(backend.username(), Some(username.as_str()));
        assert_eq!(backend.next_action(), Some(Action::OpenMaildrop));
        assert_eq!(backend.next_action(), None, "nothing before the maildrop");
        let mut client = wire.bytes;
        let mut wire = Wire {
            tls: wire.tls,
            ..Wire::default()
        };
        backend.handle(Input::MaildropOpened(Ok(entries())));
        assert_eq!(settle(&mut backend, &mut wire, false), None);
        for write in writes {
            backend.handle(Input::Bytes(write));
            assert_eq!(settle(&mut backend, &mut wire, false), None);
        }
        client.extend(wire.bytes);
        (client, hand_off)
    }

    /// Both runs give the client `expected` (after the greeting), byte for byte.
    /// Returns the hand-off.
    fn check(&self, expected: &str) -> HandOff {
        let direct = String::from_utf8(self.direct()).unwrap();
        let (cut, hand_off) = self.cut();
        let cut = String::from_utf8(cut).unwrap();
        assert_eq!(cut, direct, "a proxied session looks like a direct one");
        assert_eq!(
            direct.strip_prefix("+OK Portico POP3 server ready\r\n"),
            Some(expected),
            "each command answered once, in order"
        );
        hand_off
    }
}

const LOGGED_IN: &str = "+OK Logged in, 3 messages (91 octets)\r\n";
const LIST: &str = "+OK 3 messages (91 octets)\r\n1 26\r\n2 39\r\n3 26\r\n.\r\n";

fn retr2() -> String {
    "+OK 39 octets\r\nSubject: two\r\n\r\n..dot line\r\nsecond\r\n...\r\n.\r\n".to_string()
}

#[test]
fn user_pass_then_commands_one_write_each() {
    let t = Transcript::new(&[
        "USER alice\r\n",
        "PASS secret\r\n",
        "STAT\r\n",
        "LIST\r\n",
        "RETR 2\r\n",
        "DELE 1\r\n",
        "QUIT\r\n",
    ]);
    let hand_off = t.check(&format!(
        "+OK\r\n{LOGGED_IN}+OK 3 91\r\n{LIST}{}+OK Message 1 deleted\r\n\
         [commit [10]]+OK Logging out, 1 message deleted\r\n[close]",
        retr2()
    ));
    assert_eq!(
        hand_off,
        HandOff {
            username: "alice".into(),
            bad_commands: 0,
            unread: vec![],
        }
    );
}

#[test]
fn commands_pipelined_behind_pass_are_answered_once_in_order() {
    let t = Transcript::new(&["USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\n", "QUIT\r\n"]);
    let hand_off = t.check(&format!(
        "+OK\r\n{LOGGED_IN}+OK 3 91\r\n{LIST}[commit []]+OK Logging out\r\n[close]"
    ));
    assert_eq!(hand_off.unread, b"STAT\r\nLIST\r\n");

    // A line cut between writes, one too long, a bare LF, RETR and TOP, and a command
    // after QUIT that is never answered.
    let mut t = Transcript::new(&[
        &format!(
            "USER alice\r\nPASS secret\r\nUIDL\r\n{}\r\nRETR 2\nTO",
            "X".repeat(100)
        ),
        "P 3 1\r\nDELE 1\r\nQUIT\r\nNOOP\r\n",
    ]);
    t.config.max_line_len = 64;
    let hand_off = t.check(&format!(
        "+OK\r\n{LOGGED_IN}+OK\r\n1 uid-10\r\n2 uid-20\r\n3 uid-30\r\n.\r\n\
         -ERR Line too long\r\n{}+OK\r\nX: 3\r\nY: 3\r\n\r\na\r\n.\r\n\
         +OK Message 1 deleted\r\n[commit [10]]+OK Logging out, 1 message deleted\r\n[close]",
        retr2()
    ));
    assert!(hand_off.unread.ends_with(b"\nTO"));
}

#[test]
fn auth_plain_with_initial_response() {
    let t = Transcript::new(&[&format!("AUTH PLAIN {PLAIN_ALICE}\r\n"), "STAT\r\n"]);
    t.check(&format!("{LOGGED_IN}+OK 3 91\r\n"));
    let t = Transcript::new(&[
        &format!("AUTH PLAIN {PLAIN_ALICE}\r\nSTAT\r\nTOP 3 1\r\n"),
        "QUIT\r\n",
    ]);
    let hand_off = t.check(&format!(
        "{LOGGED_IN}+OK 3 91\r\n+OK\r\nX: 3\r\nY: 3\r\n\r\na\r\n.\r\n\
         [commit []]+OK Logging out\r\n[close]"
    ));
    assert_eq!(hand_off.unread, b"STAT\r\nTOP 3 1\r\n");
}

#[test]
fn auth_plain_with_continuation() {
    let t = Transcript::new(&["AUTH PLAIN\r\n", &format!("{PLAIN_ALICE}\r\n"), "STAT\r\n"]);
    t.check(&format!("+ \r\n{LOGGED_IN}+OK 3 91\r\n"));
    // The response line with commands behind it in the same write.
    let t = Transcript::new(&[
        "AUTH PLAIN\r\n",
        &format!("{PLAIN_ALICE}\r\nSTAT\r\nDELE 1\r\nQUIT\r\n"),
    ]);
    let hand_off = t.check(&format!(
        "+ \r\n{LOGGED_IN}+OK 3 91\r\n+OK Message 1 deleted\r\n\
         [commit [10]]+OK Logging out, 1 message deleted\r\n[close]"
    ));
    assert_eq!(hand_off.unread, b"STAT\r\nDELE 1\r\nQUIT\r\n");
    // A cancelled exchange and a wrong password stay on the frontend.
    let t = Transcript::new(&[
        "AUTH PLAIN\r\n",
        "*\r\n",
        "AUTH PLAIN\r\n",
        &format!("{PLAIN_WRONG}\r\nAUTH PLAIN\r\n"),
        &format!("{PLAIN_ALICE}\r\nNOOP\r\n"),
    ]);
    let hand_off = t.check(&format!(
        "+ \r\n-ERR Authentication cancelled\r\n+ \r\n-ERR [AUTH] Authentication failed\r\n\
         + \r\n{LOGGED_IN}+OK\r\n"
    ));
    assert_eq!(hand_off.bad_commands, 2);
    assert_eq!(hand_off.unread, b"NOOP\r\n");
}

#[test]
fn a_failed_pass_and_the_commands_behind_it_stay_on_the_frontend() {
    let t = Transcript::new(&[
        "USER alice\r\nPASS wrong\r\nSTAT\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n",
        "QUIT\r\n",
    ]);
    let hand_off = t.check(&format!(
        "+OK\r\n-ERR [AUTH] Authentication failed\r\n-ERR Command not valid in this state\r\n\
         +OK\r\n{LOGGED_IN}+OK 3 91\r\n[commit []]+OK Logging out\r\n[close]"
    ));
    assert_eq!(hand_off.bad_commands, 2);
    assert_eq!(hand_off.unread, b"STAT\r\n");
}

#[test]
fn bytes_that_reach_the_frontend_during_the_check_go_to_the_backend() {
    let mut t = Transcript::new(&[
        "USER alice\r\nPASS secret\r\nST",
        "AT\r\nLIST 2\r\n",
        "UIDL 3\r\nRE",
        "TR 2\r\n",
    ]);
    t.late = 2;
    let hand_off = t.check(&format!(
        "+OK\r\n{LOGGED_IN}+OK 3 91\r\n+OK 2 39\r\n+OK 3 uid-30\r\n{}",
        retr2()
    ));
    assert_eq!(hand_off.unread, b"STAT\r\nLIST 2\r\nUIDL 3\r\nRE");
}

#[test]
fn bad_commands_before_login_are_carried_over() {
    let config = Pop3Config {
        max_bad_commands: 2,
        ..Pop3Config::default()
    };
    let mut t = Transcript::new(&[
        "XYZZY\r\n",
        "PASS x\r\n",
        "USER alice\r\n",
        "PASS secret\r\n",
        "BOGUS\r\n",
        "STAT\r\n",
    ]);
    t.config = config.clone();
    let hand_off = t.check(&format!(
        "-ERR Unknown command\r\n-ERR USER first\r\n+OK\r\n{LOGGED_IN}\
         -ERR Unknown command\r\n-ERR Too many bad commands, closing connection\r\n[close]"
    ));
    assert_eq!(hand_off.bad_commands, 2);

    // Not carrying the count over would show: the backend would forgive the third.
    let mut backend = Session::resume_signed_in(
        config,
        true,
        HandOff {
            bad_commands: 0,
            ..hand_off
        },
    );
    let mut wire = Wire::default();
    settle(&mut backend, &mut wire, false);
    backend.handle(Input::Bytes(b"BOGUS\r\n"));
    settle(&mut backend, &mut wire, false);
    assert_eq!(
        String::from_utf8(wire.bytes).unwrap(),
        format!("{LOGGED_IN}-ERR Unknown command\r\n")
    );
}

#[test]
fn stls_before_login_and_plaintext_connections() {
    let mut t = Transcript::new(&[
        "CAPA\r\n",
        "STLS\r\n",
        "USER alice\r\nPASS secret\r\nCAPA\r\n",
    ]);
    t.tls = false;
    let capa = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
                PIPELINING\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\nIMPLEMENTATION Portico\r\n";
    t.check(&format!(
        "{capa}STLS\r\n.\r\n+OK Begin TLS negotiation\r\n+OK\r\n{LOGGED_IN}{capa}.\r\n"
    ));
    let mut t = Transcript::new(&["USER alice\r\nPASS secret\r\nSTAT\r\n"]);
    t.tls = false;
    t.config.plaintext_login_without_tls = true;
    t.check(&format!("+OK\r\n{LOGGED_IN}+OK 3 91\r\n"));
}

#[test]
fn every_cut_of_a_stream_gives_the_direct_bytes() {
    let stream = format!(
        "CAPA\r\nUSER alice\r\nPASS wrong\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n{PLAIN_ALICE}\r\n\
         STAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nTOP 3 2\r\nDELE 2\r\nRSET\r\nDELE 3\r\nQUIT\r\n"
    );
    let stream = stream.as_bytes();
    let whole = Transcript::new(&[std::str::from_utf8(stream).unwrap()]);
    let direct = String::from_utf8(whole.direct()).unwrap();
    assert!(direct.ends_with("[commit [30]]+OK Logging out, 1 message deleted\r\n[close]"));
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
fn no_hand_off_unless_credentials_are_being_checked() {
    let mut s = Session::new(Pop3Config::default(), false);
    let mut wire = Wire::default();
    settle(&mut s, &mut wire, true);
    assert_eq!(s.hand_off(), None, "fresh");
    s.handle(Input::Bytes(b"CAPA\r\nSTLS\r\n"));
    assert!(matches!(s.next_action(), Some(Action::Write(_))));
    assert_eq!(s.next_action(), Some(Action::StartTls));
    assert_eq!(s.hand_off(), None, "during STLS");
    s.handle(Input::TlsEstablished);
    s.handle(Input::Bytes(b"USER alice\r\n"));
    settle(&mut s, &mut wire, true);
    assert_eq!(s.hand_off(), None, "after USER");
    s.handle(Input::Bytes(b"PASS wrong\r\n"));
    assert_eq!(settle(&mut s, &mut wire, true), None);
    assert_eq!(s.hand_off(), None, "after a failed sign-in");
    s.handle(Input::Bytes(b"AUTH PLAIN\r\n"));
    settle(&mut s, &mut wire, true);
    assert_eq!(s.hand_off(), None, "during the SASL exchange");
    s.handle(Input::Bytes(
        format!("{PLAIN_ALICE}\r\nSTAT\r\n").as_bytes(),
    ));
    assert_eq!(settle(&mut s, &mut wire, true).as_deref(), Some("alice"));
    let hand_off = s.hand_off().expect("the check is pending");
    assert_eq!(
        hand_off,
        HandOff {
            username: "alice".into(),
            bad_commands: 1,
            unread: b"STAT\r\n".to_vec(),
        }
    );
    // Taking it changes nothing: the session can still go on by itself.
    s.handle(Input::AuthResult(Ok(())));
    assert_eq!(s.next_action(), Some(Action::OpenMaildrop));
    assert_eq!(s.hand_off(), None, "opening the maildrop");
    s.handle(Input::MaildropOpened(Ok(entries())));
    settle(&mut s, &mut wire, true);
    assert_eq!(s.hand_off(), None, "in TRANSACTION");
    assert!(
        String::from_utf8(wire.bytes)
            .unwrap()
            .ends_with(&format!("{LOGGED_IN}+OK 3 91\r\n"))
    );
    // A resumed session never hands off: it opens the maildrop first thing.
    let mut resumed = Session::resume_signed_in(Pop3Config::default(), true, hand_off);
    assert_eq!(resumed.hand_off(), None);
    assert_eq!(resumed.next_action(), Some(Action::OpenMaildrop));
}

/// Direct sessions, with bytes arriving while the credentials are checked: the same
/// answers as before the hand-off existed (these assertions hold on the version without
/// it too).
mod while_checking {
    use crate::session::{Action, AuthFailure, Input, MaildropEntry, Pop3Config, Session};

    fn drain(s: &mut Session) -> String {
        let mut out = String::new();
        while let Some(action) = s.next_action() {
            match action {
                Action::Write(bytes) => out.push_str(&String::from_utf8_lossy(&bytes)),
                Action::StartTls => out.push_str("[starttls]\n"),
                Action::Authenticate { username, password } => {
                    out.push_str(&format!("[auth {username}:{}]\n", password.expose()))
                }
                Action::OpenMaildrop => out.push_str("[open]\n"),
                Action::FetchMessage { uid, .. } => out.push_str(&format!("[fetch {uid}]\n")),
                Action::CommitDeletes { uids } => out.push_str(&format!("[commit {uids:?}]\n")),
                Action::Close => out.push_str("[close]\n"),
            }
        }
        out
    }

    fn send(s: &mut Session, bytes: &[u8]) -> String {
        s.handle(Input::Bytes(bytes));
        drain(s)
    }

    fn answer(s: &mut Session, input: Input<'_>) -> String {
        s.handle(input);
        drain(s)
    }

    fn start() -> Session {
        let mut s = Session::new(Pop3Config::default(), true);
        assert_eq!(drain(&mut s), "+OK Portico POP3 server ready\r\n");
        s
    }

    fn entries() -> Vec<MaildropEntry> {
        [(10, 26), (20, 39), (30, 26)]
            .into_iter()
            .map(|(uid, size)| MaildropEntry {
                uid,
                size,
                unique_id: format!("uid-{uid}"),
            })
            .collect()
    }

    const LOGGED_IN: &str = "+OK Logged in, 3 messages (91 octets)\r\n";
    const LIST: &str = "+OK 3 messages (91 octets)\r\n1 26\r\n2 39\r\n3 26\r\n.\r\n";

    #[test]
    fn commands_pipelined_behind_pass_in_the_same_write() {
        let mut s = start();
        assert_eq!(
            send(&mut s, b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\n"),
            "+OK\r\n[auth alice:secret]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            format!("{LOGGED_IN}+OK 3 91\r\n{LIST}")
        );
        assert_eq!(send(&mut s, b"NOOP\r\n"), "+OK\r\n");
    }

    #[test]
    fn commands_in_later_writes_before_the_check_is_answered() {
        let mut s = start();
        assert_eq!(
            send(&mut s, b"USER alice\r\nPASS secret\r\n"),
            "+OK\r\n[auth alice:secret]\n"
        );
        assert_eq!(send(&mut s, b"STAT\r\nLI"), "");
        assert_eq!(send(&mut s, b"ST\r\n"), "");
        assert_eq!(send(&mut s, b"RETR 1\r\nQUIT\r\n"), "");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        // More while the maildrop opens.
        assert_eq!(send(&mut s, b"NOOP\r\n"), "");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            format!("{LOGGED_IN}+OK 3 91\r\n{LIST}[fetch 10]\n")
        );
        assert_eq!(
            answer(&mut s, Input::MessageFetched(Ok(b"a\r\n".to_vec()))),
            "+OK 26 octets\r\na\r\n.\r\n[commit []]\n"
        );
        assert_eq!(
            answer(&mut s, Input::DeletesCommitted(Ok(()))),
            "+OK Logging out\r\n[close]\n"
        );
    }

    #[test]
    fn commands_behind_a_failed_check_run_in_authorization() {
        let mut s = start();
        assert_eq!(
            send(&mut s, b"USER alice\r\nPASS wrong\r\nSTAT\r\n"),
            "+OK\r\n[auth alice:wrong]\n"
        );
        assert_eq!(send(&mut s, b"USER alice\r\nPASS secret\r\nSTAT\r\n"), "");
        assert_eq!(
            answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials))),
            "-ERR [AUTH] Authentication failed\r\n-ERR Command not valid in this state\r\n\
             +OK\r\n[auth alice:secret]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            format!("{LOGGED_IN}+OK 3 91\r\n")
        );
    }

    #[test]
    fn a_sasl_continuation_and_a_long_line_behind_the_check() {
        let config = Pop3Config {
            max_line_len: 32,
            ..Pop3Config::default()
        };
        let mut s = Session::new(config, true);
        drain(&mut s);
        assert_eq!(
            send(&mut s, b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nNOOP\r\n"),
            "+ \r\n[auth alice:secret]\n"
        );
        let long = format!("{}\r\nSTAT\r\n", "X".repeat(40));
        assert_eq!(send(&mut s, long.as_bytes()), "");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            format!("{LOGGED_IN}+OK\r\n-ERR Line too long\r\n+OK 3 91\r\n")
        );
    }

    #[test]
    fn shutdown_and_quit_while_checking() {
        let mut s = start();
        send(&mut s, b"USER alice\r\nPASS secret\r\nSTAT\r\n");
        assert_eq!(
            answer(&mut s, Input::Shutdown),
            "-ERR [SYS/TEMP] Server shutting down\r\n[close]\n"
        );
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "");
        let mut s = start();
        send(&mut s, b"USER alice\r\nPASS secret\r\nQUIT\r\nSTAT\r\n");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        assert_eq!(
            answer(&mut s, Input::MaildropOpened(Ok(entries()))),
            format!("{LOGGED_IN}[commit []]\n")
        );
        assert_eq!(
            answer(&mut s, Input::DeletesCommitted(Ok(()))),
            "+OK Logging out\r\n[close]\n"
        );
    }

    #[test]
    fn a_flood_while_checking_is_cut_off() {
        let mut s = start();
        send(&mut s, b"USER alice\r\nPASS secret\r\n");
        assert_eq!(send(&mut s, &b"NOOP\r\n".repeat(200_000)), "");
        assert_eq!(answer(&mut s, Input::AuthResult(Ok(()))), "[open]\n");
        let out = answer(&mut s, Input::MaildropOpened(Ok(entries())));
        let noops = out.matches("+OK\r\n").count();
        assert!(noops > 1000 && noops < 200_000, "{noops}");
        assert!(out.ends_with("-ERR Too much pipelined input, closing connection\r\n[close]\n"));
    }

    #[test]
    fn a_flood_behind_a_failed_check_is_cut_off() {
        let mut s = start();
        send(&mut s, b"USER alice\r\nPASS wrong\r\n");
        assert_eq!(send(&mut s, &b"CAPA\r\n".repeat(100_000)), "");
        let out = answer(&mut s, Input::AuthResult(Err(AuthFailure::BadCredentials)));
        let capas = out.matches("+OK Capability list follows\r\n").count();
        assert!(capas < 100_000, "{capas}");
        assert!(out.ends_with("-ERR Too much pipelined input, closing connection\r\n[close]\n"));
    }
}

/// Takes the session's writes up to its credential check, left unanswered.
fn until_auth(session: &mut Session, wire: &mut Wire) {
    loop {
        match session.next_action() {
            Some(Action::Write(bytes)) => wire.bytes.extend(bytes),
            Some(Action::Authenticate { .. }) => return,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A second sign-in the client pipelined behind one whose maildrop was locked is read
/// from lines queued while the maildrop was being opened; whatever follows it must
/// still reach the backend.
#[test]
fn a_sign_in_after_a_locked_maildrop_hands_off_what_follows_it() {
    let writes = ["USER alice\r\nPASS secret\r\nUSER bob\r\nPASS secret\r\nSTAT\r\nLIST\r\n"];
    // Direct: alice's maildrop is locked, bob's opens.
    let mut direct = Session::new(Pop3Config::default(), true);
    let mut wire = Wire::default();
    settle(&mut direct, &mut wire, false);
    direct.handle(Input::Bytes(writes[0].as_bytes()));
    until_auth(&mut direct, &mut wire);
    direct.handle(Input::AuthResult(Ok(())));
    assert_eq!(direct.next_action(), Some(Action::OpenMaildrop));
    direct.handle(Input::MaildropOpened(Err(MaildropError::InUse)));
    settle(&mut direct, &mut wire, false);
    let direct = String::from_utf8(wire.bytes).unwrap();
    assert_eq!(
        direct,
        format!(
            "+OK Portico POP3 server ready\r\n+OK\r\n\
             -ERR [IN-USE] Mailbox is locked by another POP3 session\r\n+OK\r\n\
             {LOGGED_IN}+OK 3 91\r\n{LIST}"
        )
    );
    // Cut at bob's check: alice's maildrop was this node's, bob's is elsewhere.
    let mut frontend = Session::new(Pop3Config::default(), true);
    let mut wire = Wire::default();
    settle(&mut frontend, &mut wire, false);
    frontend.handle(Input::Bytes(writes[0].as_bytes()));
    until_auth(&mut frontend, &mut wire);
    frontend.handle(Input::AuthResult(Ok(())));
    assert_eq!(frontend.next_action(), Some(Action::OpenMaildrop));
    frontend.handle(Input::MaildropOpened(Err(MaildropError::InUse)));
    assert_eq!(
        settle(&mut frontend, &mut wire, true).as_deref(),
        Some("bob")
    );
    let hand_off = frontend.hand_off().expect("bob's check is pending");
    assert_eq!(hand_off.unread, b"STAT\r\nLIST\r\n");
    let mut backend = Session::resume_signed_in(Pop3Config::default(), true, hand_off);
    assert_eq!(backend.next_action(), Some(Action::OpenMaildrop));
    backend.handle(Input::MaildropOpened(Ok(entries())));
    settle(&mut backend, &mut wire, false);
    assert_eq!(String::from_utf8(wire.bytes).unwrap(), direct);
}

#[test]
fn no_hand_off_once_input_behind_the_check_was_dropped() {
    let mut s = Session::new(Pop3Config::default(), true);
    let mut wire = Wire::default();
    settle(&mut s, &mut wire, true);
    s.handle(Input::Bytes(b"USER alice\r\nPASS secret\r\nNOOP\r\n"));
    assert_eq!(settle(&mut s, &mut wire, true).as_deref(), Some("alice"));
    assert_eq!(s.hand_off().unwrap().unread, b"NOOP\r\n");
    // Past the budget the input goes to the reader, which drops what does not fit.
    s.handle(Input::Bytes(&b"NOOP\r\n".repeat(200_000)));
    assert_eq!(s.hand_off(), None);
    // The session itself goes on as it always did.
    s.handle(Input::AuthResult(Ok(())));
    s.handle(Input::MaildropOpened(Ok(entries())));
    settle(&mut s, &mut wire, false);
    assert!(
        String::from_utf8(wire.bytes)
            .unwrap()
            .ends_with("+OK\r\n-ERR Too much pipelined input, closing connection\r\n[close]")
    );
}
