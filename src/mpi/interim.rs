//! A minimal matcher the persistence layer is built against while the full engine is written.

use super::{name_key, phonetic, Decision, Identity};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Normalised {
    pub family: String,
    pub given: String,
    pub birth_date: String,
    pub sex: String,
}

impl Normalised {
    pub fn new(i: &Identity) -> Normalised {
        Normalised {
            family: name_key(i.family_name.trim()),
            given: name_key(i.given_name.trim()),
            birth_date: i.birth_date.trim().to_string(),
            sex: i.sex.trim().to_uppercase(),
        }
    }
    pub fn block_keys(&self) -> Vec<String> {
        let mut keys = vec![];
        if !self.birth_date.is_empty() {
            keys.push(format!("ds:{}{}", self.birth_date, self.sex));
        }
        if !self.family.is_empty() {
            keys.push(format!(
                "fy:{}{}",
                phonetic(&self.family),
                self.birth_date.get(..4).unwrap_or("")
            ));
        }
        keys
    }
}

impl Identity {
    pub fn from_dicom(
        issuer: &str,
        patient_id: &str,
        patient_name: &str,
        birth_date: &str,
        sex: &str,
    ) -> Identity {
        let alphabetic = patient_name.split('=').next().unwrap_or("");
        let mut parts = alphabetic.split('^');
        Identity {
            issuer: issuer.into(),
            patient_id: patient_id.into(),
            family_name: parts.next().unwrap_or("").into(),
            given_name: parts.next().unwrap_or("").into(),
            middle_name: parts.next().unwrap_or("").into(),
            birth_date: birth_date.into(),
            sex: sex.into(),
            ..Identity::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Model {
    pub upper: f64,
    pub lower: f64,
}

impl Model {
    pub fn estimate(_records: &[Normalised]) -> Model {
        Model::default()
    }
    pub fn score(&self, a: &Normalised, b: &Normalised) -> f64 {
        let mut s = 0.0;
        for (x, y) in [
            (&a.family, &b.family),
            (&a.given, &b.given),
            (&a.birth_date, &b.birth_date),
            (&a.sex, &b.sex),
        ] {
            if !x.is_empty() && x == y {
                s += 4.0
            } else if !x.is_empty() && !y.is_empty() {
                s -= 4.0
            }
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoredCandidate {
    pub person: i64,
    pub score: f64,
}

#[derive(Debug, Clone)]
pub struct MatchOutcome {
    pub decision: Decision,
    pub person: Option<i64>,
    pub scored: Vec<ScoredCandidate>,
}

pub fn decide(
    model: &Model,
    incoming: &Normalised,
    candidates: &[(i64, Normalised)],
) -> MatchOutcome {
    let mut best: std::collections::HashMap<i64, f64> = Default::default();
    for (p, n) in candidates {
        let s = model.score(incoming, n);
        let e = best.entry(*p).or_insert(f64::MIN);
        *e = e.max(s);
    }
    let mut scored: Vec<ScoredCandidate> = best
        .into_iter()
        .map(|(person, score)| ScoredCandidate { person, score })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    let above: Vec<_> = scored.iter().filter(|c| c.score >= 12.0).collect();
    let (decision, person) = match above.len() {
        1 => (Decision::Linked, Some(above[0].person)),
        0 if scored.first().is_some_and(|c| c.score >= 4.0) => (Decision::Review, None),
        0 => (Decision::New, None),
        _ => (Decision::Review, None),
    };
    MatchOutcome {
        decision,
        person,
        scored,
    }
}
