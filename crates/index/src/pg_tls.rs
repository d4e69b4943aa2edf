//! How the index connects to PostgreSQL: in the clear, or over TLS with the server's
//! certificate verified, as the URL's `sslmode` and `sslrootcert` say (libpq's names, so a URL
//! a provider hands out works as given).
//!
//! - no `sslmode`, or `disable`: no TLS (for loopback and private links only);
//! - `prefer`: TLS when the server offers it, else in the clear;
//! - `require`, `verify-ca`, `verify-full`: TLS or no connection.
//!
//! Whenever TLS is used the certificate is verified in full, chain and host name, whatever the
//! mode: an index connection that anyone between could read is not worth encrypting. The roots
//! are `sslrootcert`'s PEM file, or the system's (`sslrootcert=system`, or none given).

use crate::pg::redacted;
use crate::IndexError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// A client connected to `url`.
pub fn connect(url: &str) -> Result<postgres::Client, IndexError> {
    let open_error = |reason: String| IndexError::Open {
        path: redacted(url),
        reason,
    };
    let (config, tls) = parse(url).map_err(open_error)?;
    match tls {
        None => Ok(config.connect(postgres::NoTls)?),
        Some(roots) => {
            let tls = tls_config(&roots).map_err(open_error)?;
            Ok(config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?)
        }
    }
}

/// Where the roots that verify the server come from.
#[derive(Debug, PartialEq)]
enum Roots {
    System,
    File(String),
}

/// The URL as the client library reads it (`sslrootcert` taken out, the verifying modes
/// spelled `require`) and, when TLS may be used, the roots to verify with.
fn parse(url: &str) -> Result<(postgres::Config, Option<Roots>), String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let (mut mode, mut roots) = (None, Roots::System);
    let mut kept = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "sslmode" => mode = Some(v.into_owned()),
            "sslrootcert" if v == "system" => roots = Roots::System,
            "sslrootcert" => roots = Roots::File(v.into_owned()),
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if mode.is_none() && roots == Roots::System && !url.contains("sslrootcert") {
        // nothing of TLS said: the URL as it is
        let config = url.parse::<postgres::Config>().map_err(|e| e.to_string())?;
        return Ok((config, None));
    }
    let tls_mode = match mode.as_deref() {
        None | Some("disable") => None,
        Some("prefer") => Some("prefer"),
        Some("require" | "verify-ca" | "verify-full") => Some("require"),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    parsed.set_query(None);
    if !kept.is_empty() || tls_mode.is_some() {
        let mut q = parsed.query_pairs_mut();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if let Some(m) = tls_mode {
            q.append_pair("sslmode", m);
        }
    }
    let config = parsed
        .as_str()
        .parse::<postgres::Config>()
        .map_err(|e| e.to_string())?;
    Ok((config, tls_mode.map(|_| roots)))
}

/// A TLS client configuration that trusts `roots` alone.
fn tls_config(roots: &Roots) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {path}: no certificate in it"));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(
                    "TLS asked for, and the system has no root certificates: name the server's CA with sslrootcert=<PEM file>"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_are_read_and_the_root_file_taken_out() {
        let (c, roots) = parse("postgres://u:p@db.example:5433/strata").unwrap();
        assert_eq!(roots, None, "no sslmode: in the clear");
        assert_eq!(c.get_ports(), &[5433]);
        let (_, roots) = parse("postgres://u@h/d?sslmode=disable").unwrap();
        assert_eq!(roots, None);
        let (c, roots) = parse(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=strata",
        )
        .unwrap();
        assert_eq!(roots, Some(Roots::File("/etc/ca.pem".into())));
        assert_eq!(c.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(c.get_application_name(), Some("strata"));
        let (c, roots) = parse("postgres://u@h/d?sslmode=prefer&sslrootcert=system").unwrap();
        assert_eq!(roots, Some(Roots::System));
        assert_eq!(c.get_ssl_mode(), postgres::config::SslMode::Prefer);
        let (_, roots) = parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(roots, Some(Roots::System));
        let e = parse("postgres://u@h/d?sslmode=allow").unwrap_err();
        assert!(e.contains("sslmode=allow"), "{e}");
    }

    #[test]
    fn a_root_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "nothing here\n").unwrap();
        let e = tls_config(&Roots::File(path.display().to_string())).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = tls_config(&Roots::File("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
