//! Compaction (with a crash at every step), fsck, the free-space floor, and the promise
//! that sled never writes a blob file, against real stores in temporary directories.

use std::process::Command;

use portico_store::*;

/// Small segments so that a few messages fill several of them.
fn options() -> StoreOptions {
    StoreOptions {
        segment_size: 64 * 1024,
        ..StoreOptions::default()
    }
}

fn message(n: u32) -> Vec<u8> {
    let mut out = format!("Subject: m{n}\r\nMessage-ID: <{n}@m.test>\r\n\r\n").into_bytes();
    for line in 0..((n as usize * 37) % 900 + 1) {
        out.extend_from_slice(format!("line {line} of {n}\r\n").as_bytes());
    }
    out
}

/// An account with 60 messages over several segments, two thirds of them expunged
/// (every third kept); returns (INBOX id, the numbers of the messages kept).
fn fill(store: &Store) -> (MailboxId, Vec<(u32, Uid)>) {
    let account = store.create_account("c@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for n in 0..60 {
        let appended = store
            .append(inbox.id, &message(n), &Flags::default(), (0, 0))
            .unwrap();
        if n % 3 == 0 {
            kept.push((n, appended.uid));
        } else {
            doomed.push(appended.uid);
        }
    }
    store.expunge(inbox.id, &doomed).unwrap();
    (inbox.id, kept)
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("bodies"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

fn assert_kept(store: &Store, inbox: MailboxId, kept: &[(u32, Uid)]) {
    for (n, uid) in kept {
        assert_eq!(
            store.message_bytes(inbox, *uid).unwrap(),
            message(*n),
            "message {n}"
        );
    }
    assert_eq!(store.messages(inbox).unwrap().len(), kept.len());
}

#[test]
fn compaction_reclaims_dead_segments_and_keeps_every_live_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options()).unwrap();
    let (inbox, kept) = fill(&store);
    let before = segments(dir.path());
    assert!(before >= 4, "the test needs several segments, has {before}");
    let report = store.compact().unwrap();
    assert!(report.segments_removed >= 1, "{report:?}");
    assert!(report.records_moved >= 1, "{report:?}");
    assert!(segments(dir.path()) < before);
    assert_kept(&store, inbox, &kept);
    // A copy shares its body; both survive compaction, and releasing one keeps the other.
    let account = store.account_by_address("c@example.com").unwrap().unwrap();
    let archive = store
        .mailbox_by_name(account.id, "Archive")
        .unwrap()
        .unwrap();
    let copied = store.copy(inbox, &[kept[0].1], archive.id).unwrap();
    store.expunge(inbox, &[kept[0].1]).unwrap();
    store.compact().unwrap();
    assert_eq!(
        store.message_bytes(archive.id, copied.pairs[0].1).unwrap(),
        message(kept[0].0)
    );
    drop(store);
    let store = Store::open(dir.path(), &options()).unwrap();
    assert_kept(&store, inbox, &kept[1..]);
    assert!(store.fsck(false).unwrap().is_clean());
}

const STEPS: [&str; 5] = [
    "Copied",
    "CopiesDurable",
    "MetadataApplied",
    "MetadataDurable",
    "SegmentRemoved",
];

/// Runs compaction in a child process that aborts (as abruptly as kill -9) at each
/// step in turn; after every crash the store opens and every kept message is intact.
#[test]
fn compaction_survives_a_crash_at_every_step() {
    for step in STEPS {
        let dir = tempfile::tempdir().unwrap();
        let kept = {
            let store = Store::open(dir.path(), &options()).unwrap();
            fill(&store).1
        };
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "compaction_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PORTICO_COMPACT_DIR", dir.path())
            .env("PORTICO_COMPACT_ABORT_AT", step)
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have aborted at {step}");
        let store = Store::open(dir.path(), &options()).unwrap();
        let account = store.account_by_address("c@example.com").unwrap().unwrap();
        let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
        assert_kept(&store, inbox.id, &kept);
        // And a later pass finishes the job.
        store.compact().unwrap();
        assert_kept(&store, inbox.id, &kept);
        let report = store.fsck(false).unwrap();
        assert!(report.is_clean(), "after a crash at {step}: {report:?}");
    }
}

#[test]
#[ignore = "the child half of compaction_survives_a_crash_at_every_step"]
fn compaction_child() {
    let (Some(dir), Some(at)) = (
        std::env::var_os("PORTICO_COMPACT_DIR"),
        std::env::var("PORTICO_COMPACT_ABORT_AT").ok(),
    ) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), &options()).unwrap();
    store
        .compact_with(&mut |step| {
            if format!("{step:?}") == at {
                std::process::abort();
            }
        })
        .unwrap();
}

#[test]
fn fsck_names_damaged_messages_and_repair_sets_them_aside() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options()).unwrap();
    let (inbox, kept) = fill(&store);
    assert!(store.fsck(false).unwrap().is_clean());
    drop(store);
    // Flip a byte in the middle of the first kept message's record.
    let victim = message(kept[1].0);
    let mut damaged_segment = None;
    for entry in std::fs::read_dir(dir.path().join("bodies")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(victim.len()).position(|w| w == victim) {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(&[bytes[at + 40] ^ 0x20], (at + 40) as u64)
                .unwrap();
            damaged_segment = Some(path);
            break;
        }
    }
    assert!(damaged_segment.is_some(), "the record was found");
    let store = Store::open(dir.path(), &options()).unwrap();
    let error = store.message_bytes(inbox, kept[1].1).unwrap_err();
    assert!(
        matches!(&error, StoreError::Damaged(text) if text.starts_with(&format!("message UID {} in folder #{}", kept[1].1.0, inbox.0))),
        "{error}"
    );
    // The rest of the folder serves.
    for (n, uid) in kept.iter().filter(|(_, uid)| *uid != kept[1].1) {
        assert_eq!(store.message_bytes(inbox, *uid).unwrap(), message(*n));
    }
    let report = store.fsck(false).unwrap();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert!(report.damaged[0].contains(&format!("UID {}", kept[1].1.0)));
    let report = store.fsck(true).unwrap();
    assert_eq!(report.quarantined, 1);
    let report = store.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        store.mailbox(inbox).unwrap().messages as usize,
        kept.len() - 1
    );
    let vanished = store.expunged_since(inbox, ModSeq(0)).unwrap().unwrap();
    assert!(vanished.iter().any(|(uid, _)| *uid == kept[1].1));
}

#[test]
fn below_the_free_space_floor_new_mail_is_refused_and_the_rest_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options()).unwrap();
    let account = store.create_account("f@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let first = store
        .append(inbox.id, &message(1), &Flags::default(), (0, 0))
        .unwrap();
    drop(store);
    // A floor no disk can meet.
    let full = StoreOptions {
        min_free_bytes: u64::MAX,
        min_free_percent: 100.0,
        ..options()
    };
    let store = Store::open(dir.path(), &full).unwrap();
    assert!(matches!(
        store.append(inbox.id, &message(2), &Flags::default(), (0, 0)),
        Err(StoreError::NoSpace)
    ));
    assert!(matches!(
        store.enqueue("a@example.com", &["b@remote.example".into()], b"x", false),
        Err(StoreError::NoSpace)
    ));
    assert!(StoreError::NoSpace.is_temporary());
    // Flags and expunges still work, and nothing was half-stored.
    store
        .store_flags(
            inbox.id,
            &[first.uid],
            FlagOp::Add,
            &Flags::from_names(["\\Deleted"]),
        )
        .unwrap();
    assert_eq!(
        store.expunge(inbox.id, &[first.uid]).unwrap(),
        vec![first.uid]
    );
    let folder = store.mailbox(inbox.id).unwrap();
    assert_eq!((folder.messages, folder.uidnext), (0, Uid(2)));
}

/// sled writes any page over ~128 KiB to `blobs/` without ever fsyncing it: with the
/// bodies in the body log, even big messages and big folders never make one.
#[test]
fn no_blob_file_ever_appears() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let account = store.create_account("b@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let big = vec![b'x'; 3 * 1024 * 1024];
    let mut uids = Vec::new();
    for n in 0..3000u32 {
        let body = if n % 500 == 0 {
            big.clone()
        } else {
            message(n)
        };
        uids.push(
            store
                .append(inbox.id, &body, &Flags::default(), (0, 0))
                .unwrap()
                .uid,
        );
    }
    store
        .store_flags(inbox.id, &uids, FlagOp::Add, &Flags::from_names(["\\Seen"]))
        .unwrap();
    store.expunge(inbox.id, &uids[..1500]).unwrap();
    store.sync().unwrap();
    let blobs = dir.path().join("blobs");
    let count = std::fs::read_dir(&blobs).map_or(0, |entries| entries.count());
    assert_eq!(count, 0, "sled wrote blob files under {}", blobs.display());
}
