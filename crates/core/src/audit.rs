//! The audit trail: who did what to which patient's data, when, from where, and how it ended.
//! Every access to patient data writes one event. Events are append-only (the table refuses
//! updates and deletes) and hash-chained: each event's hash is SHA-256 over the previous hash and
//! the event's own fields, so tampering with any stored event — even by someone who can write
//! the database file and drop the triggers — breaks the chain at that event, and
//! [`verify`] names it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first event chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub outcome: Outcome,
    pub remote: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Longest actor, role, action, remote address, patient id or study UID an event keeps, in
/// characters: these fields often carry what a caller typed (a user name at sign-in, say), and
/// the trail is kept forever, so no caller can make one event large.
pub const MAX_FIELD_CHARS: usize = 128;
/// Longest detail an event keeps, in characters (it may quote a request path or a reason).
pub const MAX_DETAIL_CHARS: usize = 1024;

/// `s` cut to `max` characters, the last one an ellipsis when anything was cut.
pub fn capped(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s.chars().count() > max => format!("{}…", &s[..i]),
        _ => s.to_string(),
    }
}

impl AuditEvent {
    /// An event stamped now. Every text field is capped ([`MAX_FIELD_CHARS`],
    /// [`MAX_DETAIL_CHARS`]) before it is kept.
    pub fn now(actor: &str, role: &str, action: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            at: crate::clock::now_ms(),
            actor: capped(actor, MAX_FIELD_CHARS),
            role: capped(role, MAX_FIELD_CHARS),
            action: capped(action, MAX_FIELD_CHARS),
            patient_id: None,
            study_uid: None,
            outcome,
            remote: None,
            detail: None,
        }
    }

    pub fn patient(mut self, patient_id: Option<String>, study_uid: Option<String>) -> Self {
        let cap = |s: String| capped(&s, MAX_FIELD_CHARS);
        self.patient_id = patient_id.filter(|s| !s.is_empty()).map(cap);
        self.study_uid = study_uid.filter(|s| !s.is_empty()).map(cap);
        self
    }

    pub fn remote(mut self, remote: impl ToString) -> Self {
        self.remote = Some(capped(&remote.to_string(), MAX_FIELD_CHARS));
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(capped(&detail.into(), MAX_DETAIL_CHARS));
        self
    }
}

/// The chain hash of `event` following `prev`. Fields are length-prefixed so no two different
/// events can serialise to the same bytes.
pub fn chain_hash(prev: &str, event: &AuditEvent) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(prev);
    field(&event.at.to_string());
    field(&event.actor);
    field(&event.role);
    field(&event.action);
    field(event.patient_id.as_deref().unwrap_or("\u{0}"));
    field(event.study_uid.as_deref().unwrap_or("\u{0}"));
    field(event.outcome.as_str());
    field(event.remote.as_deref().unwrap_or("\u{0}"));
    field(event.detail.as_deref().unwrap_or("\u{0}"));
    hex::encode(h.finalize())
}

/// A stored event with its place in the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain first breaks, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { events: u64 },
    Broken { id: i64, reason: String },
}

/// Checks the chain in id order.
pub fn verify(events: impl IntoIterator<Item = StoredEvent>) -> Verdict {
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    for e in events {
        if e.prev_hash != prev {
            return Verdict::Broken {
                id: e.id,
                reason: "its previous-hash does not match the event before it (an event was removed or inserted)".into(),
            };
        }
        if chain_hash(&prev, &e.event) != e.hash {
            return Verdict::Broken {
                id: e.id,
                reason: "its content does not match its hash (the event was changed)".into(),
            };
        }
        prev = e.hash;
        n += 1;
    }
    Verdict::Intact { events: n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<StoredEvent> {
        let mut prev = GENESIS.to_string();
        (0..n)
            .map(|i| {
                let event = AuditEvent::now(&format!("user{i}"), "admin", "test", Outcome::Success)
                    .detail(format!("{i}"));
                let hash = chain_hash(&prev, &event);
                let e = StoredEvent {
                    id: i as i64 + 1,
                    event,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies_and_any_change_is_named() {
        assert_eq!(verify(chain(5)), Verdict::Intact { events: 5 });
        let mut changed = chain(5);
        changed[2].event.actor = "mallory".into();
        assert!(matches!(verify(changed), Verdict::Broken { id: 3, .. }));
        let mut removed = chain(5);
        removed.remove(1);
        assert!(matches!(verify(removed), Verdict::Broken { id: 3, .. }));
        let mut moved = chain(3);
        moved[0].event.at += 1;
        assert!(matches!(verify(moved), Verdict::Broken { id: 1, .. }));
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = AuditEvent::now("ab", "c", "x", Outcome::Success);
        let mut b = a.clone();
        b.actor = "a".into();
        b.role = "bc".into();
        assert_ne!(chain_hash(GENESIS, &a), chain_hash(GENESIS, &b));
    }

    #[test]
    fn caller_supplied_text_is_capped() {
        let long = "é".repeat(5000);
        let e = AuditEvent::now(&long, "admin", "http.login", Outcome::Failure)
            .remote(&long)
            .detail(long.clone());
        assert_eq!(e.actor.chars().count(), MAX_FIELD_CHARS);
        assert!(e.actor.ends_with('…'));
        assert_eq!(e.remote.unwrap().chars().count(), MAX_FIELD_CHARS);
        assert_eq!(e.detail.unwrap().chars().count(), MAX_DETAIL_CHARS);
        assert_eq!(capped("short", 8), "short");
        assert_eq!(capped("exactly8", 8), "exactly8");
        assert_eq!(capped("nine char", 8), "nine ch…");
    }
}
