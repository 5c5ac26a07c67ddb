use std::collections::BTreeMap;

use portico_directory::{AccountRecord, AccountV2, DirectoryNode};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A connected pair of TCP streams on loopback.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
    (client.expect("connect"), server.expect("accept").0)
}

struct Echo;

impl CallHandler for Echo {
    fn handle(&self, from: &str, call: Call) -> AnswerFuture {
        let answer = match call {
            Call::Health => Answer::Health(Health {
                node: format!("asked by {from}"),
                leader: None,
                applied: Some(7),
                role: portico_directory::RaftRole::Learner,
                quorum_ack_ms: None,
            }),
            other => Answer::Failed(format!("{other:?} not served here")),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_handshake_names_both_ends_and_calls_are_answered() {
    let (client, server) = tcp_pair().await;
    let serving = tokio::spawn(async move {
        let link = Link::accept(server, "d1", "s1").await.expect("accept");
        assert_eq!(link.peer(), "s1");
        link.serve(&Echo).await
    });
    let mut link = Link::open(client, "s1", "d1").await.expect("open");
    assert_eq!(link.peer(), "d1");
    for _ in 0..3 {
        match link.call(Call::Health).await.expect("health") {
            Answer::Health(health) => {
                assert_eq!(health.node, "asked by s1");
                assert_eq!(health.applied, Some(7));
            }
            other => panic!("{other:?}"),
        }
    }
    drop(link);
    serving.await.expect("join").expect("served until closed");
}

#[tokio::test]
async fn another_version_or_a_name_the_certificate_does_not_prove_is_refused() {
    // Another protocol version.
    let (client, server) = tcp_pair().await;
    let accepting = tokio::spawn(async move { Link::accept(server, "d1", "s1").await.err() });
    let mut frames = Framed::new(client, codec());
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION + 1,
        node: "s1".into(),
    };
    let bytes = bincode::serde::encode_to_vec(&hello, bincode::config::standard()).unwrap();
    frames.send(Bytes::from(bytes)).await.unwrap();
    let reply = frames.next().await.expect("a reply").expect("read");
    let (reply, _): (Frame, _) =
        bincode::serde::decode_from_slice(&reply, bincode::config::standard()).unwrap();
    match reply {
        Frame::Refused { reason } => assert!(
            reason.contains(&format!(
                "version {}, this node {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            )),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        accepting.await.unwrap(),
        Some(LinkError::Version { .. })
    ));

    // A caller claiming d2 while its certificate proved s1.
    let (client, server) = tcp_pair().await;
    let accepting = tokio::spawn(async move { Link::accept(server, "d1", "s1").await.err() });
    let refused = Link::open(client, "d2", "d1").await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("claims to be node \"d2\" but its certificate names \"s1\""),
        "{refused}"
    );
    assert!(matches!(
        accepting.await.unwrap(),
        Some(LinkError::NameMismatch { .. })
    ));

    // Reaching a node other than the one meant.
    let (client, server) = tcp_pair().await;
    tokio::spawn(async move { Link::accept(server, "d9", "s1").await.err() });
    let wrong = Link::open(client, "s1", "d1")
        .await
        .err()
        .expect("wrong peer");
    assert!(matches!(wrong, LinkError::WrongPeer { .. }), "{wrong}");
}

/// Plain TCP to the address in the peer's [`PeerNode`].
struct Tcp;

impl Connector for Tcp {
    type Stream = TcpStream;

    fn connect(
        &self,
        peer: &PeerNode,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> {
        let address = peer.address.clone();
        Box::pin(async move { TcpStream::connect(address).await })
    }
}

/// Serves Raft's calls to a directory member.
struct Member(DirectoryNode);

impl CallHandler for Member {
    fn handle(&self, _from: &str, call: Call) -> AnswerFuture {
        let node = self.0.clone();
        Box::pin(async move {
            match call {
                Call::Raft(call) => Answer::Raft(node.answer(call).await),
                other => Answer::Failed(format!("{other:?} not served in this test")),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_directory_members_replicate_over_the_link() {
    let names = ["a", "b", "c"];
    let mut listeners = Vec::new();
    let mut voters = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        voters.insert(
            i as u64 + 1,
            PeerNode {
                name: name.to_string(),
                address,
            },
        );
        listeners.push(listener);
    }
    let dirs: Vec<_> = names
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let name = names[i];
        let transport = Arc::new(LinkTransport::new(name, Tcp));
        let node = DirectoryNode::start(
            dirs[i].path(),
            "test",
            i as u64 + 1,
            voters.clone(),
            transport,
        )
        .expect("start");
        let handler = Arc::new(Member(node.clone()));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    // In the node the certificate proves the name; here every caller is
                    // taken at its word.
                    let mut frames = Framed::new(stream, codec());
                    let Some(Ok(first)) = frames.next().await else {
                        return;
                    };
                    let Ok((Frame::Hello { node: caller, .. }, _)) =
                        bincode::serde::decode_from_slice::<Frame, _>(
                            &first,
                            bincode::config::standard(),
                        )
                    else {
                        return;
                    };
                    let welcome = Frame::Welcome {
                        node: name.to_string(),
                    };
                    let bytes =
                        bincode::serde::encode_to_vec(&welcome, bincode::config::standard())
                            .unwrap();
                    if frames.send(Bytes::from(bytes)).await.is_err() {
                        return;
                    }
                    let link = Link {
                        frames,
                        peer: caller,
                    };
                    let _ = link.serve(handler.as_ref()).await;
                });
            }
        });
        nodes.push(node);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let leaders: Vec<_> = nodes.iter().map(DirectoryNode::leader).collect();
        if let Some(leader) = leaders[0].filter(|_| leaders.iter().all(|l| *l == leaders[0])) {
            break leader;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ann = AccountRecord::new(AccountV2::new(
        "ann@example.com",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "a",
        0,
    ));
    let outcome = nodes[leader as usize - 1]
        .write(DirectoryChange::AddAccount(ann.clone()))
        .await
        .expect("write");
    assert_eq!(outcome.outcome, portico_directory::ChangeOutcome::Applied);
    loop {
        if nodes
            .iter()
            .all(|n| n.replica().account("ann@example.com").unwrap() == Some(ann.clone()))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never replicated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes {
        tokio::task::spawn_blocking(move || node.stop())
            .await
            .expect("stop");
    }
}

/// A peer whose connection attempts never complete.
struct Silent;

impl Connector for Silent {
    type Stream = TcpStream;

    fn connect(
        &self,
        _peer: &PeerNode,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_peer_that_never_takes_the_connection_is_given_up_on() {
    let transport = LinkTransport::new("a", Silent);
    let peer = PeerNode {
        name: "b".into(),
        address: String::new(),
    };
    let call = transport.call_peer(&peer, Call::Health);
    let failed = tokio::time::timeout(CALL_DEADLINE * 2, call)
        .await
        .expect("the call gives up by itself")
        .err();
    let Some(LinkError::NotConnected(why)) = &failed else {
        panic!("{failed:?}");
    };
    assert!(matches!(**why, LinkError::Timeout), "{failed:?}");
    assert!(failed.is_some_and(|e| e.not_sent()));
}

/// Answers each call only after `delay`.
struct Slow {
    delay: Duration,
}

impl CallHandler for Slow {
    fn handle(&self, from: &str, call: Call) -> AnswerFuture {
        let delay = self.delay;
        let answer = Echo.handle(from, call);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer.await
        })
    }
}

/// Connects to a listener that serves its links with [`Slow`].
struct ToSlow {
    address: std::net::SocketAddr,
}

impl Connector for ToSlow {
    type Stream = TcpStream;

    fn connect(
        &self,
        _peer: &PeerNode,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> {
        Box::pin(TcpStream::connect(self.address))
    }
}

#[tokio::test]
async fn a_caller_that_stops_waiting_does_not_leave_its_answer_to_the_next_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let link = Link::accept(stream, "b", "a").await.expect("accept");
                let _ = link
                    .serve(&Slow {
                        delay: Duration::from_millis(300),
                    })
                    .await;
            });
        }
    });
    let transport = LinkTransport::new("a", ToSlow { address });
    let peer = PeerNode {
        name: "b".into(),
        address: address.to_string(),
    };
    // The first caller gives up before its answer comes (as Raft does with heartbeats).
    let first = transport.call_peer(&peer, Call::Health);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), first)
            .await
            .is_err()
    );
    // The next call gets its own answer, not the first one's.
    let second = transport
        .call_peer(
            &peer,
            Call::DirectoryWrite(DirectoryChange::DeleteAccount {
                address: "x@example.com".into(),
            }),
        )
        .await
        .expect("second call");
    assert!(
        matches!(&second, Answer::Failed(reason) if reason.contains("DirectoryWrite")),
        "{second:?}"
    );
}
