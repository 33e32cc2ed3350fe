//! HTTPS: a certificate chain and key (PEM) turned into a rustls server
//! configuration. With it the listener speaks TLS only.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `[server.tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    /// Cheap checks at load: both paths given.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), crate::DetectorError> {
        if self.cert.as_os_str().is_empty() || self.key.as_os_str().is_empty() {
            return Err(setting!("server.tls needs both cert and key (PEM files)"));
        }
        Ok(())
    }

    /// Read the files and build the rustls configuration (TLS 1.2 and 1.3,
    /// ring provider, HTTP/1.1 and HTTP/2 by ALPN).
    ///
    /// # Errors
    /// A message naming the file and the problem.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, crate::DetectorError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| setting!("server.tls.cert {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(setting!("server.tls.cert {}: no certificate in the file", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| setting!("server.tls.key {}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setting!("server.tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| setting!("server.tls: certificate {} and key {} do not make a usable pair: {e}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
