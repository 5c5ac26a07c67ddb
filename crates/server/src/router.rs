//! The site router: one actor per node that knows the cluster map, how each other node
//! is doing, and where each account lives. It checks every peer's health over the
//! internode link (a Health call each second while the peer answers, backing off to
//! [`MAX_BACKOFF`] while it does not) and keeps a circuit breaker per peer: after
//! [`OPEN_AFTER`] failed checks in a row the peer counts as down, and callers that ask
//! first ([`Reachable`]) fail fast instead of waiting for a timeout, until a check
//! succeeds again. `cluster status` shows what it sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use portico_directory::PeerNode;
use portico_internode::{Answer, Call, Health};

use crate::cluster::{ClusterNode, Links, members};

/// How often the actor looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);
/// Between two checks of a peer that answers.
const HEALTHY_EVERY: Duration = Duration::from_secs(1);
/// How long a health check may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);
/// Failed checks in a row after which the peer counts as down.
const OPEN_AFTER: u32 = 3;
/// The longest pause between checks of a peer that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// How a peer looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Not checked yet.
    Unknown,
    /// Its last check succeeded.
    Up,
    /// Its last checks failed, fewer than [`OPEN_AFTER`] in a row.
    Suspect,
    /// The circuit is open: calls to it fail at once.
    Down,
}

impl PeerState {
    /// Whether calls to the peer go ahead (its circuit is closed).
    pub fn reachable(self) -> bool {
        matches!(self, PeerState::Up | PeerState::Suspect)
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Up => "ok",
            PeerState::Suspect => "suspect",
            PeerState::Down => "down",
        }
    }
}

/// One peer as [`PeerReport`] gives it.
#[derive(Clone, Debug)]
pub struct PeerView {
    pub name: String,
    pub state: PeerState,
    /// What it said in its last successful check.
    pub health: Option<Health>,
    /// How long that check took.
    pub round_trip: Option<Duration>,
    pub last_error: Option<String>,
}

struct PeerHealth {
    node: PeerNode,
    health: Option<Health>,
    round_trip: Option<Duration>,
    failures: u32,
    next_check: Instant,
    checking: bool,
    last_error: Option<String>,
    ever_checked: bool,
}

impl PeerHealth {
    fn state(&self) -> PeerState {
        match (self.ever_checked, self.failures) {
            (false, _) => PeerState::Unknown,
            (true, 0) => PeerState::Up,
            (true, n) if n < OPEN_AFTER => PeerState::Suspect,
            _ => PeerState::Down,
        }
    }
}

pub struct SiteRouter {
    cluster: Arc<ClusterNode>,
    /// The router's own connections to the other nodes: a health check never waits
    /// behind a change forwarded to the leader.
    links: Option<Arc<Links>>,
    peers: HashMap<String, PeerHealth>,
    /// Told when a peer that was down answers again (mail waiting for it goes at once).
    on_return: Option<Arc<tokio::sync::Notify>>,
}

impl SiteRouter {
    /// Wakes `notify` whenever a peer that was down answers again.
    pub fn waking_on_return(mut self, notify: Arc<tokio::sync::Notify>) -> SiteRouter {
        self.on_return = Some(notify);
        self
    }

    pub fn new(cluster: Arc<ClusterNode>) -> SiteRouter {
        let me = cluster.me().to_string();
        let now = Instant::now();
        let peers = members(cluster.config())
            .into_values()
            .filter(|node| node.name != me)
            .map(|node| {
                (
                    node.name.clone(),
                    PeerHealth {
                        node,
                        health: None,
                        round_trip: None,
                        failures: 0,
                        next_check: now,
                        checking: false,
                        last_error: None,
                        ever_checked: false,
                    },
                )
            })
            .collect();
        SiteRouter {
            links: cluster.new_links().map(Arc::new),
            cluster,
            peers,
            on_return: None,
        }
    }

    fn check_due(&mut self, ctx: &mut Context<Self>) {
        let Some(links) = self.links.clone() else {
            return;
        };
        let now = Instant::now();
        let mut due = Vec::new();
        for (name, peer) in &mut self.peers {
            if peer.checking || now < peer.next_check {
                continue;
            }
            peer.checking = true;
            due.push((name.clone(), links.call_peer(&peer.node, Call::Health)));
        }
        for (name, call) in due {
            let started = Instant::now();
            let check = async move {
                match tokio::time::timeout(CHECK_DEADLINE, call).await {
                    Ok(Ok(Answer::Health(health))) => Ok(health),
                    Ok(Ok(other)) => Err(format!("answered {other:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in time".to_string()),
                }
            };
            ctx.spawn(check.into_actor(self).map(move |result, router, _| {
                router.record(&name, result, started.elapsed());
            }));
        }
    }

    fn record(&mut self, name: &str, result: Result<Health, String>, took: Duration) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        peer.checking = false;
        peer.ever_checked = true;
        match result {
            Ok(health) => {
                if peer.failures >= OPEN_AFTER {
                    tracing::info!(peer = %name, "peer answers again");
                    if let Some(notify) = &self.on_return {
                        notify.notify_one();
                    }
                }
                peer.failures = 0;
                peer.health = Some(health);
                peer.round_trip = Some(took);
                peer.last_error = None;
                peer.next_check = Instant::now() + HEALTHY_EVERY;
            }
            Err(e) => {
                peer.failures = peer.failures.saturating_add(1);
                if peer.failures == OPEN_AFTER {
                    tracing::warn!(peer = %name, error = %e, "peer down: its circuit is open");
                }
                let backoff = HEALTHY_EVERY
                    .saturating_mul(1 << peer.failures.min(5))
                    .min(MAX_BACKOFF);
                peer.next_check = Instant::now() + backoff;
                peer.last_error = Some(e);
            }
        }
    }
}

impl Actor for SiteRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check_due(ctx);
        ctx.run_interval(TICK, |router, ctx| router.check_due(ctx));
    }
}

/// Every peer as this node sees it.
#[derive(Message)]
#[rtype(result = "Vec<PeerView>")]
pub struct PeerReport;

impl Handler<PeerReport> for SiteRouter {
    type Result = MessageResult<PeerReport>;

    fn handle(&mut self, _: PeerReport, _: &mut Self::Context) -> Self::Result {
        let mut views: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(name, peer)| PeerView {
                name: name.clone(),
                state: peer.state(),
                health: peer.health.clone(),
                round_trip: peer.round_trip,
                last_error: peer.last_error.clone(),
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        MessageResult(views)
    }
}

/// The node that holds `address`'s mailbox, from this node's replica (`None`: no such
/// account).
#[derive(Message)]
#[rtype(result = "Result<Option<String>, String>")]
pub struct HomeOf(pub String);

impl Handler<HomeOf> for SiteRouter {
    type Result = Result<Option<String>, String>;

    fn handle(&mut self, HomeOf(address): HomeOf, _: &mut Self::Context) -> Self::Result {
        let address = crate::auth::normalize_address(&address);
        self.cluster
            .directory()
            .account(&address)
            .map(|record| record.map(|r| r.home().to_string()))
            .map_err(|e| e.to_string())
    }
}

/// Whether calls to a node may go ahead: it is this node, or its circuit is closed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Reachable(pub String);

impl Handler<Reachable> for SiteRouter {
    type Result = bool;

    fn handle(&mut self, Reachable(name): Reachable, _: &mut Self::Context) -> bool {
        name == self.cluster.me()
            || self.peers.get(&name).is_some_and(|peer| {
                peer.state() == PeerState::Up || peer.state() == PeerState::Suspect
            })
    }
}

/// Whether sessions and mail may be sent to a node now: anything but a node whose
/// circuit is open (one not checked yet is tried).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct PeerUsable(pub String);

impl Handler<PeerUsable> for SiteRouter {
    type Result = bool;

    fn handle(&mut self, PeerUsable(name): PeerUsable, _: &mut Self::Context) -> bool {
        self.peers
            .get(&name)
            .is_none_or(|peer| peer.state() != PeerState::Down)
    }
}

/// A call to a node failed outside the health checks (a proxied session lost, a
/// delivery that could not connect): the node counts as down at once, so the sessions
/// and mail for it fail fast, until a health check reaches it again (checked soon).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerFailed(pub String);

impl Handler<PeerFailed> for SiteRouter {
    type Result = ();

    fn handle(&mut self, PeerFailed(name): PeerFailed, _: &mut Self::Context) {
        let Some(peer) = self.peers.get_mut(&name) else {
            return;
        };
        if peer.state() != PeerState::Down {
            tracing::warn!(peer = %name, "peer down: a call to it failed");
        }
        peer.ever_checked = true;
        peer.failures = peer.failures.max(OPEN_AFTER);
        if !peer.checking {
            peer.next_check = peer.next_check.min(Instant::now() + HEALTHY_EVERY);
        }
    }
}
