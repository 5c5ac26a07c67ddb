//! The `portico` command line: serve, manage users, deliver.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use portico_cluster::{ClusterConfig, Role};
use portico_store::{Pop3DeleteMode, Store, StoreError};

use crate::accounts::Accounts;
use crate::admin::{self, AdminRequest, AdminResponse};
use crate::auth::hash_password;
use crate::cluster::ClusterNode;
use crate::node::{store_dir, store_options};
use crate::quota::{QuotaArg, ShowLimit};

#[derive(Parser, Debug)]
#[command(
    name = "portico",
    version,
    about = "Clustered mail-access server: POP3, IMAP4, SMTP"
)]
pub struct Cli {
    /// Cluster configuration; without it, the embedded single-node default.
    #[arg(long, global = true, env = "PORTICO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Which node of the cluster this process is (needed when there are several).
    #[arg(long, global = true, env = "PORTICO_NODE")]
    pub node: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node's services until SIGTERM or Ctrl-C.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Append the message on standard input to a user's INBOX.
    Deliver { address: String },
    /// Inspect and manage the outgoing mail queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Print the node's counters (sync calls and rounds since it started).
    Stats,
    /// Print what mail clients are told to connect to (for inside and outside the
    /// network), the DNS records that let clients find it (RFC 6186 SRV, autoconfig and
    /// autodiscover names), for an administrator to publish or mail out.
    Settings {
        /// The settings of this account (its domain's records).
        #[arg(long)]
        user: Option<String>,
        /// The records of this domain (default: every local domain).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Make every node re-read its client connection settings and its TLS certificate
    /// (SIGHUP does it for one node); open sessions stay. Each node reads its own copy
    /// of the configuration file: put the new one on every node first.
    Reload,
    /// Check every stored message, index entry and body record (the server must be
    /// stopped). Exit status 0: clean; 1: problems found (and, with --repair, damaged
    /// messages set aside and counters corrected).
    Fsck {
        /// Set damaged messages aside (clients see them expunged) and fix counters.
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild the full-text index from the store (the server must be stopped; a running
    /// server keeps its index up to date by itself).
    Reindex,
    /// The cluster's certificates for internode TLS.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every node with its site, roles, Raft role, applied index and lag, and health as
    /// this node sees it; and whether this node can take account changes now.
    Status,
    /// Make the cluster CA and a certificate and key for every node (whatever is
    /// missing: existing files are kept). Keys are written with mode 0600.
    Init {
        /// Where to write them (default: the configuration's `pki` directory, `pki`
        /// beside the --config file unless it says otherwise).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List queued messages with their recipients, attempts and last errors.
    List,
    /// Retry every queued message now.
    Flush,
    /// Remove a queued message without delivering it.
    Delete { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add an account (with INBOX, Sent, Drafts, Deleted Items, Junk Email, Archive).
    /// Its mailbox goes on a backend of this node's site, the one with the fewest
    /// accounts, unless --site or --node says otherwise.
    Add {
        address: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Place the mailbox on the backend of this site with the fewest accounts.
        #[arg(long, conflicts_with = "home")]
        site: Option<String>,
        /// Place the mailbox on this backend node.
        #[arg(long = "home", value_name = "NODE")]
        home: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and all its mail.
    Del { address: String },
    /// List accounts.
    List,
    /// Change an account's settings.
    Set {
        address: String,
        /// Allow POP3 sign-in.
        #[arg(long)]
        pop3: Option<Switch>,
        /// Allow IMAP sign-in.
        #[arg(long)]
        imap: Option<Switch>,
        /// What POP3 DELE + QUIT does: remove the message, or hide it from POP3 only.
        #[arg(long)]
        pop3_delete_mode: Option<DeleteMode>,
        /// The most its mail may take, all folders together: bytes, or with K, M, G or T
        /// (powers of 1024: `500M`, `2G`); `none` removes the limit. Mail that would pass
        /// it is refused (IMAP `NO [OVERQUOTA]`, SMTP `452 4.2.2`).
        #[arg(long, value_name = "SIZE", value_parser = crate::quota::parse_quota)]
        quota: Option<QuotaArg>,
    },
    /// Move an account's mailbox, with every folder and message, to another backend.
    /// Its sessions are ended and mail arriving meanwhile waits in the queue for the
    /// moment the copy takes; clients keep their UIDs and flags, nothing is downloaded
    /// again.
    Move {
        address: String,
        /// Move it to the backend of this site with the fewest accounts.
        #[arg(long, conflicts_with = "home", required_unless_present = "home")]
        site: Option<String>,
        /// Move it to this backend node.
        #[arg(long = "home", value_name = "NODE")]
        home: Option<String>,
    },
    /// Point an account at another backend WITHOUT copying its mail (for a backend lost
    /// for good): sessions and new mail go to the new node at once, where the mailbox
    /// starts empty; the old node's copy is left where it is.
    Rehome {
        address: String,
        /// The backend node that holds the mailbox from now on.
        #[arg(long = "home", value_name = "NODE")]
        home: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeleteMode {
    Expunge,
    Hide,
}

/// Runs the command line; the binary's `main` calls this.
pub fn run() -> anyhow::Result<()> {
    crate::private::restrict_new_files();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => ClusterConfig::load(path)?,
        None => ClusterConfig::embedded()?,
    };
    // Before the node is chosen: it is about every node, and needs no --node.
    if let Command::Cluster(ClusterCommand::Init { out }) = &cli.command {
        return cluster_init(&config, out.as_deref());
    }
    if let Command::Settings { user, domain } = &cli.command {
        print!(
            "{}",
            client_settings(&config, user.as_deref(), domain.as_deref())?
        );
        return Ok(());
    }
    let config = Arc::new(config);
    let node = config.node(cli.node.as_deref())?.clone();
    let data_dir = config.data_dir(&node);
    crate::logging::init(matches!(cli.command, Command::Serve));
    let request = match cli.command {
        Command::Serve => {
            return crate::serve::serve(config, node.name.clone(), cli.config.clone());
        }
        Command::Reload => return reload(&data_dir),
        // Run above, before --node is needed.
        Command::Settings { user, domain } => {
            print!(
                "{}",
                client_settings(&config, user.as_deref(), domain.as_deref())?
            );
            return Ok(());
        }
        Command::Fsck { repair } => return fsck(&config, &data_dir, repair),
        Command::Reindex => return reindex(&config, &data_dir),
        // Run above, before --node is needed; here only so the match stays exhaustive.
        Command::Cluster(ClusterCommand::Init { out }) => {
            return cluster_init(&config, out.as_deref());
        }
        Command::Cluster(ClusterCommand::Status) => AdminRequest::ClusterStatus,
        Command::Deliver { address } => {
            let mut message = Vec::new();
            std::io::stdin()
                .read_to_end(&mut message)
                .context("reading the message from standard input")?;
            if message.is_empty() {
                bail!("no message on standard input");
            }
            AdminRequest::Deliver { address, message }
        }
        Command::User(UserCommand::Add {
            address,
            password_stdin,
            site,
            home,
        }) => AdminRequest::AddUser {
            password_hash: hash_password(&read_password(password_stdin)?)?,
            address,
            site,
            node: home,
        },
        Command::User(UserCommand::Passwd {
            address,
            password_stdin,
        }) => AdminRequest::SetPassword {
            password_hash: hash_password(&read_password(password_stdin)?)?,
            address,
        },
        Command::User(UserCommand::Del { address }) => AdminRequest::DeleteUser { address },
        Command::Queue(QueueCommand::List) => AdminRequest::QueueList,
        Command::Stats => AdminRequest::Stats,
        Command::Queue(QueueCommand::Flush) => AdminRequest::QueueFlush,
        Command::Queue(QueueCommand::Delete { id }) => AdminRequest::QueueDelete { id },
        Command::User(UserCommand::List) => AdminRequest::ListUsers,
        Command::User(UserCommand::Move {
            address,
            site,
            home,
        }) => AdminRequest::MoveUser {
            address,
            site,
            node: home,
        },
        Command::User(UserCommand::Rehome { address, home }) => {
            AdminRequest::RehomeUser { address, home }
        }
        Command::User(UserCommand::Set {
            address,
            pop3,
            imap,
            pop3_delete_mode,
            quota,
        }) => AdminRequest::SetUser {
            address,
            pop3_enabled: pop3.map(|s| matches!(s, Switch::On)),
            imap_enabled: imap.map(|s| matches!(s, Switch::On)),
            pop3_delete_mode: pop3_delete_mode.map(|mode| match mode {
                DeleteMode::Expunge => Pop3DeleteMode::Expunge,
                DeleteMode::Hide => Pop3DeleteMode::Hide,
            }),
            storage_limit: quota.map(|quota| quota.0),
        },
    };
    let response = execute(&config, &node.name, &data_dir, request)?;
    match response {
        AdminResponse::Done(text) => {
            println!("{text}");
            Ok(())
        }
        AdminResponse::Users(users) => {
            for user in users {
                println!(
                    "{}\tpop3={}\timap={}\tpop3-delete-mode={}\tinbox={}\thome={}\tquota={}\tused={}",
                    user.address,
                    if user.pop3_enabled { "on" } else { "off" },
                    if user.imap_enabled { "on" } else { "off" },
                    match user.pop3_delete_mode {
                        Pop3DeleteMode::Expunge => "expunge",
                        Pop3DeleteMode::Hide => "hide",
                    },
                    user.inbox_messages
                        .map_or_else(|| "-".to_string(), |n| n.to_string()),
                    user.home,
                    ShowLimit(user.storage_limit),
                    user.storage_used
                        .map_or_else(|| "-".to_string(), |n| n.to_string()),
                );
            }
            Ok(())
        }
        AdminResponse::Status(report) => {
            print!("{}", render_status(&report));
            Ok(())
        }
        AdminResponse::Queue(entries) => {
            for entry in entries {
                println!(
                    "{}\tfrom=<{}>\tsize={}\tqueued={}",
                    entry.id,
                    entry.mail_from,
                    entry.size,
                    crate::smtp_time::rfc5322(entry.created)
                );
                for (address, attempts, error) in entry.recipients {
                    println!(
                        "\tto=<{address}>\tattempts={attempts}\tlast_error={}",
                        error.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        AdminResponse::Failed(text) => bail!("{text}"),
    }
}

/// Sends the request to the running server, or, with none running, runs it here on
/// the node's store and directory.
/// `portico settings`: the client settings as text, then the DNS records of the
/// domain(s) concerned.
fn client_settings(
    config: &ClusterConfig,
    user: Option<&str>,
    domain: Option<&str>,
) -> anyhow::Result<String> {
    use portico_web::{ClientSettings, address, dns};
    let internal = ClientSettings::for_client(config, true);
    let external = ClientSettings::for_client(config, false);
    let mut domains: Vec<String> = Vec::new();
    if let Some(user) = user {
        let Some(of_user) = address::domain_of(user) else {
            bail!("{user:?} is not a mail address");
        };
        domains.push(of_user.to_ascii_lowercase());
    }
    domains.extend(domain.map(str::to_ascii_lowercase));
    if domains.is_empty() {
        domains = config.local_domains.clone();
    }
    let shown = user.or(domain).unwrap_or(&config.cluster);
    let mut out = dns::settings_text(shown, &internal, &external);
    if domains.is_empty() {
        out.push_str(
            "\nNo local_domains are configured: give --user or --domain for the DNS records.\n",
        );
        return Ok(out);
    }
    let https = config.nodes.iter().find_map(|node| {
        let address = node
            .listen
            .https
            .filter(|_| node.has_role(Role::Frontend))?;
        let host = match &node.client_host {
            Some(host) => host.clone(),
            None if address.ip().is_unspecified() => config.smtp.hostname.clone(),
            None => address.ip().to_string(),
        };
        Some((host, address.port()))
    });
    for domain in domains {
        out.push_str(&format!(
            "\nDNS records for {domain} (RFC 6186 / RFC 8314):\n"
        ));
        for line in dns::srv_records(&domain, &external)? {
            out.push_str(&format!("{line}\n"));
        }
        match &https {
            Some((host, port)) => {
                out.push_str(&format!(
                    "\nAutoconfig and Autodiscover for {domain} (HTTPS on {host}:{port}):\n"
                ));
                for line in dns::discovery_records(&domain, host, *port)? {
                    out.push_str(&format!("{line}\n"));
                }
            }
            None => out.push_str("\nNo frontend listens for https: no autoconfig records.\n"),
        }
    }
    Ok(out)
}

/// `portico reload`: only a running node has anything to reload.
fn reload(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match runtime.block_on(admin::send_to_server(data_dir, &AdminRequest::Reload))? {
        Some(AdminResponse::Done(said)) => {
            println!("{said}");
            Ok(())
        }
        Some(AdminResponse::Failed(why)) => bail!("{why}"),
        Some(other) => bail!("unexpected answer from the server: {other:?}"),
        None => bail!(
            "no server is running on {}: nothing to reload",
            data_dir.display()
        ),
    }
}

fn execute(
    config: &Arc<ClusterConfig>,
    node_name: &str,
    data_dir: &std::path::Path,
    request: AdminRequest,
) -> anyhow::Result<AdminResponse> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if let Some(response) = runtime.block_on(admin::send_to_server(data_dir, &request))? {
        return Ok(response);
    }
    let store = match Store::open(&store_dir(data_dir), &store_options(config)) {
        Ok(store) => Arc::new(store),
        Err(StoreError::Locked) => bail!(
            "the data directory {} is locked by a running server, and its admin socket does not answer",
            data_dir.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("opening the store in {}", data_dir.display()));
        }
    };
    if !admin::needs_directory(&request) {
        return Ok(admin::execute_store(&store, request));
    }
    let cluster = Arc::new(ClusterNode::open_stopped(
        config.clone(),
        node_name,
        data_dir,
    )?);
    let accounts = Arc::new(Accounts::new(
        cluster.directory().clone(),
        store.clone(),
        node_name,
    ));
    let context = admin::AdminContext {
        store,
        cluster: cluster.clone(),
        accounts: accounts.clone(),
        running: None,
    };
    let response = runtime.block_on(async {
        if cluster.member().is_some() {
            cluster.wait_for_leader(LEADER_WAIT).await;
            if let Err(e) = cluster.migrate(&accounts, data_dir).await {
                return AdminResponse::Failed(format!(
                    "putting this data directory's accounts in the directory: {e}"
                ));
            }
        }
        admin::execute(&context, request).await
    });
    cluster.stop();
    Ok(response)
}

/// How long the command line waits for its own directory member to lead (a group of
/// one elects itself at once).
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `cluster status` as text: two summary lines, then one tab-separated line per node.
fn render_status(report: &admin::ClusterReport) -> String {
    let mut out = format!("leader: {}\n", report.leader.as_deref().unwrap_or("none"));
    match &report.changes_refused {
        None => out.push_str("account changes: accepted\n"),
        Some(why) => out.push_str(&format!("account changes: refused ({why})\n")),
    }
    out.push_str("node\tsite\troles\traft\tapplied\tlag\thealth\n");
    let number = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    for node in &report.nodes {
        let health = match node.round_trip_ms {
            Some(ms) => format!("{} ({ms} ms)", node.health),
            None => node.health.clone(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            node.name,
            node.site,
            node.roles.join(","),
            node.raft,
            number(node.applied),
            number(node.lag),
            health
        ));
    }
    out
}

/// Opens the store for a command that needs the server stopped.
fn open_stopped_store(
    data_dir: &std::path::Path,
    options: &portico_store::StoreOptions,
) -> anyhow::Result<Store> {
    match Store::open(&store_dir(data_dir), options) {
        Ok(store) => Ok(store),
        Err(StoreError::Locked) => bail!(
            "the data directory {} is in use by a running server: stop it first",
            data_dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening the store in {}", data_dir.display())),
    }
}

/// `portico cluster init`: one line per file, made or kept.
fn cluster_init(config: &ClusterConfig, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dir = out.map_or_else(|| config.pki_dir(), std::path::Path::to_path_buf);
    let report = crate::pki::init(config, &dir)
        .with_context(|| format!("making the cluster's certificates in {}", dir.display()))?;
    for (path, outcome) in &report.files {
        println!("{outcome}\t{}", path.display());
    }
    Ok(())
}

/// `portico reindex`: the full-text index thrown away and built again from the store.
fn reindex(config: &ClusterConfig, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let store = open_stopped_store(data_dir, &store_options(config))?;
    let dir = crate::fulltext::index_dir(data_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the old index {}", dir.display()))?;
    }
    let started = std::time::Instant::now();
    let memory = config.search.index_memory_mb.saturating_mul(1024 * 1024);
    let full_text = crate::fulltext::FullText::open(
        &dir,
        usize::try_from(memory).unwrap_or(usize::MAX),
        config.search.index_max_message_kb.saturating_mul(1024),
    )
    .with_context(|| format!("creating the index in {}", dir.display()))?;
    let mut marks = full_text.marks().context("reading the new index")?;
    let report = full_text.sweep(&store, &mut marks).context("indexing")?;
    println!(
        "indexed {} messages in {} folders in {:.1} s ({} unreadable: SEARCH reads them each time); {} documents",
        report.messages,
        report.folders,
        started.elapsed().as_secs_f64(),
        report.unread,
        full_text.documents()
    );
    if !config.search.full_text_index {
        println!(
            "note: [search] full_text_index is off in the configuration: the server will not use it"
        );
    }
    Ok(())
}

/// `portico fsck`: runs on the store directly, never through a running server.
fn fsck(config: &ClusterConfig, data_dir: &std::path::Path, repair: bool) -> anyhow::Result<()> {
    let options = portico_store::StoreOptions {
        verify_against_body_log: false,
        ..store_options(config)
    };
    let store = open_stopped_store(data_dir, &options)?;
    let report = store.fsck(repair).context("checking the store")?;
    println!(
        "checked {} accounts, {} folders, {} messages, {} queued, {} bodies",
        report.accounts, report.folders, report.messages, report.queued, report.bodies_checked
    );
    for line in &report.damaged {
        println!("damaged: {line}");
    }
    for line in &report.index_errors {
        println!("index: {line}");
    }
    if report.bodies_beyond_metadata > 0 {
        println!(
            "body log: {} records newer than anything the metadata database knows: \
             appends in flight at a crash, or recent changes the database lost",
            report.bodies_beyond_metadata
        );
    }
    println!(
        "damaged: {}, index errors: {}, unreferenced bodies: {}, quarantined: {}, folders fixed: {}",
        report.damaged.len(),
        report.index_errors.len(),
        report.unreferenced_bodies,
        report.quarantined,
        report.folders_fixed
    );
    store.sync().context("flushing the store")?;
    if report.is_clean() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
