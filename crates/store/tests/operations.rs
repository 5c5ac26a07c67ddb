//! Every store operation, against a real sled database in a temporary directory.

use portico_store::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &StoreOptions::default()).expect("open store")
}

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/../../tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn account_gets_inbox_and_special_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("Alice@Example.COM", "hash").unwrap();
    assert_eq!(account.address, "alice@example.com");
    let names: Vec<_> = store
        .mailboxes(account.id)
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.special_use))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Archive".to_string(), Some(SpecialUse::Archive)),
            ("Deleted Items".to_string(), Some(SpecialUse::Trash)),
            ("Drafts".to_string(), Some(SpecialUse::Drafts)),
            ("INBOX".to_string(), None),
            ("Junk Email".to_string(), Some(SpecialUse::Junk)),
            ("Sent".to_string(), Some(SpecialUse::Sent)),
        ]
    );
    let mut validities: Vec<_> = store
        .mailboxes(account.id)
        .unwrap()
        .iter()
        .map(|m| m.uidvalidity)
        .collect();
    validities.dedup();
    assert_eq!(validities.len(), 6, "each folder has its own UIDVALIDITY");
}

#[test]
fn accounts_are_unique_found_updated_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let alice = store.create_account("alice@example.com", "h1").unwrap();
    assert!(matches!(
        store.create_account("ALICE@example.com", "h2"),
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store.create_account("", "h"),
        Err(StoreError::InvalidName(_))
    ));
    let bob = store.create_account("bob@example.com", "h3").unwrap();
    assert_ne!(alice.id, bob.id);
    assert_eq!(
        store.account_by_address("Bob@Example.com").unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.account_by_address("carol@example.com").unwrap(), None);

    let mut changed = alice.clone();
    changed.password_hash = "new".into();
    changed.pop3_delete_mode = Pop3DeleteMode::Hide;
    changed.imap_enabled = false;
    store.update_account(&changed).unwrap();
    assert_eq!(store.account(alice.id).unwrap(), changed);

    let inbox = store.mailbox_by_name(alice.id, "INBOX").unwrap().unwrap();
    store
        .append(
            inbox.id,
            b"Subject: x\r\n\r\nbody\r\n",
            &Flags::default(),
            (0, 0),
        )
        .unwrap();
    store.delete_account(alice.id).unwrap();
    assert_eq!(store.account_by_address("alice@example.com").unwrap(), None);
    assert!(matches!(store.mailbox(inbox.id), Err(StoreError::NotFound)));
    assert!(store.messages(inbox.id).unwrap().is_empty());
    let listed: Vec<_> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(listed, vec!["bob@example.com"]);
}

#[test]
fn folders_create_rename_with_children_delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let work = store.create_mailbox(account.id, "Work", None).unwrap();
    let child = store.create_mailbox(account.id, "Work/2026", None).unwrap();
    let grandchild = store
        .create_mailbox(account.id, "Work/2026/Q4", None)
        .unwrap();
    let sibling = store.create_mailbox(account.id, "Workshop", None).unwrap();
    assert!(matches!(
        store.create_mailbox(account.id, "Work", None),
        Err(StoreError::AlreadyExists)
    ));
    for bad in ["", "a//b", "/a", "a/", "a\u{0}b"] {
        assert!(
            matches!(
                store.create_mailbox(account.id, bad, None),
                Err(StoreError::InvalidName(_))
            ),
            "{bad:?} must be refused"
        );
    }
    assert!(matches!(
        store.create_mailbox(account.id, &"x".repeat(MAX_MAILBOX_NAME_LEN + 1), None),
        Err(StoreError::InvalidName(_))
    ));
    assert_eq!(
        store
            .mailbox_by_name(account.id, "inbox")
            .unwrap()
            .unwrap()
            .name,
        "INBOX",
        "INBOX is case-insensitive"
    );

    let renamed = store.rename_mailbox(work.id, "Jobs").unwrap();
    assert_eq!(renamed.name, "Jobs");
    assert_eq!(store.mailbox(child.id).unwrap().name, "Jobs/2026");
    assert_eq!(store.mailbox(grandchild.id).unwrap().name, "Jobs/2026/Q4");
    assert_eq!(store.mailbox(sibling.id).unwrap().name, "Workshop");
    assert!(store.mailbox_by_name(account.id, "Work").unwrap().is_none());
    assert!(matches!(
        store.rename_mailbox(child.id, "Workshop"),
        Err(StoreError::AlreadyExists)
    ));
    let inbox = store.mailbox_by_name(account.id, "INBOX").unwrap().unwrap();
    assert!(matches!(
        store.delete_mailbox(inbox.id),
        Err(StoreError::NotAllowed(_))
    ));

    store
        .set_subscription(account.id, "Workshop", false, usize::MAX)
        .unwrap();
    assert!(!store.is_subscribed(account.id, "Workshop").unwrap());

    store
        .append(
            sibling.id,
            b"Subject: a\r\n\r\nx\r\n",
            &Flags::default(),
            (0, 0),
        )
        .unwrap();
    let old_validity = store.mailbox(sibling.id).unwrap().uidvalidity;
    store.delete_mailbox(sibling.id).unwrap();
    assert!(
        store
            .mailbox_by_name(account.id, "Workshop")
            .unwrap()
            .is_none()
    );
    let again = store.create_mailbox(account.id, "Workshop", None).unwrap();
    assert_ne!(again.id, sibling.id);
    assert_ne!(
        again.uidvalidity, old_validity,
        "a recreated folder gets a new UIDVALIDITY"
    );
    assert_eq!(again.uidnext, Uid(1));
}

#[test]
fn append_fetch_flags_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let large = corpus("013-large-attachment.eml");
    assert!(
        large.len() > 64 * 1024,
        "the test needs a message of several checksum blocks"
    );
    let plain = corpus("001-plain-ascii.eml");
    let a = store
        .append(
            inbox.id,
            &plain,
            &Flags::from_names(["\\seen"]),
            (1_700_000_000, 3600),
        )
        .unwrap();
    let b = store
        .append(inbox.id, &large, &Flags::default(), (0, 0))
        .unwrap();
    assert_eq!((a.uid, b.uid), (Uid(1), Uid(2)));
    assert_eq!(a.uidvalidity, inbox.uidvalidity);
    assert!(b.modseq > a.modseq);
    assert_eq!(store.message_bytes(inbox.id, a.uid).unwrap(), plain);
    assert_eq!(store.message_bytes(inbox.id, b.uid).unwrap(), large);
    let metas = store.messages(inbox.id).unwrap();
    assert_eq!(metas.len(), 2);
    assert_eq!(metas[0].internal_date, 1_700_000_000);
    assert_eq!(metas[0].internal_date_offset, 3600);
    assert_eq!(metas[0].size, plain.len() as u64);
    assert!(metas[0].flags.contains("\\Seen"));
    let folder = store.mailbox(inbox.id).unwrap();
    assert_eq!(folder.messages, 2);
    assert_eq!(folder.size, (plain.len() + large.len()) as u64);
    assert_eq!(folder.uidnext, Uid(3));

    let changed = store
        .store_flags(
            inbox.id,
            &[a.uid, b.uid, Uid(99)],
            FlagOp::Add,
            &Flags::from_names(["\\Flagged", "$Work"]),
        )
        .unwrap();
    assert_eq!(changed.len(), 2);
    let flags: Vec<_> = changed[0].flags.names().collect();
    assert_eq!(flags, vec!["\\Seen", "\\Flagged", "$Work"]);
    let unchanged = store
        .store_flags(
            inbox.id,
            &[a.uid],
            FlagOp::Add,
            &Flags::from_names(["\\Flagged"]),
        )
        .unwrap();
    assert!(unchanged.is_empty(), "a no-op STORE changes no MODSEQ");
    let removed = store
        .store_flags(
            inbox.id,
            &[a.uid],
            FlagOp::Remove,
            &Flags::from_names(["\\SEEN", "$work"]),
        )
        .unwrap();
    assert_eq!(
        removed[0].flags.names().collect::<Vec<_>>(),
        vec!["\\Flagged"]
    );
    let replaced = store
        .store_flags(
            inbox.id,
            &[a.uid],
            FlagOp::Replace,
            &Flags::from_names(["\\Deleted"]),
        )
        .unwrap();
    assert_eq!(
        replaced[0].flags.names().collect::<Vec<_>>(),
        vec!["\\Deleted"]
    );
    assert_eq!(
        store.mailbox(inbox.id).unwrap().highest_modseq,
        replaced[0].modseq
    );

    let before = store.mailbox(inbox.id).unwrap().highest_modseq;
    assert_eq!(
        store.expunge(inbox.id, &[b.uid, b.uid, Uid(77)]).unwrap(),
        vec![b.uid]
    );
    assert!(matches!(
        store.message_bytes(inbox.id, b.uid),
        Err(StoreError::NotFound)
    ));
    let vanished = store.expunged_since(inbox.id, before).unwrap().unwrap();
    assert_eq!(vanished.len(), 1);
    assert_eq!(vanished[0].0, b.uid);
    assert!(
        store
            .expunged_since(inbox.id, vanished[0].1)
            .unwrap()
            .unwrap()
            .is_empty()
    );
    let folder = store.mailbox(inbox.id).unwrap();
    assert_eq!((folder.messages, folder.size), (1, plain.len() as u64));

    // UIDs never go backwards, even after the highest message is gone.
    let c = store
        .append(inbox.id, &plain, &Flags::default(), (0, 0))
        .unwrap();
    assert_eq!(c.uid, Uid(3));
}

#[test]
fn bare_lf_is_stored_as_crlf_and_everything_else_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let bare = corpus("018-bare-lf-body.eml");
    let appended = store
        .append(inbox.id, &bare, &Flags::default(), (0, 0))
        .unwrap();
    let stored = store.message_bytes(inbox.id, appended.uid).unwrap();
    assert_eq!(stored, normalize_line_endings(&bare).as_ref());
    assert!(!stored.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    assert_eq!(appended.size, stored.len() as u64);
    assert_eq!(
        &*normalize_line_endings(b"a\nb\r\nc\rd\n"),
        b"a\r\nb\r\nc\rd\r\n"
    );
    for entry in
        std::fs::read_dir(format!("{}/../../tests/corpus", env!("CARGO_MANIFEST_DIR"))).unwrap()
    {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let appended = store
            .append(inbox.id, &bytes, &Flags::default(), (0, 0))
            .unwrap();
        assert_eq!(
            store.message_bytes(inbox.id, appended.uid).unwrap(),
            normalize_line_endings(&bytes).as_ref()
        );
    }
}

#[test]
fn data_survives_reopen_and_uids_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (inbox, uidvalidity) = {
        let store = open(&dir);
        let account = store.create_account("alice@example.com", "h").unwrap();
        let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
        for _ in 0..3 {
            store
                .append(
                    inbox.id,
                    b"Subject: x\r\n\r\ny\r\n",
                    &Flags::default(),
                    (0, 0),
                )
                .unwrap();
        }
        store.expunge(inbox.id, &[Uid(3)]).unwrap();
        (inbox.id, inbox.uidvalidity)
    };
    let store = open(&dir);
    let folder = store.mailbox(inbox).unwrap();
    assert_eq!(folder.uidvalidity, uidvalidity);
    assert_eq!(folder.uidnext, Uid(4));
    let appended = store
        .append(inbox, b"Subject: z\r\n\r\n", &Flags::default(), (0, 0))
        .unwrap();
    assert_eq!(appended.uid, Uid(4));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    // sled's lock is per process (flock); a child process must see it.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "open_from_child", "--nocapture"])
        .env("PORTICO_STORE_LOCK_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("child saw Locked"),
        "child output: {stdout}"
    );
}

#[test]
#[ignore = "run by a_second_open_of_the_same_directory_is_refused_as_locked"]
fn open_from_child() {
    let Some(dir) = std::env::var_os("PORTICO_STORE_LOCK_DIR") else {
        return;
    };
    match Store::open(std::path::Path::new(&dir), &StoreOptions::default()) {
        Err(StoreError::Locked) => println!("child saw Locked"),
        Err(other) => println!("child saw {other:?}"),
        Ok(_) => println!("child opened it"),
    }
}

#[test]
fn concurrent_appends_share_syncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir));
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let body = format!("Subject: {t}-{i}\r\n\r\nbody\r\n");
                        store
                            .append(inbox, body.as_bytes(), &Flags::default(), (0, 0))
                            .unwrap()
                            .uid
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut uids: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 200, "every append got its own UID");
    assert!(store.syncs() <= 201, "never more than one sync per write");
    assert_eq!(store.messages(inbox).unwrap().len(), 200);
}

#[test]
fn copy_shares_bodies_and_move_is_copy_plus_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let archive = store
        .mailbox_by_name(account.id, "Archive")
        .unwrap()
        .unwrap();
    let large = corpus("013-large-attachment.eml");
    let small = corpus("001-plain-ascii.eml");
    let a = store
        .append(inbox, &large, &Flags::from_names(["\\Seen"]), (5, 0))
        .unwrap();
    let b = store
        .append(inbox, &small, &Flags::default(), (6, 0))
        .unwrap();

    let copied = store
        .copy(inbox, &[b.uid, a.uid, Uid(42)], archive.id)
        .unwrap();
    assert_eq!(copied.uidvalidity, archive.uidvalidity);
    assert_eq!(copied.pairs, vec![(a.uid, Uid(1)), (b.uid, Uid(2))]);
    let copy_meta = store.message(archive.id, Uid(1)).unwrap();
    assert!(
        copy_meta.flags.contains("\\Seen"),
        "flags travel with the copy"
    );
    assert_eq!(
        copy_meta.internal_date, 5,
        "INTERNALDATE travels with the copy"
    );
    assert_eq!(store.message_bytes(archive.id, Uid(1)).unwrap(), large);

    // Expunging the original leaves the copy's shared body intact, and the other way round.
    store.expunge(inbox, &[a.uid]).unwrap();
    assert_eq!(store.message_bytes(archive.id, Uid(1)).unwrap(), large);
    store.expunge(archive.id, &[Uid(1)]).unwrap();
    assert!(matches!(
        store.message_bytes(archive.id, Uid(1)),
        Err(StoreError::NotFound)
    ));

    let moved = store.move_messages(inbox, &[b.uid], archive.id).unwrap();
    assert_eq!(moved.pairs, vec![(b.uid, Uid(3))]);
    assert!(store.messages(inbox).unwrap().is_empty());
    assert_eq!(store.mailbox(inbox).unwrap().messages, 0);
    let folder = store.mailbox(archive.id).unwrap();
    assert_eq!((folder.messages, folder.uidnext), (2, Uid(4)));
    assert_eq!(store.message_bytes(archive.id, Uid(3)).unwrap(), small);
    // Gone from INBOX: a move of it within INBOX (allowed, RFC 6851) moves nothing.
    assert!(
        store
            .move_messages(inbox, &[b.uid], inbox)
            .unwrap()
            .pairs
            .is_empty()
    );
}

#[test]
fn summaries_are_made_at_append_and_follow_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let archive = store
        .mailbox_by_name(account.id, "Archive")
        .unwrap()
        .unwrap()
        .id;
    let large = corpus("013-large-attachment.eml");
    let appended = store
        .append(inbox, &large, &Flags::default(), (0, 0))
        .unwrap();
    let summary = store.message_summary(inbox, appended.uid).unwrap();
    assert_eq!(summary, portico_mime::summarize(&large));
    let header = store.message_header(inbox, appended.uid).unwrap();
    assert_eq!(header, &large[..summary.header_len()]);
    assert!(header.ends_with(b"\r\n\r\n"));
    // The decoded fields SEARCH compares are kept beside it.
    let fields = store.search_fields(inbox, appended.uid).unwrap().unwrap();
    assert_eq!(fields, portico_mime::search_fields(&large));
    assert!(!fields.from.is_empty() && fields.sent.is_some());
    let copied = store.copy(inbox, &[appended.uid], archive).unwrap();
    assert_eq!(
        store.message_summary(archive, copied.pairs[0].1).unwrap(),
        summary
    );
    assert_eq!(
        store.search_fields(archive, copied.pairs[0].1).unwrap(),
        Some(fields.clone())
    );
    store.expunge(inbox, &[appended.uid]).unwrap();
    assert!(matches!(
        store.message_summary(inbox, appended.uid),
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.search_fields(inbox, appended.uid).unwrap(), None);
    let moved = store
        .move_messages(archive, &[copied.pairs[0].1], inbox)
        .unwrap();
    assert_eq!(
        store.search_fields(inbox, moved.pairs[0].1).unwrap(),
        Some(fields)
    );
    assert_eq!(
        store.search_fields(archive, copied.pairs[0].1).unwrap(),
        None
    );
}

#[test]
fn expunge_history_is_bounded_and_says_when_it_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let total = EXPUNGE_HISTORY + 10;
    for _ in 0..total {
        store
            .append(inbox, b"Subject: x\r\n\r\n", &Flags::default(), (0, 0))
            .unwrap();
    }
    let uids: Vec<Uid> = (1..=total).map(Uid).collect();
    for chunk in uids.chunks(1000) {
        store.expunge(inbox, chunk).unwrap();
    }
    let folder = store.mailbox(inbox).unwrap();
    assert!(
        folder.expunged_kept <= EXPUNGE_HISTORY,
        "history is bounded"
    );
    assert!(folder.vanished_floor > ModSeq(0));
    assert_eq!(
        store.expunged_since(inbox, ModSeq(0)).unwrap(),
        None,
        "old history is gone"
    );
    let recent = store
        .expunged_since(inbox, folder.vanished_floor)
        .unwrap()
        .unwrap();
    assert!(
        recent.iter().any(|(uid, _)| *uid == Uid(total)),
        "recent expunges are kept"
    );
}

#[test]
fn queue_keeps_messages_until_every_recipient_is_done_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let message = corpus("005-multipart-mixed-attachments.eml");
    let id = {
        let store = open(&dir);
        assert!(matches!(
            store.enqueue("a@example.com", &[], b"x", false),
            Err(StoreError::NotAllowed(_))
        ));
        let recipients = vec![
            "x@remote.example".to_string(),
            "y@remote.example".to_string(),
        ];
        let entry = store
            .enqueue("a@example.com", &recipients, &message, false)
            .unwrap();
        assert_eq!(entry.recipients.len(), 2);
        assert_eq!(store.stats().queued_messages, 1);
        entry.id
    };
    let store = open(&dir);
    assert_eq!(store.stats().queued_messages, 1, "counted again at open");
    let entry = store.queued(id).unwrap();
    assert_eq!(store.queued_bytes(&entry).unwrap(), message);
    assert_eq!(store.queue().unwrap().len(), 1);
    let mut left = entry.recipients.clone();
    left.remove(0);
    left[0].attempts = 1;
    left[0].last_error = Some("451 try later".into());
    store.update_queued(id, left).unwrap();
    assert_eq!(store.queued(id).unwrap().recipients[0].attempts, 1);
    assert_eq!(store.flush_queue().unwrap(), 1);
    assert_eq!(store.queued(id).unwrap().recipients[0].next_attempt, 0);
    assert_eq!(store.stats().queued_messages, 1);
    store.delete_queued(id).unwrap();
    assert!(store.queue().unwrap().is_empty());
    assert!(matches!(store.queued(id), Err(StoreError::NotFound)));
    assert_eq!(store.stats().queued_messages, 0);
    // Removing it again changes nothing.
    assert!(store.delete_queued(id).is_err());
    assert_eq!(store.stats().queued_messages, 0);
}

#[test]
fn stats_count_sync_calls_and_the_observer_sees_every_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = seen.clone();
    assert!(store.observe_commits(move |writes| observed.lock().unwrap().push(writes)));
    assert!(!store.observe_commits(|_| {}), "the first observer stays");
    let before = store.stats();
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let staged = (0..3)
        .map(|i| {
            let message = format!("Subject: {i}\r\n\r\nbody\r\n");
            let staged = store.stage_message(message.as_bytes(), None).unwrap();
            (staged, Flags::default(), (0, 0))
        })
        .collect();
    let (appended, ticket) = store.append_staged_many(inbox.id, staged).unwrap();
    assert_eq!(appended.len(), 3);
    store.wait_committed(ticket).unwrap();
    let after = store.stats();
    let rounds = seen.lock().unwrap().clone();
    assert_eq!(
        rounds.len() as u64,
        after.commit_rounds - before.commit_rounds
    );
    // The three appends in one batch count as three writes, in the last round.
    assert_eq!(rounds.last(), Some(&3));
    assert!(rounds.iter().all(|&writes| writes > 0), "{rounds:?}");
    // Each round syncs the `db` file; the appends' also synced the body log's segment.
    assert!(after.sync_calls > before.sync_calls + rounds.len() as u64);
}

#[test]
fn unseen_and_deleted_counts_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let archive = store
        .mailbox_by_name(account.id, "Archive")
        .unwrap()
        .unwrap()
        .id;
    let counts = |mailbox| {
        let kept = store.folder_counts(mailbox).unwrap();
        // Whatever is kept is what a scan finds.
        let mut scanned = FolderCounts::default();
        for meta in store.messages(mailbox).unwrap() {
            let one = FolderCounts::of(&meta.flags);
            scanned.unseen += one.unseen;
            scanned.deleted += one.deleted;
        }
        assert_eq!(kept, scanned);
        (kept.unseen, kept.deleted)
    };
    let body = corpus("001-plain-ascii.eml");
    let mut uids = Vec::new();
    for flags in [
        &["\\Seen"][..],
        &[],
        &["\\Deleted"],
        &["\\Seen", "\\Deleted"],
        &[],
    ] {
        let appended = store
            .append(
                inbox,
                &body,
                &Flags::from_names(flags.iter().copied()),
                (0, 0),
            )
            .unwrap();
        uids.push(appended.uid);
    }
    assert_eq!(counts(inbox), (3, 2));
    store
        .store_flags(inbox, &uids, FlagOp::Add, &Flags::from_names(["\\Seen"]))
        .unwrap();
    assert_eq!(counts(inbox), (0, 2));
    store
        .store_flags(
            inbox,
            &uids[..2],
            FlagOp::Replace,
            &Flags::from_names(["\\Deleted"]),
        )
        .unwrap();
    assert_eq!(counts(inbox), (2, 4));
    store.copy(inbox, &uids[..3], archive).unwrap();
    assert_eq!(counts(archive), (2, 3));
    store.move_messages(inbox, &uids[3..], archive).unwrap();
    assert_eq!((counts(inbox), counts(archive)), ((2, 3), (2, 4)));
    // The copies of the first two (unseen, deleted) go.
    let archived: Vec<Uid> = store
        .messages(archive)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    store.expunge(archive, &archived[..2]).unwrap();
    assert_eq!(counts(archive), (0, 2));
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.folder_counts(inbox).unwrap(),
        FolderCounts {
            unseen: 2,
            deleted: 3
        }
    );
    // A new folder, and a deleted one, count nothing.
    let new = store.create_mailbox(account.id, "New", None).unwrap();
    assert_eq!(
        store.folder_counts(new.id).unwrap(),
        FolderCounts::default()
    );
    store.delete_mailbox(archive).unwrap();
    assert_eq!(
        store.folder_counts(archive).unwrap(),
        FolderCounts::default()
    );
    let report = store.fsck(false).unwrap();
    assert!(report.index_errors.is_empty(), "{:?}", report.index_errors);
}

#[test]
fn header_block_reads_the_header_alone_however_long_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let long_header = format!("X-Long: {}\r\nSubject: s\r\n\r\n", "h".repeat(100_000));
    for message in [
        "Subject: short\r\n\r\nbody\r\n".to_string(),
        format!("{long_header}body\r\n"),
        "Subject: no body at all\r\n".to_string(),
        format!("Subject: big body\r\n\r\n{}", "b".repeat(200_000)),
    ] {
        let uid = store
            .append(inbox, message.as_bytes(), &Flags::default(), (0, 0))
            .unwrap()
            .uid;
        let meta = store.message(inbox, uid).unwrap();
        let header = store.header_block(inbox, &meta).unwrap();
        assert_eq!(header, store.message_header(inbox, uid).unwrap());
        let end = message.find("\r\n\r\n").map_or(message.len(), |at| at + 4);
        assert_eq!(header, message.as_bytes()[..end]);
    }
}

#[test]
fn ranges_of_a_message_read_only_their_blocks_and_match_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store
        .mailbox_by_name(account.id, INBOX)
        .unwrap()
        .unwrap()
        .id;
    let message: Vec<u8> = (0..300_000u32).map(|n| b'a' + (n % 26) as u8).collect();
    let uid = store
        .append(inbox, &message, &Flags::default(), (0, 0))
        .unwrap()
        .uid;
    let block = 64 * 1024;
    for (start, len) in [
        (0, 10),
        (0, message.len() as u64),
        (block - 1, 2),
        (block, block),
        (3 * block + 5, 100_000),
        (299_990, 100),
        (400_000, 10),
        (1234, 0),
    ] {
        let got = store.message_range(inbox, uid, start, len).unwrap();
        let from = (start as usize).min(message.len());
        let to = from.saturating_add(len as usize).min(message.len());
        assert_eq!(got, message[from..to], "{start} {len}");
    }
}

#[test]
fn a_move_into_the_same_folder_gives_new_uids_and_keeps_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    for n in 0..3 {
        let message = format!("Subject: {n}\r\n\r\nbody {n}\r\n");
        store
            .append(
                inbox.id,
                message.as_bytes(),
                &Flags::from_names(["\\Seen"]),
                (1, 0),
            )
            .unwrap();
    }
    let moved = store
        .move_messages(inbox.id, &[Uid(1), Uid(3)], inbox.id)
        .unwrap();
    assert_eq!(moved.pairs, vec![(Uid(1), Uid(4)), (Uid(3), Uid(5))]);
    let uids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, vec![Uid(2), Uid(4), Uid(5)]);
    let folder = store.mailbox(inbox.id).unwrap();
    assert_eq!((folder.messages, folder.uidnext), (3, Uid(6)));
    assert_eq!(
        store.message_bytes(inbox.id, Uid(4)).unwrap(),
        b"Subject: 0\r\n\r\nbody 0\r\n"
    );
    assert_eq!(
        store.folder_counts(inbox.id).unwrap(),
        FolderCounts::default()
    );
    let expunged = store.expunged_since(inbox.id, ModSeq(0)).unwrap().unwrap();
    assert_eq!(
        expunged.iter().map(|(uid, _)| *uid).collect::<Vec<_>>(),
        vec![Uid(1), Uid(3)]
    );
    // The bodies are shared, not leaked: expunging the copies frees them.
    store.expunge(inbox.id, &[Uid(4), Uid(5)]).unwrap();
    assert_eq!(store.messages(inbox.id).unwrap().len(), 1);
}

#[test]
fn a_message_with_a_binary_part_is_kept_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("alice@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    // RFC 3516: a binary part's LF is a byte like any other, not a line end.
    let message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: BINARY\r\n\r\n\x00\n\xff\r\n--b--\r\n";
    let appended = store
        .append(inbox.id, message, &Flags::default(), (0, 0))
        .unwrap();
    assert_eq!(
        store.message_bytes(inbox.id, appended.uid).unwrap(),
        message
    );
    let summary = store.message_summary(inbox.id, appended.uid).unwrap();
    assert!(summary.root().has_binary());
    // Without a binary part, bare LFs still become CRLF.
    let text = b"Subject: t\n\nline\n";
    let appended = store
        .append(inbox.id, text, &Flags::default(), (0, 0))
        .unwrap();
    assert_eq!(
        store.message_bytes(inbox.id, appended.uid).unwrap(),
        b"Subject: t\r\n\r\nline\r\n"
    );
}

#[test]
fn the_first_recent_uid_only_moves_forward_and_counts_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    let inbox = store.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    for n in 0..4 {
        let message = format!("Subject: {n}\r\n\r\nx\r\n");
        store
            .append(inbox.id, message.as_bytes(), &Flags::default(), (1, 0))
            .unwrap();
    }
    // A new folder's messages are all recent.
    assert_eq!(store.first_recent(inbox.id).unwrap(), Some(Uid(1)));
    assert_eq!(store.recent_count(inbox.id).unwrap(), 4);
    store.advance_first_recent(inbox.id, Uid(3)).unwrap();
    assert_eq!(store.recent_count(inbox.id).unwrap(), 2);
    // Writes landing out of order keep the newest.
    store.advance_first_recent(inbox.id, Uid(2)).unwrap();
    assert_eq!(store.first_recent(inbox.id).unwrap(), Some(Uid(3)));
    store.expunge(inbox.id, &[Uid(4)]).unwrap();
    assert_eq!(store.recent_count(inbox.id).unwrap(), 1);
    store.sync().unwrap();
    drop(store);
    let store = open(&dir);
    assert_eq!(store.first_recent(inbox.id).unwrap(), Some(Uid(3)));
    // A folder from before the value was kept (here: an imported one) has none.
    let old = store
        .import_folder(
            account.id,
            &FolderImport {
                name: "Old".into(),
                uidvalidity: Uidvalidity(9),
                uidnext: Uid(1),
                highest_modseq: ModSeq(1),
                special_use: None,
                subscribed: true,
            },
        )
        .unwrap();
    assert_eq!(store.first_recent(old.id).unwrap(), None);
    assert_eq!(store.recent_count(old.id).unwrap(), 0);
    // A deleted folder keeps nothing.
    let work = store.create_mailbox(account.id, "Work", None).unwrap();
    store.advance_first_recent(work.id, Uid(1)).unwrap();
    store.delete_mailbox(work.id).unwrap();
    assert_eq!(store.first_recent(work.id).unwrap(), None);
    store.advance_first_recent(work.id, Uid(5)).unwrap();
    assert_eq!(store.first_recent(work.id).unwrap(), None);
}

/// A subscription is a name: it outlives its folder, may come before it, moves with a
/// RENAME, and goes with the account.
#[test]
fn subscriptions_are_names_kept_apart_from_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("sub@example.com", "h").unwrap();
    let subscriptions = || store.subscriptions(account.id).unwrap();
    let folders: Vec<String> = store
        .mailboxes(account.id)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        subscriptions(),
        folders,
        "a new account's folders are subscribed"
    );
    for name in folders.iter().filter(|name| *name != INBOX) {
        store
            .set_subscription(account.id, name, false, usize::MAX)
            .unwrap();
    }
    assert_eq!(subscriptions(), ["INBOX"]);

    let fruit = store.create_mailbox(account.id, "Fruit", None).unwrap();
    store
        .create_mailbox(account.id, "Fruit/Apple", None)
        .unwrap();
    assert_eq!(subscriptions(), ["Fruit", "Fruit/Apple", "INBOX"]);
    store
        .set_subscription(account.id, "Fruit/Peach", true, usize::MAX)
        .unwrap();
    store
        .set_subscription(account.id, "Fruit", false, usize::MAX)
        .unwrap();
    assert_eq!(subscriptions(), ["Fruit/Apple", "Fruit/Peach", "INBOX"]);

    let apple = store
        .mailbox_by_name(account.id, "Fruit/Apple")
        .unwrap()
        .unwrap();
    store.delete_mailbox(apple.id).unwrap();
    assert!(
        store.is_subscribed(account.id, "Fruit/Apple").unwrap(),
        "DELETE keeps the subscription (RFC 9051 §6.3.7)"
    );

    store.rename_mailbox(fruit.id, "Food").unwrap();
    store.create_mailbox(account.id, "Food/Kiwi", None).unwrap();
    store
        .set_subscription(account.id, "Food/Kiwi", false, usize::MAX)
        .unwrap();
    store
        .rename_mailbox(
            store
                .mailbox_by_name(account.id, "Food")
                .unwrap()
                .unwrap()
                .id,
            "Fruit",
        )
        .unwrap();
    assert_eq!(
        subscriptions(),
        ["Fruit/Apple", "Fruit/Peach", "INBOX"],
        "unsubscribed folders stay unsubscribed under their new name"
    );
    store
        .rename_mailbox(
            store
                .mailbox_by_name(account.id, "Fruit/Kiwi")
                .unwrap()
                .unwrap()
                .id,
            "Kiwi",
        )
        .unwrap();
    store
        .set_subscription(account.id, "Kiwi", true, usize::MAX)
        .unwrap();
    let kiwi = store.mailbox_by_name(account.id, "Kiwi").unwrap().unwrap();
    store.rename_mailbox(kiwi.id, "Lime").unwrap();
    assert!(store.is_subscribed(account.id, "Lime").unwrap());
    assert!(!store.is_subscribed(account.id, "Kiwi").unwrap());

    assert!(matches!(
        store.set_subscription(account.id, "One/More", true, 4),
        Err(StoreError::LimitExceeded(TOO_MANY_SUBSCRIPTIONS))
    ));
    store
        .set_subscription(account.id, "INBOX", false, 4)
        .unwrap();
    store
        .set_subscription(account.id, "One/More", true, 4)
        .unwrap();
    assert!(matches!(
        store.set_subscription(account.id, "", true, 4),
        Err(StoreError::InvalidName(_))
    ));

    store.delete_account(account.id).unwrap();
    let again = store.create_account("sub@example.com", "h").unwrap();
    assert_eq!(store.subscriptions(again.id).unwrap(), folders);
    drop(store);
    let store = open(&dir);
    assert_eq!(store.subscriptions(again.id).unwrap(), folders);
    assert!(store.subscriptions(account.id).unwrap().is_empty());
}

/// Annotations (IMAP METADATA) are set all or none within the folder's limit, follow a
/// RENAME of the folder or of a parent, go with DELETE and with the account.
#[test]
fn annotations_follow_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("meta@example.com", "h").unwrap();
    let set = |folder: &str, name: &str, value: Option<&str>, max: usize| {
        store.set_metadata(
            account.id,
            folder,
            &[(name.to_string(), value.map(|v| v.as_bytes().to_vec()))],
            max,
        )
    };
    let work = store.create_mailbox(account.id, "Work", None).unwrap();
    store.create_mailbox(account.id, "Work/Old", None).unwrap();
    set("Work", "/private/comment", Some("w"), 10).unwrap();
    set("Work/Old", "/shared/comment", Some("o"), 10).unwrap();
    set("", "/private/vendor/x/theme", Some("dark"), 10).unwrap();
    assert!(matches!(
        set("Nowhere", "/private/comment", Some("x"), 10),
        Err(StoreError::NotFound)
    ));
    // One over the limit: nothing of the change is kept.
    let two = [
        ("/private/a".to_string(), Some(b"1".to_vec())),
        ("/private/b".to_string(), Some(b"2".to_vec())),
    ];
    assert!(matches!(
        store.set_metadata(account.id, "Work", &two, 2),
        Err(StoreError::LimitExceeded(TOO_MANY_METADATA))
    ));
    assert_eq!(
        store.metadata(account.id, "Work").unwrap(),
        [("/private/comment".to_string(), b"w".to_vec())]
    );
    store.rename_mailbox(work.id, "Jobs").unwrap();
    assert!(store.metadata(account.id, "Work").unwrap().is_empty());
    assert_eq!(
        store.metadata(account.id, "Jobs/Old").unwrap(),
        [("/shared/comment".to_string(), b"o".to_vec())]
    );
    set("Jobs", "/private/comment", None, 10).unwrap();
    assert!(store.metadata(account.id, "Jobs").unwrap().is_empty());
    let old = store
        .mailbox_by_name(account.id, "Jobs/Old")
        .unwrap()
        .unwrap();
    store.delete_mailbox(old.id).unwrap();
    store.create_mailbox(account.id, "Jobs/Old", None).unwrap();
    assert!(store.metadata(account.id, "Jobs/Old").unwrap().is_empty());
    assert_eq!(store.metadata(account.id, "").unwrap().len(), 1);
    store.delete_account(account.id).unwrap();
    assert!(store.metadata(account.id, "").unwrap().is_empty());
}
