//! TLS for client listeners: the node's certificate, or one it makes itself on first
//! start, served through a resolver that can swap it without touching open sessions.
//!
//! A self-made certificate is one every client can be told to trust: subject and
//! alternative names from the node's host names (the SMTP host name, the listeners'
//! addresses, localhost, 127.0.0.1), valid 397 days (Apple's limit for server
//! certificates), extended key usage serverAuth. It is renewed 30 days before it
//! expires. An administrator's own certificate (or one renewed by certbot) is read
//! again on SIGHUP ([`CertStore::reload`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use portico_cluster::TlsSettings;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Validity of a self-made certificate, in days.
pub const SELF_SIGNED_DAYS: i64 = 397;
/// A self-made certificate is renewed this many days before it expires.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Beside a self-made certificate: when it expires (Unix seconds) and a digest of its
/// PEM. It is ours to renew only while the file still has that digest: a certificate an
/// administrator put in its place is never touched.
const SELF_SIGNED_MARK: &str = "self-signed-expires";
/// The subject older Portico builds gave their self-made certificate (1975–4096, no
/// serverAuth): replaced at start.
const OLD_SELF_SIGNED_SUBJECT: &[u8] = b"rcgen self signed cert";

fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        data_dir.join(path)
    }
}

/// The node's certificate, swappable at run time.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    self_signed: bool,
    /// Names a self-made certificate is for.
    names: Vec<String>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl CertStore {
    /// Reads the certificate and key again (making or renewing a self-made one when
    /// due) and serves them to new connections; open sessions keep theirs.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = load(self)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        Ok(())
    }

    fn mark_path(&self) -> PathBuf {
        self.cert_path.with_file_name(SELF_SIGNED_MARK)
    }

    /// Whether the files should be (re)made: missing, an old-style self-made one, or a
    /// self-made one close to expiry.
    fn needs_new_self_signed(&self) -> anyhow::Result<bool> {
        if !self.cert_path.exists() && !self.key_path.exists() {
            if !self.self_signed {
                bail!(
                    "no TLS certificate at {} and tls.self_signed is off",
                    self.cert_path.display()
                );
            }
            return Ok(true);
        }
        if !self.self_signed {
            return Ok(false);
        }
        let pem = std::fs::read(&self.cert_path)
            .with_context(|| format!("reading certificate {}", self.cert_path.display()))?;
        if let Ok(mark) = std::fs::read_to_string(self.mark_path())
            && let Some((expires, digest)) = mark.trim().split_once(' ')
            && digest == pem_digest(&pem)
        {
            let expires: i64 = expires.parse().unwrap_or(0);
            return Ok(expires - now_secs() < RENEW_BEFORE_DAYS * 86_400);
        }
        Ok(pem_der_contains(&pem, OLD_SELF_SIGNED_SUBJECT))
    }
}

fn pem_digest(pem: &[u8]) -> String {
    use blake2::Digest;
    blake2::Blake2s256::digest(pem)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether any certificate in a PEM file has `needle` in its DER bytes.
fn pem_der_contains(pem: &[u8], needle: &[u8]) -> bool {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .any(|der| der.windows(needle.len()).any(|w| w == needle))
}

fn load(store: &CertStore) -> anyhow::Result<Arc<CertifiedKey>> {
    if store.needs_new_self_signed()? {
        write_self_signed(store)?;
    }
    let certs = CertificateDer::pem_file_iter(&store.cert_path)
        .with_context(|| format!("reading certificate {}", store.cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", store.cert_path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", store.cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&store.key_path)
        .with_context(|| format!("reading private key {}", store.key_path.display()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .context("unsupported private key")?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .context("certificate and key do not match")?;
    Ok(Arc::new(certified))
}

/// Builds the acceptor for the node's client listeners; `names` are the host names a
/// self-made certificate is for (localhost and 127.0.0.1 are always added).
pub fn acceptor(
    settings: &TlsSettings,
    data_dir: &Path,
    names: &[String],
) -> anyhow::Result<(TlsAcceptor, Arc<CertStore>)> {
    let mut all: Vec<String> = Vec::new();
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"])
    {
        if !name.is_empty() && !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            all.push(name.to_string());
        }
    }
    let store = CertStore {
        cert_path: resolve(data_dir, &settings.cert),
        key_path: resolve(data_dir, &settings.key),
        self_signed: settings.self_signed,
        names: all,
        current: RwLock::new(Arc::new(CertifiedKey::new(
            Vec::new(),
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&placeholder_key()?)
                .context("placeholder key")?,
        ))),
    };
    store.reload()?;
    let store = Arc::new(store);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    Ok((TlsAcceptor::from(Arc::new(config)), store))
}

/// A key for the resolver's first value, replaced by [`CertStore::reload`] before the
/// acceptor exists.
fn placeholder_key() -> anyhow::Result<PrivateKeyDer<'static>> {
    let key = rcgen::KeyPair::generate().context("making a key")?;
    PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).context("key PEM")
}

fn write_self_signed(store: &CertStore) -> anyhow::Result<()> {
    let mut params =
        rcgen::CertificateParams::new(store.names.clone()).context("certificate names")?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        store.names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let key = rcgen::KeyPair::generate().context("making a key")?;
    let cert = params.self_signed(&key).context("making a certificate")?;
    for path in [&store.cert_path, &store.key_path] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    // Written beside and renamed over, so a reader never sees half a file.
    replace_private(&store.key_path, key.serialize_pem().as_bytes())?;
    let pem = cert.pem();
    replace_private(&store.cert_path, pem.as_bytes())?;
    replace_private(
        &store.mark_path(),
        format!(
            "{} {}",
            params.not_after.unix_timestamp(),
            pem_digest(pem.as_bytes())
        )
        .as_bytes(),
    )?;
    tracing::info!(
        cert = %store.cert_path.display(),
        names = ?store.names,
        days = SELF_SIGNED_DAYS,
        "made a self-signed certificate"
    );
    Ok(())
}

/// Writes a file only its owner can read, replacing any old one atomically.
fn replace_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("new");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))
}

/// Renews a self-made certificate when it is due (checked daily).
pub async fn renew_periodically(store: Arc<CertStore>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(86_400));
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = store.clone();
        let due = store.self_signed && store.needs_new_self_signed().unwrap_or(false);
        if due && let Err(e) = tokio::task::spawn_blocking(move || store.reload()).await {
            tracing::warn!(error = %e, "renewing the certificate failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["mail.example.com".into()]
    }

    #[test]
    fn self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::default();
        acceptor(&settings, dir.path(), &names()).unwrap();
        let first = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        assert!(pem_der_contains(&first, b"mail.example.com"));
        acceptor(&settings, dir.path(), &names()).unwrap();
        assert_eq!(
            first,
            std::fs::read(dir.path().join("tls/cert.pem")).unwrap()
        );
    }

    #[test]
    fn a_self_signed_certificate_close_to_expiry_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::default();
        let (_, store) = acceptor(&settings, dir.path(), &names()).unwrap();
        let first = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        std::fs::write(
            dir.path().join("tls").join(SELF_SIGNED_MARK),
            format!("{} {}", now_secs() + 86_400, pem_digest(&first)),
        )
        .unwrap();
        store.reload().unwrap();
        assert_ne!(
            first,
            std::fs::read(dir.path().join("tls/cert.pem")).unwrap()
        );
    }

    #[test]
    fn missing_certificate_without_self_signed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            self_signed: false,
            ..TlsSettings::default()
        };
        let err = acceptor(&settings, dir.path(), &names())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no TLS certificate"), "{err}");
    }
}
