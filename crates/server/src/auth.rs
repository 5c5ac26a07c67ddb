//! Credential checks for every protocol: argon2 hashes, a short cache of successful
//! checks, failed-login throttling per user and per client address, and the sign-in
//! policy (denied names, per-account protocol switches).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use blake2::{Blake2b512, Digest};
use portico_cluster::ClusterConfig;
use portico_store::{Account, Store};

/// The protocol a client signs in with; accounts can have each turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    Imap,
    /// Submission (AUTH); every account may send.
    Smtp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
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
    /// The store could not be read.
    Unavailable,
    /// The user already has as many sessions as the node allows.
    TooManyConnections,
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

struct VerifyJob {
    password: String,
    phc: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Argon2 checks on a few dedicated threads, each with one reused working buffer. A check
/// needs ~19 MiB; allocated per check on the blocking pool, glibc kept it resident, so a
/// burst of logins cost 19 MiB each for good. This also bounds how many cores sign-ins
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
                            queue.recv()
                        };
                        let Ok(job) = job else { break };
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

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// Node-wide credential checker, shared by every session.
pub struct Authenticator {
    store: Arc<Store>,
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

/// How long failures are remembered for throttling.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

impl Authenticator {
    pub fn new(store: Arc<Store>, config: Arc<ClusterConfig>) -> anyhow::Result<Self> {
        let mut cache_key = [0u8; 32];
        getrandom::fill(&mut cache_key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut decoy = [0u8; 16];
        getrandom::fill(&mut decoy).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let decoy_hash = hash_password(&format!("{decoy:?}"))?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Authenticator {
            verifier: VerifierPool::new(cores)?,
            decoy_hash,
            store,
            config,
            verified: Mutex::new(HashMap::new()),
            cache_key,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a sign-in; on failure, waits out the throttling delay before answering.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
        protocol: Protocol,
    ) -> Result<Account, LoginError> {
        let outcome = self.check(username, password, protocol).await;
        match outcome {
            Err(LoginError::BadCredentials) => {
                let delay = self.record_failure(username, client);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            Ok(_) => self.clear_failures(username, client),
            Err(_) => {}
        }
        outcome
    }

    async fn check(
        &self,
        username: &str,
        password: &str,
        protocol: Protocol,
    ) -> Result<Account, LoginError> {
        let store = self.store.clone();
        let address = username.trim().to_ascii_lowercase();
        let lookup = address.clone();
        let account = tokio::task::spawn_blocking(move || store.account_by_address(&lookup))
            .await
            .map_err(|_| LoginError::Unavailable)?
            .map_err(|e| {
                tracing::error!(error = %e, "account lookup failed");
                LoginError::Unavailable
            })?;
        let denied = self.config.is_denied_login(&address);
        let (account, phc) = match account {
            Some(account) if !denied => {
                let phc = account.password_hash.clone();
                (Some(account), phc)
            }
            _ => (None, self.decoy_hash.clone()),
        };
        let digest = self.cache_digest(&address, password, &phc);
        if account.is_some() && self.recently_verified(&digest) {
            return Self::allowed(account, protocol);
        }
        let matches = self
            .verifier
            .verify(password.to_string(), phc)
            .await
            .ok_or(LoginError::Unavailable)?;
        if !matches || account.is_none() {
            return Err(LoginError::BadCredentials);
        }
        self.remember_verified(digest);
        Self::allowed(account, protocol)
    }

    fn allowed(account: Option<Account>, protocol: Protocol) -> Result<Account, LoginError> {
        let account = account.ok_or(LoginError::BadCredentials)?;
        let enabled = match protocol {
            Protocol::Pop3 => account.pop3_enabled,
            Protocol::Imap => account.imap_enabled,
            Protocol::Smtp => true,
        };
        if enabled {
            Ok(account)
        } else {
            Err(LoginError::ProtocolDisabled)
        }
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

    /// Counts a failure for the user and for the address; returns how long to wait.
    fn record_failure(&self, username: &str, client: IpAddr) -> Duration {
        let security = &self.config.security;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.retain(|_, f| f.last.is_some_and(|at| at.elapsed() < FAILURE_MEMORY));
        let mut worst = 0;
        for key in [
            format!("user:{}", username.to_ascii_lowercase()),
            format!("ip:{client}"),
        ] {
            let entry = failures.entry(key).or_default();
            entry.count += 1;
            entry.last = Some(Instant::now());
            worst = worst.max(entry.count);
        }
        if worst > security.failed_logins_before_delay {
            Duration::from_millis(security.failed_login_delay_ms)
        } else {
            Duration::ZERO
        }
    }

    fn clear_failures(&self, username: &str, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&format!("user:{}", username.to_ascii_lowercase()));
        failures.remove(&format!("ip:{client}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Authenticator, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &Default::default()).unwrap());
        let mut config = ClusterConfig::embedded().unwrap();
        config.security.failed_login_delay_ms = 1;
        let auth = Authenticator::new(store.clone(), Arc::new(config)).unwrap();
        (dir, auth, store)
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
        let (_dir, auth, store) = setup();
        store
            .create_account("alice@example.com", &hash_password("s3cret").unwrap())
            .unwrap();
        store
            .create_account("administrator@example.com", &hash_password("root").unwrap())
            .unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = auth
            .login("Alice@Example.com", "s3cret", ip, Protocol::Pop3)
            .await;
        assert_eq!(ok.unwrap().address, "alice@example.com");
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
        let (_dir, auth, store) = setup();
        let mut account = store
            .create_account("bob@example.com", &hash_password("pw").unwrap())
            .unwrap();
        account.pop3_enabled = false;
        store.update_account(&account).unwrap();
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

    #[test]
    fn failures_beyond_the_threshold_are_delayed() {
        let (_dir, auth, _store) = setup();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let delays: Vec<_> = (0..5).map(|_| auth.record_failure("eve", ip)).collect();
        assert!(delays[..3].iter().all(Duration::is_zero));
        assert!(delays[3..].iter().all(|d| !d.is_zero()));
        auth.clear_failures("eve", ip);
        assert!(auth.record_failure("eve", ip).is_zero());
    }
}
