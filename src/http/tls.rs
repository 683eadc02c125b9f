//! The HTTPS listener's certificate: PEM files read at start and again on every reload
//! (`SIGHUP`), so a renewed certificate takes effect without a restart. A reload that
//! cannot read the files keeps the certificate in use. HTTP/2 is offered by ALPN.

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// Why a certificate could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: cannot read a PEM certificate chain: {1}")]
    Cert(PathBuf, String),
    #[error("{0}: no certificate in the file")]
    NoCert(PathBuf),
    #[error("{0}: cannot read a PEM private key: {1}")]
    Key(PathBuf, String),
    #[error("the certificate and key do not make a usable TLS configuration: {0}")]
    Config(String),
}

/// The TLS settings in force; swapped whole by a reload.
#[derive(Debug)]
pub struct TlsCertificate {
    current: ArcSwap<ServerConfig>,
}

impl TlsCertificate {
    /// Reads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(TlsCertificate {
            current: ArcSwap::new(server_config(cert, key)?),
        })
    }

    /// Reads the files again; on failure the certificate in use stays (and the error is
    /// returned for the log).
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        match server_config(cert, key) {
            Ok(config) => {
                self.current.store(config);
                info!(cert = %cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "TLS certificate not reloaded; keeping the one in use");
                Err(e)
            }
        }
    }

    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert(cert.to_owned(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(cert.to_owned(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key(key.to_owned(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
