use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

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
    AccountRecord::V1(AccountV1 {
        address: address.to_string(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string(),
        home: home.to_string(),
        move_epoch: 0,
        imap_enabled: true,
        pop3_enabled: true,
        pop3_deletes: Pop3Deletes::Expunge,
        created: 1_796_000_000,
    })
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
    let start = || DirectoryNode::start(dir.path(), "test", 1, voters.clone()).expect("start");
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
        node.write(add.clone()).await.expect("add"),
        ChangeOutcome::Applied
    );
    assert_eq!(
        node.write(add).await.expect("add again"),
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
            .expect("update"),
        ChangeOutcome::Applied
    );
    assert_eq!(node.replica().accounts().expect("accounts"), vec![moved]);
    stop(node).await;
}
