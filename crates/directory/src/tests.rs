use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use std::sync::Arc;

use super::*;

/// A fresh directory database in a temporary directory, for each of the suite's cases.
struct FreshDirectory;

impl StoreBuilder<DirectoryRaft, LogStore, StateMachine, TempDir> for FreshDirectory {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, machine) = open(dir.path()).expect("open the directory database");
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_conformance_suite_passes() {
    Suite::test_all(FreshDirectory).expect("openraft's storage suite");
}

fn account(address: &str, home: &str) -> AccountRecord {
    AccountRecord::new(AccountV2::new(
        address,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        home,
        1_796_000_000,
    ))
}

fn normal(index: u64, change: DirectoryChange) -> openraft::Entry<DirectoryRaft> {
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(change),
    }
}

#[tokio::test]
async fn changes_are_checked_against_the_state_and_survive_reopening() {
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_log, mut machine) = open(dir.path()).expect("open");
        let outcomes = machine
            .apply([
                normal(
                    1,
                    DirectoryChange::AddAccount(account("ann@example.com", "d1")),
                ),
                normal(
                    2,
                    DirectoryChange::AddAccount(account("ann@example.com", "d2")),
                ),
                normal(
                    3,
                    DirectoryChange::UpdateAccount(account("bob@example.com", "d1")),
                ),
                normal(
                    4,
                    DirectoryChange::AddAccount(account("bob@example.com", "s2")),
                ),
                normal(
                    5,
                    DirectoryChange::UpdateAccount(account("bob@example.com", "d2")),
                ),
                normal(
                    6,
                    DirectoryChange::DeleteAccount {
                        address: "cid@example.com".to_string(),
                    },
                ),
            ])
            .await
            .expect("apply");
        assert_eq!(
            outcomes,
            vec![
                ChangeOutcome::Applied,
                ChangeOutcome::AddressTaken,
                ChangeOutcome::NoSuchAccount,
                ChangeOutcome::Applied,
                ChangeOutcome::Applied,
                ChangeOutcome::NoSuchAccount,
            ]
        );
    }
    let (_log, mut machine) = open(dir.path()).expect("reopen");
    let replica = machine.replica();
    assert_eq!(
        replica.accounts().expect("accounts"),
        vec![
            account("ann@example.com", "d1"),
            account("bob@example.com", "d2")
        ]
    );
    assert_eq!(replica.account("nobody@example.com").expect("read"), None);
    let (applied, _) = machine.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|id| id.index), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_one_starts_itself_commits_and_resumes_after_a_restart() {
    use std::collections::BTreeMap;
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let me = PeerNode {
        name: "n".to_string(),
        address: String::new(),
    };
    let voters = BTreeMap::from([(1, me)]);
    let start = || {
        DirectoryNode::start(dir.path(), "test", 1, voters.clone(), Arc::new(NoPeers))
            .expect("start")
    };
    let stop = |node: DirectoryNode| async move {
        tokio::task::spawn_blocking(move || node.stop())
            .await
            .expect("stop");
    };

    let node = start();
    assert!(node.wait_leader(Duration::from_secs(10)).await);
    let ann = account("ann@example.com", "n");
    let add = DirectoryChange::AddAccount(ann.clone());
    assert_eq!(
        node.write(add.clone()).await.expect("add").outcome,
        ChangeOutcome::Applied
    );
    assert_eq!(
        node.write(add).await.expect("add again").outcome,
        ChangeOutcome::AddressTaken
    );
    assert_eq!(
        node.replica().account("ann@example.com").expect("read"),
        Some(ann.clone())
    );
    stop(node).await;

    // Started again: not initialised twice, the account is there, and changes go on.
    let node = start();
    assert!(node.wait_leader(Duration::from_secs(10)).await);
    assert_eq!(
        node.replica().account("ann@example.com").expect("read"),
        Some(ann)
    );
    let moved = account("ann@example.com", "n2");
    assert_eq!(
        node.write(DirectoryChange::UpdateAccount(moved.clone()))
            .await
            .expect("update")
            .outcome,
        ChangeOutcome::Applied
    );
    assert_eq!(
        node.replica().accounts().expect("accounts"),
        vec![moved.clone()]
    );

    // A removal leaves the last record for the home node, until the address is taken
    // again.
    let remove = DirectoryChange::DeleteAccount {
        address: "ann@example.com".into(),
    };
    assert_eq!(
        node.write(remove.clone()).await.expect("remove").outcome,
        ChangeOutcome::Applied
    );
    assert_eq!(
        node.write(remove).await.expect("remove again").outcome,
        ChangeOutcome::NoSuchAccount
    );
    assert_eq!(node.replica().accounts().expect("accounts"), vec![]);
    assert_eq!(
        node.replica().removed().expect("removed"),
        vec![moved.clone()]
    );
    let bob = account("bob@example.com", "n");
    node.write(DirectoryChange::AddAccount(bob.clone()))
        .await
        .expect("add bob");
    assert_eq!(node.status().role, crate::RaftRole::Leader);
    stop(node).await;
    let node = start();
    assert!(node.wait_leader(Duration::from_secs(10)).await);
    assert_eq!(node.replica().removed().expect("removed"), vec![moved]);
    let again = account("ann@example.com", "n");
    node.write(DirectoryChange::AddAccount(again.clone()))
        .await
        .expect("add again");
    assert_eq!(node.replica().removed().expect("removed"), vec![]);
    assert_eq!(
        node.replica().accounts().expect("accounts"),
        vec![again, bob]
    );
    stop(node).await;
}

/// Members of one test group, calling each other in-process unless cut off.
#[derive(Default)]
struct Loopback {
    members: std::sync::Mutex<std::collections::HashMap<String, DirectoryNode>>,
    cut: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// One member's end of the [`Loopback`].
struct Wire {
    from: String,
    net: Arc<Loopback>,
}

impl PeerTransport for Wire {
    fn call(&self, target: &PeerNode, call: RaftCall) -> CallFuture {
        let cut = self.net.cut.lock().unwrap();
        let reachable = !cut.contains(&self.from) && !cut.contains(&target.name);
        let member = self.net.members.lock().unwrap().get(&target.name).cloned();
        Box::pin(async move {
            match member {
                Some(member) if reachable => Ok(member.answer(call).await),
                _ => Err(std::io::Error::other("cut off")),
            }
        })
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_and_outlive_a_cut_off_leader() {
    use std::collections::BTreeMap;
    let net = Arc::new(Loopback::default());
    let names = ["a", "b", "c"];
    let voters: BTreeMap<NodeId, PeerNode> = (1..=3)
        .map(|id| {
            let node = PeerNode {
                name: names[id as usize - 1].to_string(),
                address: String::new(),
            };
            (id, node)
        })
        .collect();
    let dirs: Vec<_> = names
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for (i, (id, peer)) in voters.iter().enumerate() {
        let wire = Arc::new(Wire {
            from: peer.name.clone(),
            net: net.clone(),
        });
        let node =
            DirectoryNode::start(dirs[i].path(), "test", *id, voters.clone(), wire).expect("start");
        net.members
            .lock()
            .unwrap()
            .insert(peer.name.clone(), node.clone());
        nodes.push(node);
    }
    let agreed_leader = |nodes: &[DirectoryNode]| {
        let leaders: Vec<_> = nodes.iter().map(DirectoryNode::leader).collect();
        leaders[0].filter(|_| leaders.iter().all(|l| *l == leaders[0]))
    };
    eventually("a leader all agree on", || agreed_leader(&nodes).is_some()).await;
    let first = agreed_leader(&nodes).expect("leader");
    let leader = &nodes[first as usize - 1];
    let follower = &nodes[(first as usize) % 3];

    let ann = account("ann@example.com", "a");
    assert_eq!(
        leader
            .write(DirectoryChange::AddAccount(ann.clone()))
            .await
            .expect("add on the leader")
            .outcome,
        ChangeOutcome::Applied
    );
    match follower
        .write(DirectoryChange::AddAccount(account("bob@example.com", "b")))
        .await
    {
        Err(WriteError::NotLeader {
            leader: Some(named),
        }) => {
            assert_eq!(named.name, names[first as usize - 1])
        }
        other => panic!("a follower took a change: {other:?}"),
    }
    eventually("every replica has ann", || {
        nodes
            .iter()
            .all(|n| n.replica().account("ann@example.com").unwrap() == Some(ann.clone()))
    })
    .await;

    // The leader is cut off: the other two elect one of theirs and take changes; the
    // old leader cannot commit any.
    let old = names[first as usize - 1].to_string();
    net.cut.lock().unwrap().insert(old.clone());
    let others: Vec<DirectoryNode> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first as usize - 1)
        .map(|(_, n)| n.clone())
        .collect();
    eventually("a new leader among the others", || {
        agreed_leader(&others).is_some_and(|l| l != first)
    })
    .await;
    let second = agreed_leader(&others).expect("new leader");
    let cid = account("cid@example.com", "c");
    assert_eq!(
        nodes[second as usize - 1]
            .write(DirectoryChange::AddAccount(cid.clone()))
            .await
            .expect("add on the new leader")
            .outcome,
        ChangeOutcome::Applied
    );
    let refused = nodes[first as usize - 1]
        .write(DirectoryChange::AddAccount(account("dan@example.com", "a")))
        .await;
    assert!(
        matches!(
            refused,
            Err(WriteError::NoQuorum(_)) | Err(WriteError::NotLeader { .. })
        ),
        "{refused:?}"
    );
    // Reads go on on the cut-off member, from its replica.
    assert_eq!(
        nodes[first as usize - 1]
            .replica()
            .account("ann@example.com")
            .unwrap(),
        Some(ann.clone())
    );

    // Healed: the old leader follows and every replica converges.
    net.cut.lock().unwrap().clear();
    eventually("one leader and the same accounts everywhere", || {
        let lists: Vec<_> = nodes
            .iter()
            .map(|n| n.replica().accounts().unwrap())
            .collect();
        agreed_leader(&nodes).is_some()
            && lists.iter().all(|l| *l == vec![ann.clone(), cid.clone()])
    })
    .await;
    assert!(
        nodes[first as usize - 1]
            .replica()
            .account("dan@example.com")
            .unwrap()
            .is_none()
    );
    for node in nodes {
        tokio::task::spawn_blocking(move || node.stop())
            .await
            .expect("stop");
    }
}

#[test]
fn node_ids_are_fixed_by_the_name() {
    // FNV-1a's published values: a change here would renumber every cluster's members.
    assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(node_id("d1"), node_id("d2"));
}

#[test]
fn a_setting_change_touches_only_its_fields() {
    use crate::Effect;
    let ann = account("ann@example.com", "n");
    let access = DirectoryChange::SetAccess {
        address: "ann@example.com".into(),
        imap_enabled: None,
        pop3_enabled: Some(false),
        pop3_deletes: Some(Pop3Deletes::Hide),
    };
    let (outcome, effect) = access.effect(Some(&ann));
    assert_eq!(outcome, ChangeOutcome::Applied);
    let Effect::Replace(changed) = effect else {
        panic!("{effect:?}");
    };
    let mut expected = ann.fields().into_owned();
    expected.pop3_enabled = false;
    expected.pop3_deletes = Pop3Deletes::Hide;
    assert_eq!(changed, AccountRecord::new(expected));
    let password = DirectoryChange::SetPassword {
        address: "ann@example.com".into(),
        password_hash: "new".into(),
    };
    let (_, effect) = password.effect(Some(&changed));
    let Effect::Replace(again) = effect else {
        panic!("{effect:?}");
    };
    assert_eq!(again.fields().password_hash, "new");
    assert!(!again.fields().pop3_enabled, "the access change stays");
    assert_eq!(
        password.effect(None),
        (ChangeOutcome::NoSuchAccount, Effect::Nothing)
    );
    assert_eq!(
        DirectoryChange::AddAccount(ann.clone()).effect(Some(&ann)),
        (ChangeOutcome::AddressTaken, Effect::Nothing)
    );
}

#[test]
fn a_move_applies_only_to_the_home_and_epoch_it_was_made_for() {
    use crate::Effect;
    let ann = account("ann@example.com", "d2");
    let move_to = |from: &str, move_epoch: u64| DirectoryChange::Move {
        address: "ann@example.com".into(),
        from: from.into(),
        move_epoch,
        to: "s2".into(),
    };
    let (outcome, effect) = move_to("d2", 0).effect(Some(&ann));
    assert_eq!(outcome, ChangeOutcome::Applied);
    let Effect::Replace(moved) = effect else {
        panic!("{effect:?}");
    };
    assert_eq!((moved.home(), moved.fields().move_epoch), ("s2", 1));
    assert_eq!(moved.fields().password_hash, ann.fields().password_hash);
    // Made for the old record: another move or a rehome came first.
    assert_eq!(
        move_to("d2", 0).effect(Some(&moved)),
        (ChangeOutcome::Stale, Effect::Nothing)
    );
    assert_eq!(
        move_to("s2", 0).effect(Some(&moved)),
        (ChangeOutcome::Stale, Effect::Nothing)
    );
    assert_eq!(
        move_to("d2", 0).effect(None),
        (ChangeOutcome::NoSuchAccount, Effect::Nothing)
    );
}

/// A record and a log of the release before storage limits, bincode as it wrote them:
/// the enums as they were then.
mod before_storage_limits {
    use serde::{Deserialize, Serialize};

    use crate::{AccountV1, Pop3Deletes};

    #[derive(Serialize, Deserialize)]
    pub enum AccountRecord {
        V1(AccountV1),
    }

    #[derive(Serialize, Deserialize)]
    pub enum DirectoryChange {
        AddAccount(AccountRecord),
        UpdateAccount(AccountRecord),
        DeleteAccount {
            address: String,
        },
        SetPassword {
            address: String,
            password_hash: String,
        },
        SetAccess {
            address: String,
            imap_enabled: Option<bool>,
            pop3_enabled: Option<bool>,
            pop3_deletes: Option<Pop3Deletes>,
        },
        Rehome {
            address: String,
            home: String,
        },
        Move {
            address: String,
            from: String,
            move_epoch: u64,
            to: String,
        },
    }
}

fn old_account(address: &str) -> AccountV1 {
    AccountV1 {
        address: address.into(),
        password_hash: "$argon2id$old".into(),
        home: "d1".into(),
        move_epoch: 3,
        imap_enabled: false,
        pop3_enabled: true,
        pop3_deletes: Pop3Deletes::Hide,
        created: 1_700_000_000,
    }
}

#[test]
fn a_record_and_a_log_of_the_previous_release_still_read() {
    use before_storage_limits as old;
    let ann = old_account("ann@example.com");
    let bytes = encode(&old::AccountRecord::V1(ann.clone())).unwrap();
    let record: AccountRecord = decode(&bytes).unwrap();
    assert_eq!(record, AccountRecord::V1(ann.clone()));
    assert_eq!(record.address(), "ann@example.com");
    assert_eq!(record.home(), "d1");
    assert_eq!(record.storage_limit(), None);
    let fields = record.fields();
    assert_eq!(
        (fields.move_epoch, fields.imap_enabled, fields.pop3_deletes),
        (3, false, Pop3Deletes::Hide)
    );
    assert_eq!(fields.storage_limit, None);
    let add = encode(&old::DirectoryChange::AddAccount(old::AccountRecord::V1(
        ann,
    )))
    .unwrap();
    assert!(matches!(
        decode::<DirectoryChange>(&add).unwrap(),
        DirectoryChange::AddAccount(AccountRecord::V1(_))
    ));
    let access = encode(&old::DirectoryChange::SetAccess {
        address: "ann@example.com".into(),
        imap_enabled: Some(true),
        pop3_enabled: None,
        pop3_deletes: None,
    })
    .unwrap();
    assert_eq!(
        decode::<DirectoryChange>(&access).unwrap(),
        DirectoryChange::SetAccess {
            address: "ann@example.com".into(),
            imap_enabled: Some(true),
            pop3_enabled: None,
            pop3_deletes: None,
        }
    );
    let moved = encode(&old::DirectoryChange::Move {
        address: "ann@example.com".into(),
        from: "d1".into(),
        move_epoch: 3,
        to: "s2".into(),
    })
    .unwrap();
    assert!(matches!(
        decode::<DirectoryChange>(&moved).unwrap(),
        DirectoryChange::Move { move_epoch: 3, .. }
    ));
}

#[test]
fn a_storage_limit_change_upgrades_the_record_and_keeps_the_rest() {
    use crate::Effect;
    let old = AccountRecord::V1(old_account("ann@example.com"));
    let limit = |limit| DirectoryChange::SetStorageLimit {
        address: "ann@example.com".into(),
        limit,
    };
    let (outcome, effect) = limit(Some(500 << 20)).effect(Some(&old));
    assert_eq!(outcome, ChangeOutcome::Applied);
    let Effect::Replace(limited) = effect else {
        panic!("{effect:?}");
    };
    let mut expected = AccountV2::from(old_account("ann@example.com"));
    expected.storage_limit = Some(500 << 20);
    assert_eq!(limited, AccountRecord::V2(expected));
    assert_eq!(limited.storage_limit(), Some(500 << 20));
    // Other changes keep it; `None` removes it.
    let access = DirectoryChange::SetAccess {
        address: "ann@example.com".into(),
        imap_enabled: Some(true),
        pop3_enabled: None,
        pop3_deletes: None,
    };
    let (_, Effect::Replace(opened)) = access.effect(Some(&limited)) else {
        panic!("access change");
    };
    assert_eq!(opened.storage_limit(), Some(500 << 20));
    assert!(opened.fields().imap_enabled);
    let (_, Effect::Replace(unlimited)) = limit(None).effect(Some(&opened)) else {
        panic!("limit removed");
    };
    assert_eq!(unlimited.storage_limit(), None);
    assert_eq!(
        limit(Some(1)).effect(None),
        (ChangeOutcome::NoSuchAccount, Effect::Nothing)
    );
    // The new record round-trips.
    let bytes = encode(&limited).unwrap();
    assert_eq!(decode::<AccountRecord>(&bytes).unwrap(), limited);
}
