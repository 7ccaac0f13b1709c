//! HTTPS on hub's own listener: the certificate and key from `webhook.tls`, checked before use.
//!
//! The files are read at start, at `hub check-config`, and again at every reload, so a renewed
//! certificate is served from the next connection on without a restart. A certificate that has
//! expired, is not valid yet, or does not belong to the key is refused with a reason, since a
//! listener that starts with it would only fail every sender's handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_cert::der::Decode;

/// `webhook.tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate first, then any intermediates.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{0} holds no certificate (a PEM file with BEGIN CERTIFICATE)")]
    NoCertificate(PathBuf),
    #[error("{path}: cannot read the certificate: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path}: the certificate expired on {date}")]
    Expired { path: PathBuf, date: String },
    #[error("{path}: the certificate is not valid before {date}")]
    NotYetValid { path: PathBuf, date: String },
    #[error("{key} is not the key of the certificate in {cert}: {detail}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("cannot use the certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads and checks the pair, and makes the server side of TLS from it (HTTP/1.1 over TLS 1.2
/// or 1.3, ring's algorithms).
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let read = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let cert_pem = read_small(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| read(&files.cert, e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    };
    check_dates(&files.cert, leaf, SystemTime::now())?;
    let key =
        PrivateKeyDer::from_pem_slice(&read_small(&files.key)?).map_err(|e| read(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Read {
            path: files.key.clone(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A file of the pair, read with a cap (`"key": "/dev/zero"` is an error, not a 2 GiB read).
fn read_small(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::small_file::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The certificates of a CA file (`store.ca_file`), read with a cap; at least one.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read_small(path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The leaf must be valid now.
fn check_dates(path: &Path, der: &CertificateDer, now: SystemTime) -> Result<(), TlsError> {
    let cert =
        x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| TlsError::BadCertificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let validity = &cert.tbs_certificate.validity;
    let (from, until) = (
        validity.not_before.to_system_time(),
        validity.not_after.to_system_time(),
    );
    let show = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    if now > until {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            date: show(until),
        });
    }
    if now < from {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            date: show(from),
        });
    }
    Ok(())
}
