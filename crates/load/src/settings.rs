//! The command line turned into what the run needs: the target (address checked to be
//! loopback unless allowed otherwise), the accounts, the recipients, the corpus.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;

use crate::cli::{Cli, Common, Scenario, SendArgs};
use crate::conn::Target;
use crate::message::Corpus;

/// A password, kept out of logs and debug output.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One account the simulated clients log in to.
#[derive(Debug, Clone)]
pub struct Account {
    pub address: String,
    pub password: Secret,
}

/// Everything a client needs besides its connection, shared by all clients.
#[derive(Debug)]
pub struct Settings {
    pub scenario: Scenario,
    pub clients: usize,
    pub common: Common,
    /// Never empty.
    pub accounts: Vec<Account>,
    /// Where messages are sent to; never empty.
    pub recipients: Vec<String>,
    /// Loaded for the scenarios that send or append messages.
    pub corpus: Option<Arc<Corpus>>,
    pub seed: u64,
}

impl Settings {
    /// The account of client `index` (0-based): ((i-1) mod N)+1 in 1-based terms.
    pub fn account(&self, index: usize) -> &Account {
        &self.accounts[index % self.accounts.len()]
    }
}

/// Resolves the command line; errors are the user's to fix.
pub async fn resolve(cli: Cli) -> anyhow::Result<(Arc<Settings>, Arc<Target>)> {
    let Cli { scenario, common } = cli;
    let clients = match &scenario {
        Scenario::ImapIdle(args) => args.sessions.unwrap_or(common.clients),
        _ => common.clients,
    };
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let target = target(&scenario, &common).await?;
    let accounts = accounts(&common, clients, scenario.logs_in())?;
    if matches!(scenario, Scenario::Pop3Drain(_)) && accounts.len() < clients {
        bail!(
            "pop3-drain needs an account per client (POP3 locks the maildrop): {} accounts for {clients} clients",
            accounts.len()
        );
    }
    let send_args = match &scenario {
        Scenario::SmtpSubmit(args) => Some(args),
        Scenario::SmtpInbound(args) | Scenario::Lmtp(args) => Some(&args.send),
        _ => None,
    };
    let recipients = match send_args {
        Some(args) => recipients(args, &accounts)?,
        None => accounts.iter().map(|a| a.address.clone()).collect(),
    };
    if let Some(args) = send_args
        && (args.rcpts == 0 || args.per_connection == 0)
    {
        bail!("--rcpts and --per-connection must be at least 1");
    }
    let needs_corpus = !matches!(
        scenario,
        Scenario::ImapIdle(_) | Scenario::Pop3Drain(_) | Scenario::LoginStorm(_)
    );
    let corpus = if needs_corpus {
        Some(Arc::new(Corpus::load(&common.corpus).with_context(
            || "the corpus (--corpus DIR: a folder of *.eml messages)".to_string(),
        )?))
    } else {
        None
    };
    let seed = common.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
    });
    let settings = Settings {
        scenario,
        clients,
        common,
        accounts,
        recipients,
        corpus,
        seed,
    };
    Ok((Arc::new(settings), Arc::new(target)))
}

async fn target(scenario: &Scenario, common: &Common) -> anyhow::Result<Target> {
    let protocol = scenario.protocol();
    let tls = common.tls.unwrap_or_else(|| protocol.default_tls());
    let port = common.port.unwrap_or_else(|| protocol.default_port(tls));
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((common.host.as_str(), port))
        .await
        .with_context(|| format!("resolving {}", common.host))?
        .collect();
    let Some(&address) = addresses.first() else {
        bail!("{} resolves to no address", common.host);
    };
    if !common.allow_remote {
        if let Some(remote) = addresses.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "{} resolves to {}, which is not a loopback address: pass --allow-remote to load another machine",
                common.host,
                remote.ip()
            );
        }
        if let Some(source) = common.source.iter().find(|s| !s.is_loopback()) {
            bail!("--source {source} is not a loopback address (--allow-remote allows it)");
        }
    }
    let name = common
        .server_name
        .clone()
        .unwrap_or_else(|| common.host.clone());
    let server_name = ServerName::try_from(name.clone())
        .with_context(|| format!("{name:?} is not a valid TLS server name"))?;
    Ok(Target {
        address,
        tls,
        tls_config: crate::tls::client_config(common.ca.as_deref())?,
        server_name,
        sources: common.source.clone(),
        timeout: common.timeout,
    })
}

fn accounts(common: &Common, clients: usize, logs_in: bool) -> anyhow::Result<Vec<Account>> {
    if let Some(path) = &common.accounts_file {
        return accounts_file(path);
    }
    let count = common.accounts.unwrap_or(clients);
    if count == 0 {
        bail!("--accounts must be at least 1");
    }
    let password = match (&common.password, logs_in) {
        (Some(password), _) => password.clone(),
        (None, false) => String::new(),
        (None, true) => bail!(
            "the clients log in: give --password (or PORTICO_LOAD_PASSWORD) or --accounts-file"
        ),
    };
    Ok((1..=count)
        .map(|n| Account {
            address: expand(&common.user, n),
            password: Secret(password.clone()),
        })
        .collect())
}

/// Reads `address password` lines (the password is the rest of the line).
fn accounts_file(path: &Path) -> anyhow::Result<Vec<Account>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let accounts = parse_accounts(&text).map_err(|line| {
        anyhow::anyhow!(
            "{} line {line}: expected `address password`",
            path.display()
        )
    })?;
    if accounts.is_empty() {
        bail!("no account in {}", path.display());
    }
    Ok(accounts)
}

/// The accounts of an accounts file; Err(line number) of a line without a password.
fn parse_accounts(text: &str) -> Result<Vec<Account>, usize> {
    let mut accounts = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((address, password)) = line.split_once(char::is_whitespace) else {
            return Err(number + 1);
        };
        let password = password.trim();
        if password.is_empty() {
            return Err(number + 1);
        }
        accounts.push(Account {
            address: address.to_string(),
            password: Secret(password.to_string()),
        });
    }
    Ok(accounts)
}

fn recipients(args: &SendArgs, accounts: &[Account]) -> anyhow::Result<Vec<String>> {
    let list: Vec<String> = match &args.to {
        Some(pattern) if pattern.contains("%d") => {
            let count = args.recipients.unwrap_or(accounts.len());
            (1..=count).map(|n| expand(pattern, n)).collect()
        }
        Some(address) => vec![address.clone()],
        None => accounts.iter().map(|a| a.address.clone()).collect(),
    };
    if list.is_empty() {
        bail!("no recipient (--to, --recipients)");
    }
    if args.rcpts > list.len() {
        bail!(
            "--rcpts {} is more than the {} distinct recipients",
            args.rcpts,
            list.len()
        );
    }
    Ok(list)
}

/// `pattern` with every `%d` replaced by `n`.
pub fn expand(pattern: &str, n: usize) -> String {
    pattern.replace("%d", &n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(expand("user%d@example.com", 7), "user7@example.com");
        assert_eq!(expand("fixed@example.com", 7), "fixed@example.com");
    }

    #[test]
    fn accounts_files() {
        let accounts = parse_accounts("# test\n\na@x  pass word \nb@y p2\n").unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].address, "a@x");
        assert_eq!(accounts[0].password.0, "pass word");
        assert_eq!(parse_accounts("a@x\n").unwrap_err(), 1);
        assert_eq!(format!("{:?}", accounts[1].password), "<redacted>");
    }
}
