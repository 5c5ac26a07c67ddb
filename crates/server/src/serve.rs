//! `portico serve`: start a node, run it until SIGTERM/SIGINT, stop it cleanly.
//!
//! Shutdown order: stop accepting, tell every open session goodbye (each protocol says
//! it its own way), wait for them to close (a few seconds at most), make the store
//! durable, remove the admin socket, exit 0.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context;
use portico_cluster::{ClusterConfig, Role};
use portico_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::accounts::Accounts;
use crate::admin::{AdminContext, RunningNode};
use crate::auth::Authenticator;
use crate::cluster::{ClusterNode, InternodeListener, members};
use crate::fulltext::{self, FullText};
use crate::http;
use crate::internode::{self, DirectoryCalls, NodeCalls};
use crate::listener::{self, Service, Workers};
use crate::live_config::LiveConfig;
use crate::mailbox::MailboxRegistry;
use crate::node::{NodeContext, NodeParts, store_dir, store_options};
use crate::proxy::Proxy;
use crate::router::SiteRouter;
use crate::spool::SpoolArea;
use crate::tls;
use crate::{admin, relay};

/// How long shutdown waits for the final store flush.
const STORE_FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// How long a node of a group of one waits to lead its directory at start.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// How long shutdown waits for the directory member to stop.
const DIRECTORY_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// How long shutdown waits for the full-text indexer to commit and stop.
const INDEXER_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Buffers at least this big (message bodies, rendered FETCH slices, spooled content)
/// are mapped for themselves and returned to the system when freed: the node's
/// allocator hands them to glibc ([`crate::allocator`]). glibc starts at this
/// threshold too but raises it (up to 32 MiB) as big buffers come and go, after which
/// each thread's arena keeps tens of MiB of them for good (64 MiB seen after a 100 MB
/// FETCH; 20 MiB with the threshold fixed).
const LARGE_ALLOCATION: usize = crate::allocator::LARGE_ALLOCATION;

/// Allocator arenas per core. glibc gives each thread that meets contention an arena
/// of its own, up to 8 per core; the blocking pool's dozens of threads then each keep
/// what they freed (a 100,000-message folder's SELECT, SEARCH and STORE left the node at
/// 287 MiB with the default, 148 MiB with two arenas in all).
const ARENAS_PER_CORE: usize = 1;

/// How often freed memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);

fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = (cores * ARENAS_PER_CORE).max(2);
        // SAFETY: mallopt only sets allocator parameters; called before other threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION as libc::c_int);
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

/// `config_path`: the file `config` was read from, which `portico reload` and SIGHUP
/// read again; `None` for the embedded default.
pub fn serve(
    config: Arc<ClusterConfig>,
    node_name: String,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    return_large_buffers_to_the_system();
    let system = actix_rt::System::new();
    let result = system.block_on(run(config, node_name, config_path));
    System::current().stop();
    result
}

async fn run(
    config: Arc<ClusterConfig>,
    node_name: String,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Before anything is counted; the HTTP side gets the same handle from `install`.
    let metrics = crate::metrics::install().context("installing the metrics recorder")?;
    let node_config = config.node(Some(&node_name))?.clone();
    let data_dir = config.data_dir(&node_config);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    for path in crate::private::tighten(&data_dir)
        .with_context(|| format!("checking the permissions under {}", data_dir.display()))?
    {
        tracing::warn!(%path, "was open to other users: made private to this one");
    }
    let store = match Store::open(&store_dir(&data_dir), &store_options(&config)) {
        Ok(store) => Arc::new(store),
        Err(StoreError::Locked) => anyhow::bail!(
            "the data directory {} is in use by another portico process",
            data_dir.display()
        ),
        Err(e) => return Err(e).context("opening the store"),
    };
    let starting = (config.clone(), node_name.clone(), data_dir.clone());
    let (cluster, internode_listener) = tokio::task::spawn_blocking(move || {
        ClusterNode::start(starting.0, &starting.1, &starting.2)
    })
    .await
    .context("starting the directory")??;
    let cluster = Arc::new(cluster);
    let accounts = Arc::new(Accounts::new(
        cluster.directory().clone(),
        store.clone(),
        &node_name,
    ));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let worker_arbiters: Vec<Arbiter> = (0..cores).map(|_| Arbiter::new()).collect();
    let workers = Arc::new(Workers::new(
        worker_arbiters.iter().map(Arbiter::handle).collect(),
    ));
    let mut node_calls = None;
    let internode_task = match (internode_listener, cluster.member()) {
        (Some(InternodeListener { address, tls }), Some(member)) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("listening for other nodes on {address}"))?;
            tracing::info!(%address, "listening for other nodes");
            let calls = Arc::new(NodeCalls {
                directory: DirectoryCalls {
                    node: node_name.clone(),
                    directory: member.clone(),
                },
                cluster: Some(cluster.clone()),
                node: OnceLock::new(),
                admin: OnceLock::new(),
            });
            node_calls = Some(calls.clone());
            Some(actix_rt::spawn(internode::serve(
                listener,
                tls,
                node_name.clone(),
                calls,
                workers.clone(),
            )))
        }
        _ => None,
    };
    if !config.is_multi_node() {
        // A group of one leads at once: accounts are in place before clients come.
        cluster.wait_for_leader(LEADER_WAIT).await;
        if let Err(e) = cluster.migrate(&accounts, &data_dir).await {
            anyhow::bail!("putting this data directory's accounts in the directory: {e}");
        }
        if let Err(e) = cluster.ensure_postmaster().await {
            anyhow::bail!("making the postmaster account: {e}");
        }
    }
    let queue_wake = Arc::new(tokio::sync::Notify::new());
    let node_returned = Arc::new(tokio::sync::Notify::new());
    let router = SiteRouter::new(cluster.clone())
        .waking_on_return(node_returned.clone())
        .start();
    let proxy = match (cluster.new_dialer(), cluster.new_links()) {
        (Some(dialer), Some(mail)) => Some(Arc::new(Proxy::new(
            &node_name,
            dialer,
            mail,
            members(&config)
                .into_values()
                .filter(|peer| peer.name != node_name),
            router.clone(),
        ))),
        _ => None,
    };
    let keeping_in_step = actix_rt::spawn(
        cluster
            .clone()
            .keep_in_step(accounts.clone(), data_dir.clone()),
    );
    let (acceptor, certificates) =
        tls::acceptor(&config.tls, &data_dir, &host_names(&config, &node_config))?;
    let renewal = actix_rt::spawn(tls::renew_periodically(certificates.clone()));
    let mailbox_arbiter = Arbiter::new();
    let mailboxes = MailboxRegistry::new(store.clone(), mailbox_arbiter.handle());
    mailboxes.start_reaper();
    let auth = Authenticator::new(accounts.clone(), config.clone())?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let spool_dir = data_dir.join("spool");
    let spool = SpoolArea::open(
        &spool_dir,
        config.smtp.spool_limit_mb.saturating_mul(1024 * 1024),
    )
    .with_context(|| format!("preparing the spool directory {}", spool_dir.display()))?;
    let full_text = open_full_text(&config, &data_dir, &mailboxes);
    let indexer = full_text.clone().map(|full_text| {
        let store = store.clone();
        std::thread::Builder::new()
            .name("fulltext".into())
            .spawn(move || full_text.run(&store))
    });
    let node = Arc::new(NodeContext::new(NodeParts {
        config: config.clone(),
        node_name: node_name.clone(),
        store: store.clone(),
        accounts: accounts.clone(),
        auth,
        mailboxes: mailboxes.clone(),
        tls: acceptor,
        shutdown: shutdown_rx,
        spool,
        full_text: full_text.clone(),
        proxy,
        queue_wake,
    }));
    if let Some(calls) = &node_calls {
        let _ = calls.node.set(node.clone());
    }

    // Bound before the client listeners, so that whoever sees a client port open (an
    // admin's script, the tests) finds the admin socket too: a `portico user add` that
    // found no socket fell back to opening the store, which the server holds locked.
    // Connections wait in its backlog until it is served below.
    let admin_listener = admin::bind(&data_dir)?;
    let mut services = Vec::new();
    if config.pop3.enabled {
        services.push((Service::Pop3, node_config.listen.pop3));
        services.push((Service::Pop3s, node_config.listen.pop3s));
    }
    if config.imap.enabled {
        services.push((Service::Imap, node_config.listen.imap));
        services.push((Service::Imaps, node_config.listen.imaps));
    }
    if config.smtp.enabled {
        services.push((Service::Smtp, node_config.listen.smtp));
        services.push((Service::Submission, node_config.listen.submission));
        services.push((Service::Submissions, node_config.listen.submissions));
    }
    for (service, address) in services {
        let Some(address) = address else { continue };
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("listening for {} on {address}", service.name()))?;
        tracing::info!(service = service.name(), %address, "listening");
        actix_rt::spawn(listener::run(
            node.clone(),
            listener,
            service,
            workers.clone(),
        ));
    }
    let live = Arc::new(LiveConfig::new(
        config_path,
        node_name.clone(),
        config.clone(),
    ));
    let admin_context = Arc::new(AdminContext {
        store: store.clone(),
        cluster: cluster.clone(),
        accounts: accounts.clone(),
        running: Some(RunningNode {
            mailboxes: mailboxes.clone(),
            queue_wake: node.queue_wake.clone(),
            router,
            proxy: node.proxy.clone(),
            node: node.clone(),
            live: live.clone(),
            certificates: certificates.clone(),
        }),
    });
    if let Some(calls) = &node_calls {
        let _ = calls.admin.set(admin_context.clone());
    }
    let admin_task = actix_rt::spawn(admin::serve(admin_listener, admin_context.clone()));
    let https = match node_config.listen.https {
        Some(address) if node_config.has_role(Role::Frontend) => {
            let listener = std::net::TcpListener::bind(address)
                .with_context(|| format!("listening for https on {address}"))?;
            tracing::info!(service = "https", %address, "listening");
            let state = http::HttpState {
                live: live.clone(),
                node: node.clone(),
                admin: admin_context.clone(),
                tokens: http::settings_page::load_or_make_key(&data_dir)?,
                revoked: Default::default(),
                metrics: metrics.clone(),
            };
            Some(http::start(listener, certificates.clone(), state)?)
        }
        _ => None,
    };
    if config.smtp.enabled {
        actix_rt::spawn(relay::run_queue(
            node.clone(),
            node.queue_wake.clone(),
            node_returned,
        ));
    }
    let compaction = actix_rt::spawn(compact_periodically(
        store.clone(),
        Duration::from_secs(config.store.compact_interval_secs),
    ));
    let trimming = actix_rt::spawn(return_freed_memory_periodically());
    tracing::info!(node = %node_name, data_dir = %data_dir.display(), "node ready");

    wait_for_signal(&admin_context).await?;
    tracing::info!("shutting down");
    if let Some(https) = https {
        https.stop(true).await;
    }
    let _ = shutdown_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while node.limits.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin_task.abort();
    keeping_in_step.abort();
    if let Some(task) = internode_task {
        task.abort();
    }
    // A thread of its own, polled: a member that never stops must not keep the
    // process (the runtime waits for its blocking tasks when dropped).
    let stopping = cluster.clone();
    let directory_stop = std::thread::Builder::new()
        .name("directory-stop".into())
        .spawn(move || stopping.stop());
    if let Ok(directory_stop) = directory_stop {
        let deadline = tokio::time::Instant::now() + DIRECTORY_STOP_DEADLINE;
        while !directory_stop.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !directory_stop.is_finished() {
            tracing::warn!("the directory member did not stop in time");
        }
    }
    compaction.abort();
    trimming.abort();
    renewal.abort();
    let _ = std::fs::remove_file(admin::socket_path(&data_dir));
    if let Some(full_text) = &full_text {
        full_text.stop();
    }
    if let Some(Ok(indexer)) = indexer {
        // Polled, not joined on a blocking task: the runtime waits for its blocking tasks
        // when it is dropped, so an indexer that never stopped would keep the process.
        let deadline = tokio::time::Instant::now() + INDEXER_STOP_DEADLINE;
        while !indexer.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if indexer.is_finished() {
            let _ = indexer.join();
        } else {
            tracing::warn!(
                "the full-text indexer did not stop in time; its last batch is redone at start"
            );
        }
    }
    let sync_store = store.clone();
    // A disk that stopped answering must not keep the process from exiting.
    tokio::time::timeout(
        STORE_FLUSH_DEADLINE,
        tokio::task::spawn_blocking(move || sync_store.sync()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the store did not flush within {STORE_FLUSH_DEADLINE:?}"))?
    .context("flushing the store")?
    .context("flushing the store")?;
    for arbiter in worker_arbiters {
        arbiter.stop();
    }
    mailbox_arbiter.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Opens the full-text index when configured and has it told of changing folders. An
/// index that cannot be opened is reported and done without: SEARCH reads every message.
fn open_full_text(
    config: &ClusterConfig,
    data_dir: &Path,
    mailboxes: &Arc<MailboxRegistry>,
) -> Option<Arc<FullText>> {
    if !config.search.full_text_index {
        return None;
    }
    let dir = fulltext::index_dir(data_dir);
    let memory = config.search.index_memory_mb.saturating_mul(1024 * 1024);
    match FullText::open_in_background(
        &dir,
        usize::try_from(memory).unwrap_or(usize::MAX),
        config.search.index_max_message_kb.saturating_mul(1024),
    ) {
        Ok(full_text) => {
            let watcher = full_text.clone();
            mailboxes.watch_folders(Arc::new(move |folder| watcher.touched(folder)));
            Some(full_text)
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "full-text index unavailable; SEARCH reads every message");
            None
        }
    }
}

/// Hands the pages of freed memory back to the system now and then. After a burst (a
/// SELECT and SEARCH over 100,000 messages, fifty sessions) the allocator's arenas hold
/// freed memory between live allocations, which it only returns when asked.
async fn return_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
            let trim = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) });
            if let Ok(released) = trim.await {
                let ms = started.elapsed().as_millis() as u64;
                tracing::debug!(released = released != 0, ms, "freed memory returned");
            }
        }
    }
}

/// Reclaims the space of expunged bodies now and then (crash-safe at every step).
/// How long the ids of copies other nodes delivered are kept: far longer than any
/// sender retries a copy ([`crate::delivery`]).
const DELIVERY_IDS_KEPT_SECS: i64 = 7 * 24 * 3600;

async fn compact_periodically(store: Arc<Store>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = store.clone();
        let compacted = tokio::task::spawn_blocking(move || {
            let forgotten = store
                .forget_deliveries_before(crate::smtp_time::unix_now() - DELIVERY_IDS_KEPT_SECS);
            (store.compact(), forgotten)
        })
        .await;
        if let Ok((compacted, forgotten)) = compacted {
            if let Err(e) = compacted {
                tracing::warn!(error = %e, "body log compaction failed");
            }
            if let Err(e) = forgotten {
                tracing::warn!(error = %e, "forgetting old delivery ids failed");
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT; on SIGHUP reads the client settings and the TLS
/// certificate again, as `portico reload` does (new connections get the new
/// certificate, open sessions keep theirs).
async fn wait_for_signal(admin: &AdminContext) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => {
                if let Some(running) = &admin.running {
                    // A failure is logged by the reload itself.
                    if let admin::AdminResponse::Done(_) = admin::reload(running).await {
                        tracing::info!("SIGHUP: client settings and TLS certificate reloaded");
                    }
                }
            }
        }
    }
}

/// The names a self-made certificate is for: the SMTP host name and every listener's
/// specific address.
fn host_names(config: &ClusterConfig, node: &portico_cluster::NodeConfig) -> Vec<String> {
    let listen = &node.listen;
    let mut names = vec![config.smtp.hostname.clone()];
    for address in [
        listen.pop3,
        listen.pop3s,
        listen.imap,
        listen.imaps,
        listen.smtp,
        listen.submission,
        listen.submissions,
    ]
    .into_iter()
    .flatten()
    {
        if !address.ip().is_unspecified() {
            names.push(address.ip().to_string());
        }
    }
    names
}
