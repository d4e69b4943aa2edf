//! Person matching for the master person index (layer 0, pure: no storage, no protocol): which
//! local patient keys are one person. It holds the name normalisation the whole archive shares,
//! so that searching and matching agree: a search key ([`name_key`]: upper case, accents folded
//! by the one folding of [`normalise`]) and a phonetic key (Double Metaphone of the family and
//! given names) for fuzzy matching.
//!
//! [`key`] is the local patient key and its issuer rule. Matching goes in four steps, one module
//! each: [`normalise`] puts a record's demographics in one form and gives its blocking keys;
//! [`compare`] grades two records field by field; [`model`] weighs the grades (Fellegi–Sunter,
//! estimated by EM without labels) and holds the thresholds; [`decide`] links an incoming record
//! to a person, makes a new one, or sends it to review, and weighs the sender's own word
//! (OtherPatientIDsSequence). [`batch`] links a whole file at once (`strata mpi link`). Storing
//! persons is the index's job; the HTTP API is the HTTP door's.

use rphonetic::{DoubleMetaphone, Encoder};
use serde::{Deserialize, Serialize};

pub mod batch;
mod block;
pub mod compare;
pub mod decide;
pub mod key;
pub mod model;
pub mod nicknames;
pub mod normalise;

pub use batch::{
    link_batch, link_batch_with_model, read_records, write_links, InputRecord, Malformed,
    ReadRecords,
};
pub use decide::{decide, decide_with_other_ids, MatchOutcome, ScoredCandidate};
pub use key::{local_issuer, IssuerSource, LocalKey};
pub use model::Model;
pub use normalise::Normalised;

/// What can go wrong linking a file of records.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MpiError {
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("writing the output: {0}")]
    Write(String),
}

/// The raw demographics of one local patient key, as a DICOM header or a CSV row gives them.
/// Any field may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    /// The normalised issuer, as the record's source names it ([`IssuerSource`]): the door's
    /// own, or the file's IssuerOfPatientID from a source trusted for it.
    pub issuer: String,
    pub patient_id: String,
    pub family_name: String,
    pub given_name: String,
    pub middle_name: String,
    /// YYYYMMDD as received (may be malformed).
    pub birth_date: String,
    pub sex: String,
    pub street: String,
    pub city: String,
    pub postcode: String,
    pub phone: String,
}

/// What the matcher decided for one incoming identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Linked to an existing person above the upper threshold.
    Linked,
    /// A new person: no candidate above the lower threshold.
    New,
    /// Between the thresholds, or would bridge two persons: a person decides.
    Review,
}

/// The search key of a name: its letters folded as the matcher folds them (upper case, accents
/// dropped, ß → SS), everything else (the `^` between components, spaces, wildcards) kept, so
/// "Müller^Inès" is found as "MULLER^INES".
pub fn name_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        normalise::fold_char(c, |f| out.push(f));
    }
    out
}

/// The phonetic code of one name component; empty for an empty component.
pub fn phonetic(component: &str) -> String {
    let letters: String = name_key(component)
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    if letters.is_empty() {
        return String::new();
    }
    DoubleMetaphone::default().encode(&letters)
}

/// `FAMILY^GIVEN` phonetic codes of a DICOM person name (its alphabetic group), e.g. both
/// "Smith^John" and "SMYTH^JON" give "SM0^JN".
pub fn phonetic_key(person_name: &str) -> String {
    let alphabetic = person_name.split('=').next().unwrap_or("");
    let mut parts = alphabetic.split('^');
    let family = phonetic(parts.next().unwrap_or(""));
    let given = phonetic(parts.next().unwrap_or(""));
    format!("{family}^{given}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_accents_and_spelling() {
        assert_eq!(name_key("Müller^Inès"), "MULLER^INES");
        // decomposed input, letters decomposition leaves whole, and wildcards
        assert_eq!(name_key("Mu\u{308}ller^Ine\u{300}s"), "MULLER^INES");
        assert_eq!(name_key("Weiß^Łucja*"), "WEISS^LUCJA*");
        assert_eq!(name_key("Ærø"), "AERO");
        assert_eq!(phonetic_key("Smith^John"), phonetic_key("SMYTH^JON"));
        assert_eq!(phonetic_key("Müller^Anna"), phonetic_key("Mueller^ANNA"));
        assert_ne!(phonetic_key("Smith^John"), phonetic_key("Jones^John"));
        assert_eq!(phonetic_key("Smith"), format!("{}^", phonetic("Smith")));
        assert_eq!(phonetic(""), "");
    }
}
