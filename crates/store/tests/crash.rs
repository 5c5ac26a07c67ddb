//! Crash test: a child process appends in a loop and reports each append that returned
//! success; the parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that every acknowledged message is there, byte for byte.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portico_store::*;

/// The message the child writes as number `n`: distinct, of varied size, some of them
/// several chunks long.
fn message(n: u32) -> Vec<u8> {
    let mut out =
        format!("Subject: crash test {n}\r\nMessage-ID: <{n}@crash.test>\r\n\r\n").into_bytes();
    let lines = (n as usize * 7919) % 3000;
    for line in 0..lines {
        out.extend_from_slice(format!("line {line} of message {n} ..........\r\n").as_bytes());
    }
    out
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PORTICO_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked: Vec<(u32, u32)> = Vec::new();
        let kill_after = 20 + (round * 37) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                let mut parts = rest.split(' ');
                let n: u32 = parts.next().unwrap().parse().unwrap();
                let uid: u32 = parts.next().unwrap().parse().unwrap();
                acked.push((n, uid));
            }
            if acked.len() >= kill_after || Instant::now() > deadline {
                break;
            }
        }
        // SIGKILL mid-stream: the child is appending its next message right now.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            acked.len() >= kill_after,
            "child stopped early: {} acks",
            acked.len()
        );

        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let account = store
            .account_by_address("crash@example.com")
            .unwrap()
            .unwrap();
        let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
        for (n, uid) in &acked {
            let stored = store.message_bytes(inbox.id, Uid(*uid)).unwrap();
            assert_eq!(
                stored,
                message(*n),
                "message {n} (uid {uid}) differs after the crash"
            );
        }
        // Whatever got in beyond the acknowledged ones is whole, never half-written.
        for meta in store.messages(inbox.id).unwrap() {
            let bytes = store.message_bytes(inbox.id, meta.uid).unwrap();
            assert_eq!(bytes.len() as u64, meta.size);
        }
        let folder = store.mailbox(inbox.id).unwrap();
        assert!(
            folder.uidnext.0 > acked.last().unwrap().1,
            "UIDs never go backwards"
        );
    }
}

#[test]
#[ignore = "the child half of acknowledged_appends_survive_sigkill"]
fn crash_child() {
    let Some(dir) = std::env::var_os("PORTICO_CRASH_DIR") else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), &StoreOptions::default()).unwrap();
    let account = store.create_account("crash@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    for n in 0.. {
        let appended = store
            .append(inbox.id, &message(n), &Flags::default(), (0, 0))
            .unwrap();
        println!("acked {n} {}", appended.uid.0);
    }
}
