//! Credential checks for every protocol: argon2 hashes, a short cache of successful
//! checks, failed-login throttling per account and per client address (a delay that
//! doubles per failure, then a temporary refusal of the address on every protocol),
//! and the sign-in policy (denied names, per-account protocol switches). A user name is
//! normalized once ([`LoginName`]), so spelling variants share one account's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use blake2::{Blake2b512, Digest};
use portico_cluster::ClusterConfig;
use portico_directory::AccountRecord;
use portico_store::Account;

use crate::accounts::{Accounts, Located};

/// The protocol a client signs in with; accounts can have each turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    Imap,
    /// Submission (AUTH); every account may send.
    Smtp,
    /// The settings page; every account may read its settings.
    Web,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Web => "web",
        }
    }
}

/// Why a sign-in was refused. Callers map these to their protocol's wire answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user, wrong password, denied name: deliberately indistinguishable.
    BadCredentials,
    /// Right password, but the protocol is off for this account.
    ProtocolDisabled,
    /// The store could not be read, or the mailbox is on another node this node cannot
    /// reach for the client.
    Unavailable,
    /// The user already has as many sessions as the node allows.
    TooManyConnections,
    /// The client's address failed too many logins lately; no password was checked.
    Throttled,
}

/// Whose credentials checked out, and where the mailbox is.
#[derive(Clone, Debug)]
pub enum SignedIn {
    /// On this node.
    Here(Account),
    /// On the node the record names: the session is proxied there.
    Elsewhere(AccountRecord),
}

impl SignedIn {
    pub fn address(&self) -> &str {
        match self {
            SignedIn::Here(account) => &account.address,
            SignedIn::Elsewhere(record) => record.address(),
        }
    }
}

/// Makes an argon2 PHC string for a new password.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Checks `password` against an argon2 PHC string, with `memory` as argon2's working
/// memory (grown to the hash's m_cost once, then reused).
fn verify_hash(memory: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&hash), &hash.salt, &hash.hash)
    else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut computed = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut computed,
        &mut memory[..blocks],
    );
    // Constant-time comparison: every byte is looked at whatever the first difference.
    hashed.is_ok()
        && computed
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// How long a password-check thread keeps its working buffer after its last check: a
/// burst of sign-ins reuses it, a node at rest does not hold it.
const VERIFIER_KEEPS_MEMORY: Duration = Duration::from_secs(20);

struct VerifyJob {
    password: String,
    phc: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Argon2 checks on a few dedicated threads, each with one reused working buffer. A check
/// needs ~19 MiB; allocated per check on the blocking pool, glibc kept it resident, so a
/// burst of logins cost 19 MiB each for good. The buffer is freed after
/// [`VERIFIER_KEEPS_MEMORY`] without a check. This also bounds how many cores sign-ins
/// can take at once.
struct VerifierPool {
    jobs: std::sync::mpsc::Sender<VerifyJob>,
}

impl VerifierPool {
    fn new(threads: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<VerifyJob>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = {
                            let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
                            queue.recv_timeout(VERIFIER_KEEPS_MEMORY)
                        };
                        let job = match job {
                            Ok(job) => job,
                            // A quiet spell: the buffer goes back to the system (it is
                            // mapped for itself, being above the allocator's threshold).
                            Err(RecvTimeoutError::Timeout) => {
                                memory = Vec::new();
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => break,
                        };
                        let _ = job
                            .reply
                            .send(verify_hash(&mut memory, &job.password, &job.phc));
                    }
                })
                .map_err(|e| anyhow::anyhow!("starting a password-check thread: {e}"))?;
        }
        Ok(VerifierPool { jobs })
    }

    async fn verify(&self, password: String, phc: String) -> Option<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(VerifyJob {
                password,
                phc,
                reply,
            })
            .ok()?;
        answer.await.ok()
    }
}

/// The one normal form of an address typed at sign-in, the same one
/// [`Store::account_by_address`] looks up: trimmed, lower-cased.
pub fn normalize_address(raw: &str) -> String {
    raw.trim().to_ascii_lowercase()
}

/// A user name as the client sent it, reduced once to the form every check uses.
pub struct LoginName {
    /// [`normalize_address`] of the name: the key of the lookup, the auth cache and the
    /// account's failure count, so that spelling variants share one count.
    key: String,
    /// The client put white space around the name. Such a name never signs in (the
    /// lookup would still find the account behind it), and its failures count for
    /// `key`.
    padded: bool,
}

impl LoginName {
    pub fn new(raw: &str) -> Self {
        LoginName {
            key: normalize_address(raw),
            padded: raw.trim().len() != raw.len(),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Recent failed logins under one key: an account, or a client address.
#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
    /// Password checks for this client address still running. Once the address has
    /// failed, they count toward the refusal as if they had failed too, so that many
    /// parallel connections cannot each get a guess in while the first are checked.
    pending: u32,
}

fn account_key(name: &LoginName) -> String {
    format!("user:{}", name.key)
}

fn address_key(client: IpAddr) -> String {
    format!("ip:{client}")
}

/// One password check under way for a client address; counted in
/// [`Failures::pending`] until dropped, also when the session goes away mid-check.
struct PendingCheck<'a> {
    auth: &'a Authenticator,
    client: IpAddr,
}

impl Drop for PendingCheck<'_> {
    fn drop(&mut self) {
        let mut failures = self
            .auth
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = failures.get_mut(&address_key(self.client)) {
            entry.pending = entry.pending.saturating_sub(1);
        }
    }
}

/// Node-wide credential checker, shared by every session.
pub struct Authenticator {
    accounts: Arc<Accounts>,
    config: Arc<ClusterConfig>,
    /// Keyed digests of (address, password, stored hash) that verified recently.
    verified: Mutex<HashMap<[u8; 64], Instant>>,
    cache_key: [u8; 32],
    /// Hash of a random password, verified for unknown users so that their answer takes
    /// as long as a wrong password's.
    decoy_hash: String,
    failures: Mutex<HashMap<String, Failures>>,
    verifier: VerifierPool,
}

impl Authenticator {
    pub fn new(accounts: Arc<Accounts>, config: Arc<ClusterConfig>) -> anyhow::Result<Self> {
        let mut cache_key = [0u8; 32];
        getrandom::fill(&mut cache_key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut decoy = [0u8; 16];
        getrandom::fill(&mut decoy).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let decoy_hash = hash_password(&format!("{decoy:?}"))?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Authenticator {
            verifier: VerifierPool::new(cores)?,
            decoy_hash,
            accounts,
            config,
            verified: Mutex::new(HashMap::new()),
            cache_key,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a sign-in; on failure, waits out the throttling delay before answering.
    /// A client address with too many recent failures is refused before any password
    /// is checked.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        protocol: Protocol,
    ) -> Result<SignedIn, LoginError> {
        let name = LoginName::new(username);
        let Some(check) = self.begin_check(client) else {
            tracing::warn!(%client, "refused: too many failed logins from this address");
            return Err(LoginError::Throttled);
        };
        let outcome = self.check(&name, password, protocol).await;
        match outcome {
            Err(LoginError::BadCredentials) => {
                let delay = self.record_failure(&name, client);
                drop(check);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            // Only this account's count: an attacker's own account must not wipe the
            // address's failures (or anyone else's).
            Ok(_) => self.clear_failures(&name),
            Err(_) => {}
        }
        outcome
    }

    async fn check(
        &self,
        name: &LoginName,
        password: &str,
        protocol: Protocol,
    ) -> Result<SignedIn, LoginError> {
        let address = name.key().to_string();
        // The local replica answers, whatever the directory's leader is doing.
        let record = self.accounts.known_record(&address).map_err(|e| {
            tracing::error!(error = %e, "account lookup failed");
            LoginError::Unavailable
        })?;
        // A padded name is refused like an unknown one, after the same decoy check.
        let denied = self.config.is_denied_login(&address) || name.padded;
        let (record, phc) = match record {
            Some(record) if !denied => {
                let phc = record.fields().password_hash.clone();
                (Some(record), phc)
            }
            _ => (None, self.decoy_hash.clone()),
        };
        let digest = self.cache_digest(&address, password, &phc);
        if record.is_none() || !self.recently_verified(&digest) {
            let matches = self
                .verifier
                .verify(password.to_string(), phc)
                .await
                .ok_or(LoginError::Unavailable)?;
            if !matches || record.is_none() {
                return Err(LoginError::BadCredentials);
            }
            self.remember_verified(digest);
        }
        let record = record.ok_or(LoginError::BadCredentials)?;
        let fields = record.fields();
        let enabled = match protocol {
            Protocol::Pop3 => fields.pop3_enabled,
            Protocol::Imap => fields.imap_enabled,
            Protocol::Smtp | Protocol::Web => true,
        };
        if !enabled {
            return Err(LoginError::ProtocolDisabled);
        }
        self.mailbox(record, protocol).await
    }

    /// The signed-in account's mailbox on this node, or the record naming the node that
    /// holds it. Submission needs none: its session holds the account without one
    /// ([`crate::accounts::NO_MAILBOX_HERE`]), wherever the mailbox is.
    async fn mailbox(
        &self,
        record: AccountRecord,
        protocol: Protocol,
    ) -> Result<SignedIn, LoginError> {
        if matches!(protocol, Protocol::Smtp | Protocol::Web) {
            return Ok(SignedIn::Here(crate::accounts::without_mailbox(
                &record.fields(),
            )));
        }
        let accounts = self.accounts.clone();
        let lookup = record.clone();
        let located = tokio::task::spawn_blocking(move || accounts.locate_record(&lookup))
            .await
            .map_err(|_| LoginError::Unavailable)?
            .map_err(|e| {
                tracing::error!(error = %e, "opening the mailbox failed");
                LoginError::Unavailable
            })?;
        Ok(match located {
            Located::Here(account) => SignedIn::Here(account),
            Located::Elsewhere { .. } => SignedIn::Elsewhere(record),
        })
    }

    fn cache_digest(&self, address: &str, password: &str, phc: &str) -> [u8; 64] {
        let mut hasher = Blake2b512::new();
        for part in [
            &self.cache_key[..],
            address.as_bytes(),
            password.as_bytes(),
            phc.as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn recently_verified(&self, digest: &[u8; 64]) -> bool {
        let ttl = Duration::from_secs(self.config.security.auth_cache_secs);
        let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(digest).is_some_and(|at| at.elapsed() < ttl)
    }

    fn remember_verified(&self, digest: [u8; 64]) {
        let ttl = Duration::from_secs(self.config.security.auth_cache_secs);
        if ttl.is_zero() {
            return;
        }
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|_, at| at.elapsed() < ttl);
        cache.insert(digest, Instant::now());
    }

    /// Drops failures older than the window, keeping addresses with checks running.
    fn forget_old(&self, failures: &mut HashMap<String, Failures>) {
        let window = Duration::from_secs(self.config.security.failed_login_window_secs);
        failures.retain(|_, f| f.pending > 0 || f.last.is_some_and(|at| at.elapsed() < window));
    }

    /// Admits one password check from `client`, or refuses when the address's recent
    /// failures reach `failed_logins_before_block` — counting its checks still running
    /// once it has failed at all. An address with a clean record may sign in many
    /// sessions at once (a mail client's first sync, an office behind one NAT).
    fn begin_check(&self, client: IpAddr) -> Option<PendingCheck<'_>> {
        let limit = self.config.security.failed_logins_before_block;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        self.forget_old(&mut failures);
        let entry = failures.entry(address_key(client)).or_default();
        let pending = if entry.count > 0 { entry.pending } else { 0 };
        if limit > 0 && entry.count.saturating_add(pending) >= limit {
            return None;
        }
        entry.pending += 1;
        Some(PendingCheck { auth: self, client })
    }

    /// Counts a failure for the account and for the address; returns how long to wait:
    /// nothing up to `failed_logins_before_delay`, then `failed_login_delay_ms`
    /// doubled with each further failure of the worse of the two, up to the cap.
    fn record_failure(&self, name: &LoginName, client: IpAddr) -> Duration {
        let security = &self.config.security;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        self.forget_old(&mut failures);
        let mut worst = 0;
        for key in [account_key(name), address_key(client)] {
            let entry = failures.entry(key).or_default();
            entry.count = entry.count.saturating_add(1);
            entry.last = Some(Instant::now());
            worst = worst.max(entry.count);
        }
        let Some(beyond) = worst.checked_sub(security.failed_logins_before_delay + 1) else {
            return Duration::ZERO;
        };
        let doubled = security
            .failed_login_delay_ms
            .saturating_mul(1u64 << beyond.min(32));
        Duration::from_millis(
            doubled.min(
                security
                    .max_failed_login_delay_ms
                    .max(security.failed_login_delay_ms),
            ),
        )
    }

    /// Forgets the account's failures after it signed in. The address's stay: they
    /// may be guesses at other accounts.
    fn clear_failures(&self, name: &LoginName) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&account_key(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::testing::MemoryDirectory;
    use portico_directory::DirectoryChange;
    use portico_store::Store;

    /// The embedded default's node.
    const HERE: &str = "local";

    fn setup() -> (tempfile::TempDir, Authenticator, Arc<MemoryDirectory>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &Default::default()).unwrap());
        let directory = Arc::new(MemoryDirectory::default());
        let accounts = Arc::new(Accounts::new(directory.clone(), store, HERE));
        let mut config = ClusterConfig::embedded().unwrap();
        config.security.failed_login_delay_ms = 1;
        let auth = Authenticator::new(accounts, Arc::new(config)).unwrap();
        (dir, auth, directory)
    }

    #[test]
    fn decoy_hash_is_a_valid_argon2_hash() {
        let (_dir, auth, _store) = setup();
        assert!(PasswordHash::new(&auth.decoy_hash).is_ok());
        assert!(!verify_hash(&mut Vec::new(), "anything", &auth.decoy_hash));
        let phc = hash_password("right").unwrap();
        let mut memory = Vec::new();
        assert!(verify_hash(&mut memory, "right", &phc));
        assert!(!verify_hash(&mut memory, "wrong", &phc));
        assert!(!verify_hash(&mut memory, "right", "not a hash"));
    }

    #[actix_rt::test]
    async fn right_password_signs_in_and_wrong_ones_do_not() {
        let (_dir, auth, directory) = setup();
        directory.add("alice@example.com", &hash_password("s3cret").unwrap(), HERE);
        directory.add(
            "administrator@example.com",
            &hash_password("root").unwrap(),
            HERE,
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = auth
            .login("Alice@Example.com", "s3cret", ip, Protocol::Pop3)
            .await;
        assert_eq!(ok.unwrap().address(), "alice@example.com");
        // Second time from the cache.
        assert!(
            auth.login("alice@example.com", "s3cret", ip, Protocol::Pop3)
                .await
                .is_ok()
        );
        for (user, pass) in [
            ("alice@example.com", "wrong"),
            ("nobody@example.com", "s3cret"),
            ("administrator@example.com", "root"),
            ("anonymous", ""),
        ] {
            assert_eq!(
                auth.login(user, pass, ip, Protocol::Pop3)
                    .await
                    .unwrap_err(),
                LoginError::BadCredentials,
                "{user}"
            );
        }
    }

    #[actix_rt::test]
    async fn disabled_protocol_is_reported_only_after_the_right_password() {
        let (_dir, auth, directory) = setup();
        let mut bob = directory.add("bob@example.com", &hash_password("pw").unwrap(), HERE);
        bob.pop3_enabled = false;
        directory.apply(DirectoryChange::UpdateAccount(AccountRecord::new(bob)));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            auth.login("bob@example.com", "pw", ip, Protocol::Pop3)
                .await
                .unwrap_err(),
            LoginError::ProtocolDisabled
        );
        assert_eq!(
            auth.login("bob@example.com", "nope", ip, Protocol::Pop3)
                .await
                .unwrap_err(),
            LoginError::BadCredentials
        );
    }

    #[actix_rt::test]
    async fn a_mailbox_on_another_node_is_named_for_the_proxy_and_submission_needs_none() {
        let (_dir, auth, directory) = setup();
        directory.add("dora@example.com", &hash_password("pw").unwrap(), "d2");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for protocol in [Protocol::Imap, Protocol::Pop3] {
            match auth.login("dora@example.com", "pw", ip, protocol).await {
                Ok(SignedIn::Elsewhere(record)) => assert_eq!(record.home(), "d2"),
                other => panic!("{other:?}"),
            }
        }
        let Ok(SignedIn::Here(sender)) = auth
            .login("dora@example.com", "pw", ip, Protocol::Smtp)
            .await
        else {
            panic!("submission signs in here");
        };
        assert_eq!(sender.address, "dora@example.com");
        assert_eq!(sender.id, crate::accounts::NO_MAILBOX_HERE);
        // The password is checked first: a wrong one is a wrong one.
        assert_eq!(
            auth.login("dora@example.com", "nope", ip, Protocol::Imap)
                .await
                .unwrap_err(),
            LoginError::BadCredentials
        );
    }

    #[test]
    fn delays_double_past_the_threshold_up_to_the_cap() {
        let (_dir, auth, _store) = setup();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let eve = LoginName::new("eve");
        let delays: Vec<_> = (0..20)
            .map(|_| auth.record_failure(&eve, ip).as_millis())
            .collect();
        let cap = auth.config.security.max_failed_login_delay_ms as u128;
        assert_eq!(delays[..4], [0, 0, 0, 1]);
        assert_eq!(delays[4..8], [2, 4, 8, 16]);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(delays[19], cap.min(1 << 16));
        // Another account from another address: no delay of its own yet.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(auth.record_failure(&LoginName::new("bob"), other).is_zero());
    }

    #[test]
    fn spelling_variants_share_one_count_and_padding_is_noted() {
        for raw in [
            "alice@example.com",
            " alice@example.com",
            "alice@example.com ",
            "\talice@Example.COM\t",
            "ALICE@example.com",
        ] {
            let name = LoginName::new(raw);
            assert_eq!(name.key(), "alice@example.com", "{raw:?}");
            assert_eq!(account_key(&name), "user:alice@example.com");
            assert_eq!(name.padded, raw.trim() != raw, "{raw:?}");
        }
    }

    #[actix_rt::test]
    async fn padded_names_never_sign_in_and_count_for_the_account() {
        let (_dir, auth, directory) = setup();
        directory.add("alice@example.com", &hash_password("s3cret").unwrap(), HERE);
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        for raw in [
            "alice@example.com ",
            " alice@example.com",
            "\talice@example.com",
        ] {
            assert_eq!(
                auth.login(raw, "s3cret", ip, Protocol::Imap)
                    .await
                    .unwrap_err(),
                LoginError::BadCredentials,
                "{raw:?}"
            );
        }
        let failures = auth.failures.lock().unwrap();
        assert_eq!(failures["user:alice@example.com"].count, 3);
        assert_eq!(failures[&address_key(ip)].count, 3);
        assert_eq!(failures[&address_key(ip)].pending, 0);
    }

    #[actix_rt::test]
    async fn success_clears_only_its_account_and_the_address_is_refused() {
        let (_dir, auth, directory) = setup();
        directory.add("mallory@example.com", &hash_password("mine").unwrap(), HERE);
        let ip: IpAddr = "10.0.0.4".parse().unwrap();
        let limit = auth.config.security.failed_logins_before_block;
        for _ in 0..limit - 1 {
            let err = auth
                .login("alice@example.com", "guess", ip, Protocol::Pop3)
                .await;
            assert_eq!(err.unwrap_err(), LoginError::BadCredentials);
        }
        // The attacker's own account signs in: the address keeps its failures.
        assert!(
            auth.login("mallory@example.com", "mine", ip, Protocol::Imap)
                .await
                .is_ok()
        );
        let err = auth
            .login("alice@example.com", "guess", ip, Protocol::Pop3)
            .await;
        assert_eq!(err.unwrap_err(), LoginError::BadCredentials);
        // Now refused before any check, even with the right password.
        for protocol in [Protocol::Pop3, Protocol::Imap, Protocol::Smtp] {
            let err = auth
                .login("mallory@example.com", "mine", ip, protocol)
                .await;
            assert_eq!(err.unwrap_err(), LoginError::Throttled);
        }
        // Another address is not affected.
        let elsewhere: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(
            auth.login("mallory@example.com", "mine", elsewhere, Protocol::Imap)
                .await
                .is_ok()
        );
    }

    #[test]
    fn checks_running_count_toward_the_refusal_once_the_address_failed() {
        let (_dir, auth, _store) = setup();
        let ip: IpAddr = "10.0.0.6".parse().unwrap();
        let limit = auth.config.security.failed_logins_before_block as usize;
        // A clean address: many sign-ins at once are fine.
        let clean: Vec<_> = (0..3 * limit)
            .map(|_| auth.begin_check(ip).unwrap())
            .collect();
        drop(clean);
        auth.record_failure(&LoginName::new("eve"), ip);
        let running: Vec<_> = (1..limit).map(|_| auth.begin_check(ip).unwrap()).collect();
        assert!(auth.begin_check(ip).is_none());
        drop(running);
        assert!(auth.begin_check(ip).is_some());
    }
}
