//! The local patient key: who a patient is in the words of one hospital. A person is a cluster
//! of such keys (ARCHITECTURE.md, Identity).

use serde::{Deserialize, Serialize};

/// A local patient key: PatientID under a normalised issuer ([`local_issuer`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalKey {
    pub issuer: String,
    pub patient_id: String,
}

/// The issuer part of the local patient key: IssuerOfPatientID, upper-cased with runs of
/// space folded; when absent, the AE title that sent the instance, else "LOCAL".
pub fn local_issuer(issuer: Option<&str>, source_ae: Option<&str>) -> String {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    };
    issuer
        .map(norm)
        .filter(|s| !s.is_empty())
        .or_else(|| source_ae.map(norm).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "LOCAL".to_string())
}

/// Who names the issuer of the local keys of an instance: the door it came through, not the
/// file. A file says whatever its sender wrote; a key under another hospital's issuer is a
/// claim to be that hospital's patient, so only a source trusted for it may make it (the
/// operator's import, a DIMSE client configured with `trust_issuer`, an administrator's
/// upload). Every other source names its keys under its own issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IssuerSource {
    /// The door's own issuer (a client's or an account's configured one, else its AE title or
    /// user name). None: the file meta's Source AE, else "LOCAL", as for the operator's import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The data set's IssuerOfPatientID (and those of OtherPatientIDsSequence) is believed
    /// when present.
    #[serde(default)]
    pub trusted: bool,
}

impl IssuerSource {
    /// The operator's import, and every instance stored before the door was kept: the data
    /// set's issuer, else the file's Source AE, else "LOCAL".
    pub fn operator() -> IssuerSource {
        IssuerSource {
            issuer: None,
            trusted: true,
        }
    }

    /// A door not trusted for issuers: every key is under `issuer`.
    pub fn untrusted(issuer: &str) -> IssuerSource {
        IssuerSource {
            issuer: Some(issuer.to_string()),
            trusted: false,
        }
    }

    /// The issuer of a key that a file states with `stated` (its IssuerOfPatientID, if any)
    /// and whose file meta names `source_ae`: what a file says is read only from a trusted
    /// source.
    pub fn issuer_of(&self, stated: Option<&str>, source_ae: Option<&str>) -> String {
        if !self.trusted {
            return local_issuer(None, Some(self.issuer.as_deref().unwrap_or("")));
        }
        local_issuer(stated, self.issuer.as_deref().or(source_ae))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_source_is_believed_for_an_issuer() {
        let operator = IssuerSource::operator();
        assert_eq!(operator.issuer_of(Some("hosp b"), Some("CT1")), "HOSP B");
        assert_eq!(operator.issuer_of(None, Some("CT1")), "CT1");
        let modality = IssuerSource::untrusted("hosp_a");
        assert_eq!(modality.issuer_of(Some("HOSP_B"), Some("CT1")), "HOSP_A");
        assert_eq!(modality.issuer_of(None, Some("CT1")), "HOSP_A");
        assert_eq!(
            IssuerSource::untrusted("").issuer_of(Some("X"), None),
            "LOCAL"
        );
        let trusted = IssuerSource {
            issuer: Some("HOSP_A".into()),
            trusted: true,
        };
        assert_eq!(trusted.issuer_of(Some("HOSP_B"), Some("CT1")), "HOSP_B");
        assert_eq!(trusted.issuer_of(Some(" "), Some("CT1")), "HOSP_A");
    }

    #[test]
    fn issuer_falls_back_to_source() {
        assert_eq!(local_issuer(Some(" hosp  a "), Some("CT1")), "HOSP A");
        assert_eq!(local_issuer(Some(""), Some("ct1 ")), "CT1");
        assert_eq!(local_issuer(None, None), "LOCAL");
    }
}
