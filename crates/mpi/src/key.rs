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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_falls_back_to_source() {
        assert_eq!(local_issuer(Some(" hosp  a "), Some("CT1")), "HOSP A");
        assert_eq!(local_issuer(Some(""), Some("ct1 ")), "CT1");
        assert_eq!(local_issuer(None, None), "LOCAL");
    }
}
