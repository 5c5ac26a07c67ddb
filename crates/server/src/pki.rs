//! The cluster's own PKI: one certificate authority per cluster, one certificate per
//! node, and the rustls configurations that make every internode connection mutual TLS.
//!
//! Why it exists: nodes trust each other with account data and mail, so a node must
//! never accept a connection from something that only says it is a node. Client
//! listeners use public certificates (`tls.rs`); the internode link uses this private
//! CA instead, so that only certificates `portico cluster init` made are accepted, and
//! each one proves a single node name.
//!
//! A node's identity is the DNS subject-alt-name `NAME.node.portico` (a name that never
//! resolves; it is only an identity) with CN = NAME. The CA is name-constrained to
//! `node.portico`, so it cannot vouch for any real host even if an administrator adds it
//! to a trust store by mistake.
//!
//! ```text
//! dialing node                                   accepting node
//! internode_client_config ── TLS (mutual) ──►    internode_server_config
//!   checks: server chains to the CA and is         checks: client chains to the CA;
//!   PEER.node.portico (ServerName)                 then verify_peer_node(certs, claimed)
//! ```
//!
//! Files (in one directory, `ca-key.pem` belongs only where certificates are made):
//! `ca.pem`, `ca-key.pem`, and per node `NAME.pem` and `NAME-key.pem`. Keys are created
//! with mode 0600 and never rewritten; [`init`] only adds what is missing.
//!
//! Certificates are read with x509-parser, directly or through rcgen; nothing here
//! parses DER itself.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico_cluster::ClusterConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The domain under which every node's identity lives; it is never looked up in DNS.
pub const NODE_DOMAIN: &str = "node.portico";
/// The CA certificate, shared by every node.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's key: needed only where certificates are made, never on a running node.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Validity of the cluster CA, in days (ten years: replacing it means re-issuing every
/// node certificate at once).
const CA_DAYS: i64 = 3650;
/// Validity of a node certificate, in days. An expired one is refused by [`init`], which
/// says to remove it so that the next run makes a new one.
const NODE_DAYS: i64 = 1825;

/// What went wrong making or loading the cluster's certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "node name {0:?} cannot name a certificate: use lowercase letters, digits and \
         inner hyphens (at most 63), not \"ca\" and not ending in \"-key\""
    )]
    UnusableNodeName(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{present} exists but {missing} does not: remove {present} to make a new pair")]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error(
        "{path} is not a valid certificate of the {CA_CERT_FILE} beside it for node \
         {node:?} ({reason}): remove it and its key to make new ones"
    )]
    NotFromCa {
        path: PathBuf,
        node: String,
        reason: String,
    },
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("no randomness for a serial number: {0}")]
    Random(getrandom::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Why an internode peer is refused after its handshake. The connection code logs it
/// with the peer's address and closes the connection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// x509-parser cannot read the certificate or its subject-alt-names.
    #[error("the peer's certificate cannot be read")]
    Malformed,
    #[error("the peer's certificate names no node")]
    NoNodeName,
    #[error("the peer's certificate names several nodes")]
    SeveralNodeNames,
    #[error("the peer claims to be node {claimed:?}, but its certificate is node {certified:?}")]
    Mismatch { claimed: String, certified: String },
}

/// Whether [`init`] made a file or found it there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    Made,
    Kept,
}

impl fmt::Display for FileOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileOutcome::Made => "made",
            FileOutcome::Kept => "kept",
        })
    }
}

/// Every file [`init`] looked after, in the order it did so.
#[derive(Debug, Default)]
pub struct InitReport {
    pub files: Vec<(PathBuf, FileOutcome)>,
}

/// Makes whatever is missing of the cluster's CA and node certificates in `dir`.
///
/// An existing CA is reused and existing node files are kept (after checking that they
/// belong to the CA and to their node); a pair with one file missing is an error rather
/// than something to overwrite. Node names are all checked before anything is written.
pub fn init(config: &ClusterConfig, dir: &Path) -> Result<InitReport, PkiError> {
    for node in &config.nodes {
        check_node_name(&node.name)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut report = InitReport::default();
    let ca = load_or_make_ca(&config.cluster, dir, &mut report)?;
    for node in &config.nodes {
        let cert_path = dir.join(format!("{}.pem", node.name));
        let key_path = dir.join(format!("{}-key.pem", node.name));
        if pair_exists(&cert_path, &key_path)? {
            let cert = read_cert(&cert_path)?;
            let key = read_key(&key_path)?;
            check_key_matches(&cert, &key, &key_path)?;
            ca.check_node(&cert, &node.name, &cert_path)?;
            report.files.push((cert_path, FileOutcome::Kept));
            report.files.push((key_path, FileOutcome::Kept));
            continue;
        }
        let key = KeyPair::generate()?;
        let cert = node_params(&node.name)?.signed_by(&key, &ca.issuer)?;
        // Catches a reused CA whose subject rcgen could not rebuild byte for byte.
        ca.check_node(cert.der(), &node.name, &cert_path)?;
        // The key first: a certificate is never there without its key.
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        report.files.push((cert_path, FileOutcome::Made));
        report.files.push((key_path, FileOutcome::Made));
    }
    Ok(report)
}

/// A node name must be a DNS label (it becomes `NAME.node.portico`) and a file name
/// that cannot collide with another file in the directory.
fn check_node_name(name: &str) -> Result<(), PkiError> {
    let label = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if label && name != "ca" && !name.ends_with("-key") {
        Ok(())
    } else {
        Err(PkiError::UnusableNodeName(name.to_string()))
    }
}

/// The DNS name that identifies `node` in its certificate.
pub fn node_dns_name(node: &str) -> String {
    format!("{node}.{NODE_DOMAIN}")
}

/// The name a dialing node gives rustls, so that ordinary server-name verification
/// checks that the peer's certificate is for `peer`.
pub fn peer_server_name(peer: &str) -> Result<ServerName<'static>, PkiError> {
    check_node_name(peer)?;
    ServerName::try_from(node_dns_name(peer)).map_err(|_| PkiError::UnusableNodeName(peer.into()))
}

/// The CA as [`init`] uses it: its signing side and the verifiers that check a node
/// certificate against it.
struct LoadedCa {
    issuer: Issuer<'static, KeyPair>,
    server_verifier: Arc<rustls::client::WebPkiServerVerifier>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl LoadedCa {
    /// Checks `cert` as both ends of a connection would: chained to the CA, in date,
    /// usable for server and client authentication, and for `node`.
    fn check_node(
        &self,
        cert: &CertificateDer<'_>,
        node: &str,
        path: &Path,
    ) -> Result<(), PkiError> {
        let not_from_ca = |reason: rustls::Error| PkiError::NotFromCa {
            path: path.to_path_buf(),
            node: node.to_string(),
            reason: reason.to_string(),
        };
        let now = UnixTime::now();
        let name = peer_server_name(node)?;
        self.server_verifier
            .verify_server_cert(cert, &[], &name, &[], now)
            .map_err(not_from_ca)?;
        self.client_verifier
            .verify_client_cert(cert, &[], now)
            .map_err(not_from_ca)?;
        Ok(())
    }
}

fn load_or_make_ca(
    cluster: &str,
    dir: &Path,
    report: &mut InitReport,
) -> Result<LoadedCa, PkiError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let (cert, issuer) = if pair_exists(&cert_path, &key_path)? {
        let cert = read_cert(&cert_path)?;
        let key = read_key(&key_path)?;
        check_key_matches(&cert, &key, &key_path)?;
        // rcgen takes the subject, key usages and key identifier from the certificate,
        // so that what it signs names this CA exactly as the CA names itself.
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| PkiError::Invalid {
            path: cert_path.clone(),
            reason: format!("not a CA certificate this tool can sign under ({e})"),
        })?;
        report.files.push((cert_path.clone(), FileOutcome::Kept));
        report.files.push((key_path, FileOutcome::Kept));
        (cert, issuer)
    } else {
        let key = KeyPair::generate()?;
        let params = ca_params(cluster);
        let cert = params.self_signed(&key)?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        report.files.push((cert_path.clone(), FileOutcome::Made));
        report.files.push((key_path, FileOutcome::Made));
        (cert.der().clone(), Issuer::new(params, key))
    };
    let roots = ca_roots(cert, &cert_path)?;
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
    Ok(LoadedCa {
        issuer,
        server_verifier,
        client_verifier,
    })
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "Portico");
    subject.push(
        DnType::CommonName,
        format!("Portico cluster CA for {cluster}"),
    );
    params.distinguished_name = subject;
    // Only end-entity certificates below it, and only for node identities.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(NODE_DOMAIN.into())],
        excluded_subtrees: Vec::new(),
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    params
}

fn node_params(node: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(vec![node_dns_name(node)])?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, node);
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(NODE_DAYS);
    Ok(params)
}

/// A positive 16-byte serial (RFC 5280 §4.1.2.2: unique per CA, at most 20 bytes).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Both files there: true; neither: false; only one: an error, since making the other
/// would pair it with something it does not match.
fn pair_exists(cert: &Path, key: &Path) -> Result<bool, PkiError> {
    let exists = |path: &Path| {
        path.try_exists().map_err(|source| PkiError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    match (exists(cert)?, exists(key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(PkiError::HalfPair {
            present: cert.to_path_buf(),
            missing: key.to_path_buf(),
        }),
        (false, true) => Err(PkiError::HalfPair {
            present: key.to_path_buf(),
            missing: cert.to_path_buf(),
        }),
    }
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(read_text(path)?.as_bytes()).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: format!("no PEM certificate ({e})"),
    })
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(&read_text(path)?).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: format!("no usable private key ({e})"),
    })
}

fn check_key_matches(
    cert: &CertificateDer<'_>,
    key: &KeyPair,
    key_path: &Path,
) -> Result<(), PkiError> {
    use rcgen::PublicKeyData;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| PkiError::Invalid {
        path: key_path.to_path_buf(),
        reason: format!("the certificate beside it cannot be read ({e})"),
    })?;
    if parsed.public_key().raw == key.subject_public_key_info().as_slice() {
        Ok(())
    } else {
        Err(PkiError::Invalid {
            path: key_path.to_path_buf(),
            reason: "this key does not belong to the certificate beside it".into(),
        })
    }
}

/// Writes a file that must not exist yet, with `mode` from its creation on. It is
/// written under a temporary name and linked into place, so a reader never sees half a
/// file and an existing file is never replaced.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Write { path, source }
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(".{name}.new"));
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(&temporary)(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(write_error(&temporary))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_error(&temporary))?;
    drop(file);
    let linked = std::fs::hard_link(&temporary, path).map_err(write_error(path));
    let removed = std::fs::remove_file(&temporary).map_err(write_error(&temporary));
    linked.and(removed)
}

/// This node's certificate and key with the cluster CA, as the internode link needs
/// them.
pub struct NodeIdentity {
    node: String,
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Reads `ca.pem`, `NODE.pem` and `NODE-key.pem` from `dir`.
    pub fn load(dir: &Path, node: &str) -> Result<NodeIdentity, PkiError> {
        check_node_name(node)?;
        let ca = read_cert(&dir.join(CA_CERT_FILE))?;
        let cert = read_cert(&dir.join(format!("{node}.pem")))?;
        let key_path = dir.join(format!("{node}-key.pem"));
        let key = PrivateKeyDer::from_pem_slice(read_text(&key_path)?.as_bytes()).map_err(|e| {
            PkiError::Invalid {
                path: key_path.clone(),
                reason: format!("no PEM private key ({e})"),
            }
        })?;
        Ok(NodeIdentity {
            node: node.to_string(),
            ca,
            cert,
            key,
        })
    }

    /// The node this identity is for.
    pub fn node(&self) -> &str {
        &self.node
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn ca_roots(ca: CertificateDer<'static>, path: &Path) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a usable CA certificate ({e})"),
    })?;
    Ok(Arc::new(roots))
}

/// The accepting side of the internode link: a client certificate chaining to the
/// cluster CA is required, and this node's certificate is presented. Which node the
/// client is must still be checked with [`verify_peer_node`].
pub fn internode_server_config(identity: &NodeIdentity) -> Result<ServerConfig, PkiError> {
    let roots = ca_roots(identity.ca.clone(), Path::new(CA_CERT_FILE))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?)
}

/// The dialing side of the internode link: only the cluster CA is trusted, and this
/// node's certificate is presented as client authentication. Connect with
/// [`peer_server_name`] so that the server's node name is checked.
pub fn internode_client_config(identity: &NodeIdentity) -> Result<ClientConfig, PkiError> {
    let roots = ca_roots(identity.ca.clone(), Path::new(CA_CERT_FILE))?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())?)
}

/// The node named in the `*.node.portico` subject-alt-name of a verified peer's
/// certificate chain (its first certificate).
pub fn peer_node_name(certs: &[CertificateDer<'_>]) -> Result<String, PeerRefused> {
    let end_entity = certs.first().ok_or(PeerRefused::NoCertificate)?;
    let names = dns_names(end_entity)?;
    let suffix = format!(".{NODE_DOMAIN}");
    let mut nodes = names.iter().filter_map(|name| {
        let name = name.to_ascii_lowercase();
        name.strip_suffix(&suffix)
            .filter(|node| !node.is_empty() && !node.contains('.'))
            .map(str::to_string)
    });
    let node = nodes.next().ok_or(PeerRefused::NoNodeName)?;
    if nodes.next().is_some() {
        return Err(PeerRefused::SeveralNodeNames);
    }
    Ok(node)
}

/// The dNSName entries of a certificate's subject-alt-name extension (none without one),
/// read by x509-parser (RFC 5280 §4.2.1.6). A certificate with trailing bytes, two such
/// extensions or an entry that cannot be read is malformed: an unreadable entry might be
/// the node name.
fn dns_names<'a>(cert: &'a CertificateDer<'_>) -> Result<Vec<&'a str>, PeerRefused> {
    use x509_parser::extensions::GeneralName;
    let (rest, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|_| PeerRefused::Malformed)?;
    if !rest.is_empty() {
        return Err(PeerRefused::Malformed);
    }
    let Some(san) = parsed
        .subject_alternative_name()
        .map_err(|_| PeerRefused::Malformed)?
    else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(name) => names.push(*name),
            GeneralName::Invalid(..) => return Err(PeerRefused::Malformed),
            _ => {}
        }
    }
    Ok(names)
}

/// The accepting side's check: the peer whose handshake succeeded (so its certificate
/// chains to the cluster CA) must be the node it claims to be. `certs` is the
/// connection's `peer_certificates()`.
pub fn verify_peer_node(
    certs: Option<&[CertificateDer<'_>]>,
    claimed: &str,
) -> Result<(), PeerRefused> {
    let certified = peer_node_name(certs.ok_or(PeerRefused::NoCertificate)?)?;
    if certified == claimed {
        Ok(())
    } else {
        Err(PeerRefused::Mismatch {
            claimed: claimed.to_string(),
            certified,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    fn config(nodes: &[&str]) -> ClusterConfig {
        let mut text = String::from("cluster = \"test\"\n[[site]]\nname = \"a\"\n");
        for (i, node) in nodes.iter().enumerate() {
            let roles = if i == 0 {
                "[\"backend\", \"directory\"]"
            } else {
                "[\"backend\"]"
            };
            text.push_str(&format!(
                "[[node]]\nname = \"{node}\"\nsite = \"a\"\nroles = {roles}\n\
                 data_dir = \"d/{node}\"\ninternode = \"127.0.0.1:{}\"\n",
                7000 + i
            ));
        }
        ClusterConfig::parse(&text, PathBuf::from(".")).unwrap()
    }

    /// What each side of one connection learned: the name in the other's certificate,
    /// or why its handshake failed.
    struct Outcome {
        server: Result<String, String>,
        client: Result<String, String>,
    }

    /// One connection over loopback: `client` dials `server` (expecting node
    /// `expected_server`), then sends the node name it claims; the server checks it.
    async fn connect(
        server: &NodeIdentity,
        client: &NodeIdentity,
        expected_server: &str,
        claimed: &str,
    ) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(internode_server_config(server).unwrap()));
        let accepting = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let mut claim = vec![0u8; 64];
            let n = tls.read(&mut claim).await.map_err(|e| e.to_string())?;
            let claim = String::from_utf8_lossy(&claim[..n]).into_owned();
            let certs = tls.get_ref().1.peer_certificates();
            verify_peer_node(certs, &claim).map_err(|e| e.to_string())?;
            let name = peer_node_name(certs.unwrap_or(&[])).map_err(|e| e.to_string())?;
            tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
            Ok(name)
        });
        let connector = TlsConnector::from(Arc::new(internode_client_config(client).unwrap()));
        let tcp = TcpStream::connect(address).await.unwrap();
        let client = async {
            let mut tls = connector
                .connect(peer_server_name(expected_server).unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let certs = tls.get_ref().1.peer_certificates();
            let name = peer_node_name(certs.unwrap_or(&[])).map_err(|e| e.to_string())?;
            tls.write_all(claimed.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut reply = [0u8; 2];
            tls.read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            Ok(name)
        }
        .await;
        Outcome {
            server: accepting.await.unwrap(),
            client,
        }
    }

    #[tokio::test]
    async fn two_nodes_of_one_ca_see_each_others_names() {
        let dir = tempfile::tempdir().unwrap();
        init(&config(&["s1", "d2"]), dir.path()).unwrap();
        let s1 = NodeIdentity::load(dir.path(), "s1").unwrap();
        let d2 = NodeIdentity::load(dir.path(), "d2").unwrap();
        let outcome = connect(&d2, &s1, "d2", "s1").await;
        assert_eq!(outcome.server, Ok("s1".to_string()));
        assert_eq!(outcome.client, Ok("d2".to_string()));
    }

    #[tokio::test]
    async fn a_node_of_another_ca_is_refused() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        init(&config(&["s1", "d2"]), ours.path()).unwrap();
        init(&config(&["s1"]), theirs.path()).unwrap();
        let d2 = NodeIdentity::load(ours.path(), "d2").unwrap();
        // A stranger's certificate and key, but our CA to trust the server with: only
        // the server's check of the client certificate stands in the way.
        let mut stranger = NodeIdentity::load(theirs.path(), "s1").unwrap();
        stranger.ca = d2.ca.clone();
        let outcome = connect(&d2, &stranger, "d2", "s1").await;
        let error = outcome.server.unwrap_err();
        // Both CAs have one subject ("… for test"), so the signature is what fails.
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(outcome.client.is_err());
    }

    #[tokio::test]
    async fn a_node_claiming_another_nodes_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(&config(&["s1", "d2", "d3"]), dir.path()).unwrap();
        let s1 = NodeIdentity::load(dir.path(), "s1").unwrap();
        let d3 = NodeIdentity::load(dir.path(), "d3").unwrap();
        let outcome = connect(&d3, &s1, "d3", "d2").await;
        assert_eq!(
            outcome.server,
            Err(PeerRefused::Mismatch {
                claimed: "d2".into(),
                certified: "s1".into()
            }
            .to_string())
        );
        assert!(outcome.client.is_err());
    }

    #[tokio::test]
    async fn a_server_with_another_nodes_certificate_is_refused_by_the_client() {
        let dir = tempfile::tempdir().unwrap();
        init(&config(&["s1", "d2"]), dir.path()).unwrap();
        let s1 = NodeIdentity::load(dir.path(), "s1").unwrap();
        let d2 = NodeIdentity::load(dir.path(), "d2").unwrap();
        // s1 answers where d2 was dialled.
        let outcome = connect(&s1, &d2, "d2", "d2").await;
        let error = outcome.client.unwrap_err();
        assert!(error.contains("not valid for name"), "{error}");
    }

    #[test]
    fn keys_are_private_and_a_second_run_keeps_everything_and_adds_new_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(&config(&["s1", "d2"]), dir.path()).unwrap();
        assert_eq!(first.files.len(), 6);
        assert!(first.files.iter().all(|(_, o)| *o == FileOutcome::Made));
        for key in ["ca-key.pem", "s1-key.pem", "d2-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let read_all = |names: &[&str]| -> Vec<Vec<u8>> {
            names
                .iter()
                .map(|name| std::fs::read(dir.path().join(name)).unwrap())
                .collect()
        };
        let names = [
            "ca.pem",
            "ca-key.pem",
            "s1.pem",
            "s1-key.pem",
            "d2.pem",
            "d2-key.pem",
        ];
        let before = read_all(&names);

        let second = init(&config(&["s1", "d2", "b3"]), dir.path()).unwrap();
        assert_eq!(read_all(&names), before);
        let made: Vec<_> = second
            .files
            .iter()
            .filter(|(_, o)| *o == FileOutcome::Made)
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(made, ["b3.pem", "b3-key.pem"]);
        assert_eq!(second.files.len(), 8);
        // The added node's certificate comes from the reused CA.
        let b3 = std::fs::read(dir.path().join("b3.pem")).unwrap();
        let b3 = CertificateDer::from_pem_slice(&b3).unwrap();
        assert_eq!(peer_node_name(&[b3]), Ok("b3".to_string()));
        let mode = std::fs::metadata(dir.path().join("b3-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_half_pair_or_a_foreign_certificate_is_an_error_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        init(&config(&["s1"]), dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("s1-key.pem")).unwrap();
        let error = init(&config(&["s1"]), dir.path()).unwrap_err();
        assert!(matches!(error, PkiError::HalfPair { .. }), "{error}");

        let other = tempfile::tempdir().unwrap();
        init(&config(&["s1"]), other.path()).unwrap();
        std::fs::copy(other.path().join("s1.pem"), dir.path().join("s1.pem")).unwrap();
        std::fs::copy(
            other.path().join("s1-key.pem"),
            dir.path().join("s1-key.pem"),
        )
        .unwrap();
        let error = init(&config(&["s1"]), dir.path()).unwrap_err();
        assert!(matches!(error, PkiError::NotFromCa { .. }), "{error}");
    }

    #[test]
    fn a_certificate_without_one_node_name_names_no_node() {
        assert_eq!(
            verify_peer_node(None, "s1"),
            Err(PeerRefused::NoCertificate)
        );
        let key = KeyPair::generate().unwrap();
        let names = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let cert = CertificateParams::new(names).unwrap();
            cert.self_signed(&key).unwrap().der().clone()
        };
        let plain = names(&["localhost", "s1.node.portico.example"]);
        assert_eq!(peer_node_name(&[plain]), Err(PeerRefused::NoNodeName));
        let two = names(&["s1.node.portico", "d2.node.portico"]);
        assert_eq!(peer_node_name(&[two]), Err(PeerRefused::SeveralNodeNames));
        assert_eq!(
            peer_node_name(&[CertificateDer::from(vec![0x30, 0x05])]),
            Err(PeerRefused::Malformed)
        );
        let mut trailing = names(&["s1.node.portico"]).to_vec();
        trailing.push(0);
        assert_eq!(
            peer_node_name(&[CertificateDer::from(trailing)]),
            Err(PeerRefused::Malformed)
        );
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        init(&config(&["s1"]), dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        std::fs::copy(dir.path().join("s1-key.pem"), dir.path().join("ca-key.pem")).unwrap();
        let error = init(&config(&["s1", "d2"]), dir.path()).unwrap_err();
        assert!(
            matches!(&error, PkiError::Invalid { path, .. } if path.ends_with("ca-key.pem")),
            "{error}"
        );
        assert!(!dir.path().join("d2.pem").exists());
    }

    #[test]
    fn node_names_that_are_no_dns_label_or_collide_with_files_are_refused() {
        for name in ["ca", "s1-key", "S1", "a.b", "-a", "a_b", "../x"] {
            assert!(check_node_name(name).is_err(), "{name}");
        }
        for name in ["s1", "mail-2", "a"] {
            assert!(check_node_name(name).is_ok(), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            init(&config(&["s1", "ca"]), dir.path()),
            Err(PkiError::UnusableNodeName(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
