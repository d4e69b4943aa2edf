//! The decision for one incoming record against the persons its candidates belong to: link to
//! one person, create a new one, or leave it to a person to review. A record never merges two
//! persons on its own: if it matches two, it goes to review.

use super::{Decision, Model, Normalised};
use serde::Serialize;

/// One candidate person and the best match weight of any of its records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredCandidate {
    pub person: i64,
    pub score: f64,
}

/// What [`decide`] concluded. `person` is the person linked to, and only set for
/// [`Decision::Linked`]; `scored` lists every candidate person, best first, for a reviewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchOutcome {
    pub decision: Decision,
    pub person: Option<i64>,
    pub scored: Vec<ScoredCandidate>,
}

/// Decides for `incoming` against stored records (several may belong to one person):
/// - a stored record with the same issuer and patient ID is the same local key, so its person
///   is linked unless the demographics say two people (below the lower threshold) or another
///   person also scores above the upper one;
/// - otherwise one person above the upper threshold is linked; two or more is a bridge between
///   persons, sent to review; a best score between the thresholds is sent to review; below the
///   lower one the record is a new person.
pub fn decide(
    model: &Model,
    incoming: &Normalised,
    candidates: &[(i64, Normalised)],
) -> MatchOutcome {
    choose(
        model,
        candidates
            .iter()
            .map(|(p, n)| (*p, model.score(incoming, n), incoming.same_local_key(n))),
    )
}

/// The decision from scored candidates: (person, match weight, same local key).
pub(crate) fn choose(
    model: &Model,
    candidates: impl IntoIterator<Item = (i64, f64, bool)>,
) -> MatchOutcome {
    let mut scored: Vec<ScoredCandidate> = Vec::new();
    let mut local: Vec<i64> = Vec::new();
    for (person, score, same_key) in candidates {
        if same_key && !local.contains(&person) {
            local.push(person);
        }
        match scored.iter_mut().find(|c| c.person == person) {
            Some(c) => c.score = c.score.max(score),
            None => scored.push(ScoredCandidate { person, score }),
        }
    }
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.person.cmp(&b.person)));
    // One rule serves both ways to a person: the person is linked when its score reaches the
    // bar and no other person reaches the upper threshold (a bridge between two persons is for
    // a person to decide); otherwise `short` is the decision.
    let link = |person: i64, bar: f64, short: Decision| {
        let reaches = scored.iter().any(|c| c.person == person && c.score >= bar);
        let bridge = scored
            .iter()
            .any(|c| c.person != person && c.score >= model.upper);
        if reaches && !bridge {
            (Decision::Linked, Some(person))
        } else {
            (short, None)
        }
    };
    let (decision, person) = match (local.as_slice(), scored.first()) {
        // The person of the same local key needs only demographics that do not say two people;
        // when they do, a person reviews rather than the key starting a second person.
        ([p], _) => link(*p, model.lower, Decision::Review),
        ([_, _, ..], _) => (Decision::Review, None),
        // Otherwise the best person must reach the upper threshold; between the two thresholds
        // a person reviews.
        ([], Some(best)) if best.score >= model.lower => {
            link(best.person, model.upper, Decision::Review)
        }
        ([], _) => (Decision::New, None),
    };
    MatchOutcome {
        decision,
        person,
        scored,
    }
}

/// The decision once the sender's own word is heard: OtherPatientIDsSequence says the incoming
/// key is the same patient as other keys, and `asserted` holds the persons those keys belong to.
/// None asserted: the score decides. One asserted: linked to it, unless the score links another
/// person, which goes to review. Several asserted: the record would bridge persons, so review.
/// Returns the decision, the person linked to, and the reason recorded in the history.
pub fn decide_with_other_ids(
    outcome: &MatchOutcome,
    asserted: &std::collections::BTreeSet<i64>,
) -> (Decision, Option<i64>, &'static str) {
    match (asserted.len(), outcome.decision, outcome.person) {
        (0, d, p) => (d, p, "score"),
        (1, Decision::Linked, Some(p)) if !asserted.contains(&p) => {
            (Decision::Review, None, "other_ids_disagree")
        }
        (1, _, _) => (Decision::Linked, asserted.first().copied(), "other_ids"),
        _ => (Decision::Review, None, "other_ids_bridge"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn n(issuer: &str, pid: &str, f: &str, g: &str, d: &str) -> Normalised {
        Normalised::new(&Identity {
            issuer: issuer.into(),
            patient_id: pid.into(),
            family_name: f.into(),
            given_name: g.into(),
            birth_date: d.into(),
            sex: "M".into(),
            postcode: "02139".into(),
            ..Identity::default()
        })
    }

    #[test]
    fn one_person_above_the_threshold_is_linked() {
        let model = Model::default();
        let incoming = n("B", "9", "Smith", "John", "19650310");
        let out = decide(
            &model,
            &incoming,
            &[
                (1, n("A", "1", "Smith", "John", "19650310")),
                (1, n("C", "7", "Smyth", "John", "19650310")),
                (2, n("A", "2", "Jones", "Mary", "19720101")),
            ],
        );
        assert_eq!(out.decision, Decision::Linked);
        assert_eq!(out.person, Some(1));
        assert_eq!(out.scored.len(), 2);
        assert_eq!(out.scored[0].person, 1);
        assert!(out.scored[0].score > out.scored[1].score);
    }

    #[test]
    fn a_record_matching_two_persons_is_a_bridge_sent_to_review() {
        let model = Model::default();
        let incoming = n("B", "9", "Smith", "John", "19650310");
        let out = decide(
            &model,
            &incoming,
            &[
                (1, n("A", "1", "Smith", "John", "19650310")),
                (2, n("C", "5", "Smith", "John", "19650310")),
            ],
        );
        assert!(out.scored.iter().all(|c| c.score >= model.upper));
        assert_eq!(out.decision, Decision::Review);
        assert_eq!(out.person, None);
    }

    #[test]
    fn nobody_close_is_a_new_person() {
        let model = Model::default();
        let out = decide(
            &model,
            &n("B", "9", "Smith", "John", "19650310"),
            &[(2, n("A", "2", "Jones", "Mary", "19720101"))],
        );
        assert_eq!(out.decision, Decision::New);
        let out = decide(&model, &n("B", "9", "Smith", "John", "19650310"), &[]);
        assert_eq!((out.decision, out.scored.len()), (Decision::New, 0));
    }

    #[test]
    fn the_same_local_key_links_unless_the_demographics_disagree() {
        let model = Model::default();
        let incoming = n("A", "1", "Smith", "Jon", "19650301");
        let out = decide(
            &model,
            &incoming,
            &[(4, n("A", "1", "Smith", "John", "19650310"))],
        );
        assert_eq!((out.decision, out.person), (Decision::Linked, Some(4)));
        let out = decide(
            &model,
            &incoming,
            &[(4, n("A", "1", "Jones", "Mary", "19991231"))],
        );
        assert_eq!(out.decision, Decision::Review);
    }
}
