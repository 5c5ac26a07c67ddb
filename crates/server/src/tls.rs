//! TLS for client listeners: load the node's certificate, or make a self-signed one on
//! first start and reuse it after.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use portico_cluster::TlsSettings;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        data_dir.join(path)
    }
}

/// Builds the acceptor for the node's client listeners.
pub fn acceptor(settings: &TlsSettings, data_dir: &Path) -> anyhow::Result<TlsAcceptor> {
    let cert_path = resolve(data_dir, &settings.cert);
    let key_path = resolve(data_dir, &settings.key);
    if !cert_path.exists() && !key_path.exists() {
        if !settings.self_signed {
            bail!(
                "no TLS certificate at {} and tls.self_signed is off",
                cert_path.display()
            );
        }
        write_self_signed(&cert_path, &key_path)?;
    }
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading certificate {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn write_self_signed(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).context("making a certificate")?;
    for path in [cert_path, key_path] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(cert_path, generated.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "made a self-signed certificate");
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::default();
        acceptor(&settings, dir.path()).unwrap();
        let first = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        acceptor(&settings, dir.path()).unwrap();
        assert_eq!(
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
        let err = acceptor(&settings, dir.path()).err().unwrap().to_string();
        assert!(err.contains("no TLS certificate"), "{err}");
    }
}
