use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portico_cluster::ClusterConfig;
use portico_directory::{
    AccountRecord, AccountV2, ChangeOutcome, Committed, DirectoryChange, Pop3Deletes, node_id,
};
use portico_internode::LinkTransport;

use super::*;
use crate::pki::NodeIdentity;

/// Certificates for `nodes` of a cluster called `cluster`, made in `dir`.
fn certificates(dir: &Path, cluster: &str, nodes: &[&str]) {
    let voters = nodes.len() - (1 - nodes.len() % 2);
    let text = nodes.iter().enumerate().fold(
        format!("cluster = \"{cluster}\"\n[[site]]\nname = \"s\"\n"),
        |text, (i, node)| {
            let role = if i < voters { "directory" } else { "frontend" };
            text + &format!(
                "[[node]]\nname = \"{node}\"\nsite = \"s\"\nroles = [\"backend\", \"{role}\"]\ndata_dir = \"{node}\"\ninternode = \"127.0.0.1:{}\"\n",
                7100 + i
            )
        },
    );
    let config = ClusterConfig::parse(&text, PathBuf::from(".")).expect("config");
    crate::pki::init(&config, dir).expect("cluster init");
}

fn identity(dir: &Path, node: &str) -> NodeIdentity {
    NodeIdentity::load(dir, node).expect("identity")
}

fn account(address: &str) -> AccountRecord {
    AccountRecord::new(AccountV2 {
        address: address.to_string(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string(),
        home: "a".to_string(),
        move_epoch: 0,
        imap_enabled: true,
        pop3_enabled: true,
        pop3_deletes: Pop3Deletes::Expunge,
        created: 0,
        storage_limit: None,
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An actix arbiter on a thread of its own, where the internode listener runs each
/// connection (as on a node's worker arbiters).
fn actix_worker() -> actix_rt::ArbiterHandle {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            sender.send(actix_rt::Arbiter::current()).expect("send");
            std::future::pending::<()>().await
        })
    });
    receiver.recv().expect("arbiter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_members_replicate_over_mutual_tls_from_their_own_addresses() {
    let pki = tempfile::tempdir().expect("tempdir");
    let names = ["a", "b", "c"];
    certificates(pki.path(), "test", &names);
    // Each node on its own loopback address, as in the example cluster.
    let mut listeners = Vec::new();
    let mut voters = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let ip: IpAddr = format!("127.0.0.{}", 61 + i).parse().expect("ip");
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let peer = PeerNode {
            name: name.to_string(),
            address: address.to_string(),
        };
        voters.insert(node_id(name), peer);
        listeners.push((ip, listener));
    }
    let data: Vec<_> = names
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    let worker = actix_worker();
    for (i, (ip, listener)) in listeners.into_iter().enumerate() {
        let me = identity(pki.path(), names[i]);
        let client = crate::pki::internode_client_config(&me).expect("client config");
        let server = crate::pki::internode_server_config(&me).expect("server config");
        let transport = Arc::new(LinkTransport::new(names[i], TlsDialer::new(client, ip)));
        let directory = DirectoryNode::start(
            data[i].path(),
            "test",
            node_id(names[i]),
            voters.clone(),
            transport,
        )
        .expect("start");
        let calls = Arc::new(NodeCalls {
            directory: DirectoryCalls {
                node: names[i].to_string(),
                directory: directory.clone(),
            },
            cluster: None,
            node: OnceLock::new(),
            admin: OnceLock::new(),
        });
        let workers = Arc::new(Workers::new(vec![worker.clone()]));
        tokio::spawn(serve(
            listener,
            server,
            names[i].to_string(),
            calls,
            workers,
        ));
        nodes.push(directory);
    }
    let agreed = |nodes: &[DirectoryNode]| {
        let leaders: Vec<_> = nodes.iter().map(DirectoryNode::leader).collect();
        leaders[0].filter(|_| leaders.iter().all(|l| *l == leaders[0]))
    };
    until("a leader every member agrees on", || {
        agreed(&nodes).is_some()
    })
    .await;
    let leader = agreed(&nodes).expect("leader");
    let at = voters
        .keys()
        .position(|id| *id == leader)
        .expect("a voter leads");
    let ann = account("ann@example.com");
    let added = nodes[at]
        .write(DirectoryChange::AddAccount(ann.clone()))
        .await
        .expect("add");
    assert_eq!(added.outcome, ChangeOutcome::Applied);
    until("ann on every replica", || {
        nodes
            .iter()
            .all(|n| n.replica().account("ann@example.com").unwrap() == Some(ann.clone()))
    })
    .await;

    // A follower's change forwarded to the leader over the link.
    let follower = voters
        .values()
        .find(|p| node_id(&p.name) != leader)
        .expect("follower");
    let from = &names[names.len() - 1];
    let dialer = TlsDialer::new(
        crate::pki::internode_client_config(&identity(pki.path(), from)).expect("config"),
        "127.0.0.63".parse().expect("ip"),
    );
    let leader_peer = &voters[&leader];
    let forwarded = LinkTransport::new(from, dialer)
        .call_peer(
            leader_peer,
            Call::DirectoryWrite(DirectoryChange::AddAccount(account("bob@example.com"))),
        )
        .await
        .expect("forwarded");
    assert!(
        matches!(
            forwarded,
            Answer::DirectoryWrite(Ok(Committed {
                outcome: ChangeOutcome::Applied,
                ..
            }))
        ),
        "{forwarded:?} (asked through {})",
        follower.name
    );
    for node in nodes {
        tokio::task::spawn_blocking(move || node.stop())
            .await
            .expect("stop");
    }
}

/// Dials `to` with `identity`, claiming to be `claimed`, and returns why the accepting
/// side refused (or `None` if it took the connection).
async fn refusal(to: NodeIdentity, identity: NodeIdentity, claimed: &str) -> Option<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = crate::pki::internode_server_config(&to).expect("server config");
    let accepting = tokio::spawn(async move {
        let tls = TlsAcceptor::from(Arc::new(server));
        let (tcp, _) = listener.accept().await.expect("accept");
        accept(tcp, &tls, "d1").await.err().map(|e| e.to_string())
    });
    let client = crate::pki::internode_client_config(&identity).expect("client config");
    let dialer = TlsDialer::new(client, "127.0.0.1".parse().expect("ip"));
    let peer = PeerNode {
        name: "d1".into(),
        address: address.to_string(),
    };
    if let Ok(stream) = dialer.connect(&peer).await {
        let _ = Link::open(stream, claimed, "d1").await;
    }
    accepting.await.expect("join")
}

#[actix_rt::test]
async fn another_ca_or_another_nodes_name_is_refused() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    certificates(ours.path(), "test", &["d1", "d2", "s1"]);
    certificates(theirs.path(), "other", &["d1", "d2", "s1"]);

    let taken = refusal(
        identity(ours.path(), "d1"),
        identity(ours.path(), "s1"),
        "s1",
    )
    .await;
    assert_eq!(taken, None);
    let other_ca = refusal(
        identity(ours.path(), "d1"),
        identity(theirs.path(), "d2"),
        "d2",
    )
    .await;
    assert!(
        other_ca.as_deref().is_some_and(|e| e.starts_with("TLS:")),
        "{other_ca:?}"
    );
    let impostor = refusal(
        identity(ours.path(), "d1"),
        identity(ours.path(), "s1"),
        "d2",
    )
    .await;
    assert!(
        impostor.as_deref().is_some_and(
            |e| e.contains("claims to be node \"d2\" but its certificate names \"s1\"")
        ),
        "{impostor:?}"
    );
}

#[tokio::test]
async fn read_ahead_hands_on_every_byte_in_order_and_the_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let expected = sent.clone();
    let writing = tokio::spawn(async move {
        for piece in sent.chunks(7_000) {
            writer.write_all(piece).await.expect("write");
        }
    });
    let mut reader = ReadAhead::new(reader);
    let mut got = Vec::new();
    let mut small = [0u8; 4096];
    loop {
        let n = reader.read(&mut small).await.expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&small[..n]);
        // Nothing is kept once what was read ahead is handed on.
        if reader.pos == reader.buf.len() {
            assert!(reader.buf.capacity() == 0);
        }
    }
    writing.await.expect("writer");
    assert_eq!(got, expected);
}
