//! A mailbox brought from another store keeps every number a client holds.

use portico_store::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &StoreOptions::default()).expect("open store")
}

fn copy_account(from: &Store, address: &str, to: &Store) -> Account {
    let old = from.account_by_address(address).unwrap().unwrap();
    let new = to.import_account(address, "!", old.created).unwrap();
    for folder in from.mailboxes(old.id).unwrap() {
        let made = to
            .import_folder(new.id, &from.folder_import(&folder).unwrap())
            .unwrap();
        let mut batch = Vec::new();
        for meta in from.messages(folder.id).unwrap() {
            let bytes = from.bytes_of(folder.id, &meta).unwrap();
            let staged = to.stage_message(&bytes, None).unwrap();
            batch.push((staged, MessageImport::of(&meta)));
        }
        let ticket = to.import_messages(made.id, batch).unwrap();
        to.wait_committed(ticket).unwrap();
    }
    new
}

#[test]
fn an_imported_mailbox_has_the_same_folders_uids_flags_dates_and_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (open(&a), open(&b));
    let account = source.create_account("ann@example.com", "h").unwrap();
    let inbox = source.mailbox_by_name(account.id, INBOX).unwrap().unwrap();
    let work = source
        .create_mailbox(account.id, "Work/2026", None)
        .unwrap();
    source
        .set_subscription(account.id, &work.name, false, usize::MAX)
        .unwrap();
    for n in 0..5u8 {
        let flags = Flags::from_names(if n % 2 == 0 {
            vec!["\\Seen", "$Label1"]
        } else {
            vec![]
        });
        let message = format!("Subject: {n}\r\n\r\nbody {n}\r\n");
        source
            .append(
                inbox.id,
                message.as_bytes(),
                &flags,
                (1_700_000_000 + i64::from(n), 3600),
            )
            .unwrap();
    }
    source
        .append(
            work.id,
            b"Subject: w\r\n\r\nwork\r\n",
            &Flags::default(),
            (5, -7200),
        )
        .unwrap();
    source.expunge(inbox.id, &[Uid(2)]).unwrap();
    source
        .store_flags(
            inbox.id,
            &[Uid(4)],
            FlagOp::Add,
            &Flags::from_names(["\\Flagged"]),
        )
        .unwrap();

    let copied = copy_account(&source, "ann@example.com", &target);
    assert_eq!(copied.created, account.created);
    let before = source.mailboxes(account.id).unwrap();
    let after = target.mailboxes(copied.id).unwrap();
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(
            source.folder_import(old).unwrap(),
            target.folder_import(new).unwrap()
        );
        assert_eq!(
            (old.messages, old.size),
            (new.messages, new.size),
            "{}",
            old.name
        );
        assert_eq!(
            source.folder_counts(old.id).unwrap(),
            target.folder_counts(new.id).unwrap()
        );
        let (old_messages, new_messages) = (
            source.messages(old.id).unwrap(),
            target.messages(new.id).unwrap(),
        );
        assert_eq!(old_messages.len(), new_messages.len());
        for (m, n) in old_messages.iter().zip(&new_messages) {
            assert_eq!(MessageImport::of(m), MessageImport::of(n));
            assert_eq!(m.size, n.size);
            assert_eq!(
                source.bytes_of(old.id, m).unwrap(),
                target.bytes_of(new.id, n).unwrap()
            );
            assert_eq!(
                source.message_summary(old.id, m.uid).unwrap(),
                target.message_summary(new.id, n.uid).unwrap()
            );
        }
        // Expunges before the move are not known one by one.
        if new.highest_modseq > ModSeq(1) {
            assert_eq!(target.expunged_since(new.id, ModSeq(1)).unwrap(), None);
        }
        assert_eq!(
            target.expunged_since(new.id, new.highest_modseq).unwrap(),
            Some(vec![])
        );
    }
    // The next message continues the folder's UIDs.
    let new_inbox = target.mailbox_by_name(copied.id, INBOX).unwrap().unwrap();
    let next = target
        .append(
            new_inbox.id,
            b"Subject: n\r\n\r\nnew\r\n",
            &Flags::default(),
            (9, 0),
        )
        .unwrap();
    assert_eq!(next.uid, Uid(6));
    assert!(next.modseq > new_inbox.highest_modseq);
    // A folder made again here never gets the imported UIDVALIDITY back.
    let old_work = target
        .mailbox_by_name(copied.id, "Work/2026")
        .unwrap()
        .unwrap();
    target.delete_mailbox(old_work.id).unwrap();
    let again = target.create_mailbox(copied.id, "Work/2026", None).unwrap();
    assert!(again.uidvalidity > old_work.uidvalidity);
}

#[test]
fn imported_messages_must_come_in_uid_order_below_uidnext() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.import_account("bob@example.com", "!", 1).unwrap();
    assert!(store.mailboxes(account.id).unwrap().is_empty());
    let folder = FolderImport {
        name: INBOX.into(),
        uidvalidity: Uidvalidity(77),
        uidnext: Uid(10),
        highest_modseq: ModSeq(20),
        special_use: None,
        subscribed: true,
    };
    let inbox = store.import_folder(account.id, &folder).unwrap();
    assert!(matches!(
        store.import_folder(account.id, &folder),
        Err(StoreError::AlreadyExists)
    ));
    let message = |uid: u32| {
        let staged = store
            .stage_message(b"Subject: x\r\n\r\nx\r\n", None)
            .unwrap();
        let import = MessageImport {
            uid: Uid(uid),
            flags: Flags::default(),
            internal_date: (1, 0),
            modseq: ModSeq(5),
            // Kept as sent, known or not: not the time of the import.
            save_date: (uid == 3).then_some(1_234),
        };
        (staged, import)
    };
    for wrong in [
        vec![message(10)],
        vec![message(3), message(3)],
        vec![message(0)],
    ] {
        assert!(
            matches!(
                store.import_messages(inbox.id, wrong),
                Err(StoreError::NotAllowed(_))
            ),
            "refused"
        );
    }
    let ticket = store
        .import_messages(inbox.id, vec![message(3), message(9)])
        .unwrap();
    store.wait_committed(ticket).unwrap();
    // Nothing of the refused batches was kept.
    let uids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, vec![Uid(3), Uid(9)]);
    let saved: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.save_date)
        .collect();
    assert_eq!(saved, vec![Some(1_234), None]);
    assert!(matches!(
        store.import_messages(inbox.id, vec![message(5)]),
        Err(StoreError::NotAllowed(_))
    ));
    let zero = FolderImport {
        name: "Zero".into(),
        uidnext: Uid(0),
        ..folder
    };
    assert!(matches!(
        store.import_folder(account.id, &zero),
        Err(StoreError::NotAllowed(_))
    ));
}
