//! DICOM TLS (PS3.15 B.1, the BCP 195 profiles) for the DIMSE door: the server certificate and
//! key come from PEM files named in the configuration; rustls with the `ring` provider does the
//! rest. Peers authenticate the archive by its certificate; AE titles and the allowlist still
//! apply inside the encrypted association.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub fn server_config(
    certificate: &Path,
    private_key: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("dimse.tls_certificate {}: {e}", certificate.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "dimse.tls_certificate {}: no certificate in the file",
            certificate.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| anyhow::anyhow!("dimse.tls_private_key {}: {e}", private_key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        anyhow::anyhow!("dimse.tls_certificate and dimse.tls_private_key do not fit together: {e}")
    })?;
    Ok(Arc::new(config))
}
