//! The certificates the doors present (HTTPS, DICOM TLS) and the ones they trust: PEM files
//! named in the configuration, read once into rustls configurations (the `ring` provider, the
//! BCP 195 protocol versions). For a trial or a closed network the HTTP door can present a
//! certificate the archive makes itself on first start, kept beside the data.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file; `key` names the setting in errors.
fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{key} {}: no certificate in the file", path.display());
    }
    Ok(certs)
}

/// A server configuration from the certificate chain and key at `certificate` and
/// `private_key` (settings `{prefix}.tls_certificate` and `{prefix}.tls_private_key`). With
/// `client_ca`, a client must present a certificate issued by one of its CAs (mutual TLS);
/// `alpn` lists the application protocols offered, most preferred first.
pub fn server_config(
    prefix: &str,
    certificate: &Path,
    private_key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = certificates(certificate, &format!("{prefix}.tls_certificate"))?;
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| anyhow::anyhow!("{prefix}.tls_private_key {}: {e}", private_key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca, &format!("{prefix}.tls_client_ca"))? {
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("{prefix}.tls_client_ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| anyhow::anyhow!("{prefix}.tls_client_ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow::anyhow!(
            "{prefix}.tls_certificate and {prefix}.tls_private_key do not fit together: {e}"
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration trusting the CA certificates in `ca` (outbound DICOM TLS), presenting
/// the archive's own certificate and key when given (peers that ask for mutual TLS).
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca, "dimse.tls_peer_ca")? {
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("dimse.tls_peer_ca {}: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = certificates(cert, "dimse.tls_certificate")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("dimse.tls_private_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| anyhow::anyhow!("dimse.tls_certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// The certificate and key the archive made for itself under `dir` (made now when absent),
/// valid for `names` (host names and IP addresses). Returns their paths.
pub fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert_path, key_path) = (dir.join("certificate.pem"), dir.join("private-key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| anyhow::anyhow!("making a self-signed certificate: {e}"))?;
    write_private(&key_path, made.key_pair.serialize_pem().as_bytes())?;
    // The certificate last: its presence means the pair is whole.
    std::fs::write(&cert_path, made.cert.pem())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The SHA-256 fingerprint of the first certificate in a PEM file, as colon-separated hex (what
/// browsers and `openssl x509 -fingerprint -sha256` show), for pinning a self-signed one.
pub fn fingerprint(certificate: &Path) -> anyhow::Result<String> {
    let certs = certificates(certificate, "certificate")?;
    use sha2::Digest;
    Ok(sha2::Sha256::digest(certs[0].as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}
