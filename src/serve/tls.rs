//! TLS for the API: a self-signed certificate generated once (the key created 0600 with
//! `O_EXCL`), whose SHA-256 fingerprint the CLI records when it installs a manager and pins on
//! every connection — no CA to run, and nobody between the operator and the manager can answer
//! in its place.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
#[error("TLS {what}: {message}")]
pub struct TlsError {
    pub what: String,
    pub message: String,
}

fn tls_err(what: impl Into<String>, e: impl std::fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        message: e.to_string(),
    }
}

/// `sha256:<hex>` of a certificate (DER).
pub fn fingerprint(der: &[u8]) -> String {
    let sum = Sha256::digest(der);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate and key in `dir`, generated (for `names`) when absent.
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| tls_err(dir.display().to_string(), e))?;
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let made = rcgen::generate_simple_self_signed(sans)
        .map_err(|e| tls_err("generating the certificate", e))?;
    crate::state::write_atomic(&key, made.key_pair.serialize_pem().as_bytes())
        .map_err(|e| tls_err(key.display().to_string(), e))?;
    crate::state::write_atomic(&cert, made.cert.pem().as_bytes())
        .map_err(|e| tls_err(cert.display().to_string(), e))?;
    Ok((cert, key))
}

fn read_cert(path: &Path) -> Result<rustls_pki_types::CertificateDer<'static>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| tls_err(path.display().to_string(), e))
}

/// The fingerprint of the certificate file at `path`.
pub fn file_fingerprint(path: &Path) -> Result<String, TlsError> {
    Ok(fingerprint(&read_cert(path)?))
}

/// The server side: rustls with the certificate and key files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    let der = read_cert(cert)?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(key.display().to_string(), e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("setup", e))?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| tls_err("certificate", e))?;
    Ok(Arc::new(config))
}

/// Accepts exactly the certificate whose fingerprint was recorded (and checks, as any TLS
/// client does, that the server holds its key).
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is not the one recorded ({}); a different server answers at that address",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS client that talks only to the server holding the certificate `fingerprint`.
pub fn pinned_client(
    fingerprint: &str,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, TlsError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("setup", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider,
        }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(timeout)
        .build()
        .map_err(|e| tls_err("client", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_private_and_the_pair_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let tls = dir.path().join("tls");
        let (cert, key) = load_or_create(&tls, &["10.0.0.5".into()]).expect("create");
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = file_fingerprint(&cert).expect("fingerprint");
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        load_or_create(&tls, &[]).expect("again");
        assert_eq!(
            file_fingerprint(&cert).expect("fp"),
            first,
            "kept, not regenerated"
        );
        server_config(&cert, &key).expect("server config");
    }
}
