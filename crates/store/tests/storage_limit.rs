//! Storage limits: what an account's mail takes, and appends and copies refused past a
//! limit with nothing left behind; moves and expunges never refused.

use portico_store::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &StoreOptions::default()).expect("open store")
}

/// A message of exactly `len` bytes (CRLF line ends, so nothing is added at append).
fn message(len: usize) -> Vec<u8> {
    let mut bytes = b"Subject: x\r\n\r\n".to_vec();
    bytes.resize(len, b'a');
    bytes
}

fn folder(store: &Store, account: AccountId, name: &str) -> Mailbox {
    store.mailbox_by_name(account, name).unwrap().unwrap()
}

fn staged(store: &Store, len: usize, limit: Option<u64>) -> AppendRequest {
    AppendRequest {
        staged: store.stage_message(&message(len), None).unwrap(),
        flags: Flags::default(),
        internal_date: (1, 0),
        storage_limit: limit,
    }
}

#[test]
fn usage_is_every_folder_and_deleted_messages_count_until_expunged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 0);
    let inbox = folder(&store, account.id, INBOX).id;
    let archive = folder(&store, account.id, "Archive").id;
    let a = store
        .append(inbox, &message(100), &Flags::default(), (1, 0))
        .unwrap();
    store
        .append(archive, &message(50), &Flags::default(), (1, 0))
        .unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 150);
    assert_eq!(store.deleted_size(inbox).unwrap(), 0);
    let deleted = Flags::from_names(["\\Deleted"]);
    store
        .store_flags(inbox, &[a.uid], FlagOp::Add, &deleted)
        .unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 150);
    assert_eq!(store.deleted_size(inbox).unwrap(), 100);
    assert_eq!(store.deleted_size(archive).unwrap(), 0);
    // A copy counts again, though it shares the body.
    store.copy(archive, &[Uid(1)], inbox).unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 200);
    store.expunge(inbox, &[a.uid]).unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 100);
    assert_eq!(store.deleted_size(inbox).unwrap(), 0);
    // Another account's mail is its own.
    let bob = store.create_account("bob@example.com", "h").unwrap();
    assert_eq!(store.account_usage(bob.id).unwrap(), 0);
}

#[test]
fn an_append_fits_up_to_the_limit_exactly_and_a_refusal_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    let inbox = folder(&store, account.id, INBOX);
    let limit = Some(300);
    store
        .append_limited(inbox.id, &message(200), &Flags::default(), (1, 0), limit)
        .unwrap();
    assert!(matches!(
        store.append_limited(inbox.id, &message(101), &Flags::default(), (1, 0), limit),
        Err(StoreError::OverQuota)
    ));
    // Refused without a trace: no UID used, counters as they were.
    let after = folder(&store, account.id, INBOX);
    assert_eq!(
        (after.messages, after.size, after.uidnext),
        (1, 200, Uid(2))
    );
    assert!(!StoreError::OverQuota.is_temporary());
    let fits = store
        .append_limited(inbox.id, &message(100), &Flags::default(), (1, 0), limit)
        .unwrap();
    assert_eq!(fits.uid, Uid(2));
    assert_eq!(store.account_usage(account.id).unwrap(), 300);
    assert!(matches!(
        store.check_room(account.id, 1, 300),
        Err(StoreError::OverQuota)
    ));
    store.check_room(account.id, 0, 300).unwrap();
    // A lower limit than the usage refuses everything; no limit refuses nothing.
    assert!(matches!(
        store.append_limited(inbox.id, &message(20), &Flags::default(), (1, 0), Some(10)),
        Err(StoreError::OverQuota)
    ));
    store
        .append_limited(inbox.id, &message(20), &Flags::default(), (1, 0), None)
        .unwrap();
    // The refused bodies are garbage for compaction, not "beyond the metadata".
    let report = store.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_batch_refuses_only_the_appends_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    let inbox = folder(&store, account.id, INBOX).id;
    let archive = folder(&store, account.id, "Archive").id;
    store
        .append(archive, &message(100), &Flags::default(), (1, 0))
        .unwrap();
    // 100 used of 400: 150 fits, 200 does not (450), 150 fits (400), a delivery with no
    // limit goes in whatever the others did.
    let batch = vec![
        staged(&store, 150, Some(400)),
        staged(&store, 200, Some(400)),
        staged(&store, 150, Some(400)),
        staged(&store, 30, None),
    ];
    let (results, ticket) = store.append_staged_limited(inbox, batch).unwrap();
    store.wait_committed(ticket).unwrap();
    let uids: Vec<Option<u32>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|a| a.uid.0))
        .collect();
    assert_eq!(uids, [Some(1), None, Some(2), Some(3)]);
    assert!(matches!(results[1], Err(StoreError::OverQuota)));
    assert_eq!(store.account_usage(account.id).unwrap(), 430);
    // A batch refused whole applies nothing a client could see.
    let (results, _) = store
        .append_staged_limited(inbox, vec![staged(&store, 10, Some(400))])
        .unwrap();
    assert!(matches!(results[..], [Err(StoreError::OverQuota)]));
    assert_eq!(folder(&store, account.id, INBOX).uidnext, Uid(4));
    assert!(store.fsck(false).unwrap().is_clean());
}

#[test]
fn copies_are_refused_whole_moves_and_expunges_never() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let account = store.create_account("ann@example.com", "h").unwrap();
    let inbox = folder(&store, account.id, INBOX).id;
    let archive = folder(&store, account.id, "Archive").id;
    let a = store
        .append(inbox, &message(100), &Flags::default(), (1, 0))
        .unwrap();
    let b = store
        .append(inbox, &message(100), &Flags::default(), (1, 0))
        .unwrap();
    // Copying both would make 400 of 350: neither is copied.
    assert!(matches!(
        store.copy_limited(inbox, &[a.uid, b.uid], archive, Some(350)),
        Err(StoreError::OverQuota)
    ));
    let untouched = folder(&store, account.id, "Archive");
    assert_eq!((untouched.messages, untouched.uidnext), (0, Uid(1)));
    let copied = store
        .copy_limited(inbox, &[a.uid], archive, Some(300))
        .unwrap();
    assert_eq!(copied.pairs, [(a.uid, Uid(1))]);
    assert_eq!(store.account_usage(account.id).unwrap(), 300);
    // At the limit: a move still goes (it adds nothing), and so does an expunge.
    store.move_messages(inbox, &[b.uid], archive).unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 300);
    store.expunge(archive, &[Uid(1)]).unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 200);
    store
        .copy_limited(archive, &[Uid(2)], inbox, Some(300))
        .unwrap();
    assert_eq!(store.account_usage(account.id).unwrap(), 300);
}
