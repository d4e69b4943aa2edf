//! The audit trail: who did what to which patient's data, when, from where, and how it ended.
//! Every access to patient data writes one event. Events are append-only (the table refuses
//! updates and deletes) and hash-chained: each event's hash covers the previous hash and the
//! event's own fields. The hash is an HMAC-SHA256 under the archive's audit key (derived from
//! its master key), so someone who can write the database file and drop the triggers still
//! cannot recompute the chain after changing, inserting or removing an event: [`verify`] names
//! the first event that breaks it. Trails written before the chain was keyed hold plain SHA-256
//! hashes; they verify as they are, and only before the first keyed event.
use hmac::{Hmac, Mac};
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

/// `s` cut to `max` characters, the last one an ellipsis when anything was cut. A NUL becomes
/// U+FFFD: no text column of PostgreSQL holds one, and the chain's hash must cover what is kept.
pub fn capped(s: &str, max: usize) -> String {
    let clean;
    let s = if s.contains('\0') {
        clean = s.replace('\0', "\u{FFFD}");
        clean.as_str()
    } else {
        s
    };
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

/// What a keyed hash starts with: the rest is the HMAC-SHA256 in hex. An unkeyed (older) hash
/// is bare hex.
pub const KEYED_PREFIX: &str = "hmac:";

/// The secret the chain is keyed with: derived from the archive's master key for this use
/// alone, and never stored beside the trail.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl AuditKey {
    pub fn from_bytes(key: [u8; 32]) -> AuditKey {
        AuditKey(key)
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// The bytes a chain hash covers: `prev` and the event's fields, each length-prefixed so no two
/// different events can serialise to the same bytes.
fn chained_bytes(prev: &str, event: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
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
    out
}

/// The unkeyed chain hash of `event` following `prev`, as trails written before the chain was
/// keyed hold it: anyone can recompute it, so it is checked only where such a trail begins.
pub fn chain_hash(prev: &str, event: &AuditEvent) -> String {
    hex::encode(Sha256::digest(chained_bytes(prev, event)))
}

/// The keyed chain hash of `event` following `prev`: [`KEYED_PREFIX`] and the HMAC-SHA256 under
/// `key`.
pub fn keyed_chain_hash(key: &AuditKey, prev: &str, event: &AuditEvent) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(&chained_bytes(prev, event));
    format!("{KEYED_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// The hash a new event following `prev` gets: keyed when the archive's key is at hand (every
/// archive opened whole); unkeyed only where an engine is opened alone, without the key.
pub fn next_hash(key: Option<&AuditKey>, prev: &str, event: &AuditEvent) -> String {
    match key {
        Some(key) => keyed_chain_hash(key, prev, event),
        None => chain_hash(prev, event),
    }
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

/// Checks the chain in id order, keyed hashes under `key`. Unkeyed hashes are accepted only
/// before the first keyed one: once the chain is keyed it stays keyed, so an event rewritten
/// with a plain SHA-256 (all its changer can compute) breaks it. Without the key a keyed event
/// cannot be checked, and is named as such.
pub fn verify(key: Option<&AuditKey>, events: impl IntoIterator<Item = StoredEvent>) -> Verdict {
    let mut prev = GENESIS.to_string();
    let mut keyed = false;
    let mut n = 0;
    for e in events {
        if e.prev_hash != prev {
            return Verdict::Broken {
                id: e.id,
                reason: "its previous-hash does not match the event before it (an event was removed or inserted)".into(),
            };
        }
        let expected = if e.hash.starts_with(KEYED_PREFIX) {
            let Some(key) = key else {
                return Verdict::Broken {
                    id: e.id,
                    reason: "its hash is keyed and the audit key is not at hand".into(),
                };
            };
            keyed = true;
            keyed_chain_hash(key, &prev, &e.event)
        } else if keyed {
            return Verdict::Broken {
                id: e.id,
                reason: "its hash is unkeyed where the chain is keyed (the event was rewritten)"
                    .into(),
            };
        } else {
            chain_hash(&prev, &e.event)
        };
        if expected != e.hash {
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

    fn key() -> AuditKey {
        AuditKey::from_bytes([7; 32])
    }

    fn chain(n: usize) -> Vec<StoredEvent> {
        chain_from(GENESIS, 0, n, Some(&key()))
    }

    /// `n` events with ids from `first_id + 1`, chained from `prev`.
    fn chain_from(prev: &str, first_id: i64, n: usize, key: Option<&AuditKey>) -> Vec<StoredEvent> {
        let mut prev = prev.to_string();
        (0..n)
            .map(|i| {
                let event = AuditEvent::now(&format!("user{i}"), "admin", "test", Outcome::Success)
                    .detail(format!("{i}"));
                let hash = next_hash(key, &prev, &event);
                let e = StoredEvent {
                    id: first_id + i as i64 + 1,
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
        assert_eq!(
            verify(Some(&key()), chain(5)),
            Verdict::Intact { events: 5 }
        );
        let mut changed = chain(5);
        changed[2].event.actor = "mallory".into();
        assert!(matches!(
            verify(Some(&key()), changed),
            Verdict::Broken { id: 3, .. }
        ));
        let mut removed = chain(5);
        removed.remove(1);
        assert!(matches!(
            verify(Some(&key()), removed),
            Verdict::Broken { id: 3, .. }
        ));
        let mut moved = chain(3);
        moved[0].event.at += 1;
        assert!(matches!(
            verify(Some(&key()), moved),
            Verdict::Broken { id: 1, .. }
        ));
    }

    #[test]
    fn an_unkeyed_trail_verifies_and_the_keyed_chain_continues_it() {
        let mut trail = chain_from(GENESIS, 0, 3, None);
        let last = trail.last().unwrap().hash.clone();
        trail.extend(chain_from(&last, 3, 3, Some(&key())));
        assert_eq!(
            verify(Some(&key()), trail.clone()),
            Verdict::Intact { events: 6 }
        );
        // unkeyed hashes are bare SHA-256, keyed ones carry the prefix
        assert!(!trail[2].hash.starts_with(KEYED_PREFIX));
        assert!(trail[3].hash.starts_with(KEYED_PREFIX));
    }

    #[test]
    fn a_changer_without_the_key_cannot_recompute_the_chain() {
        // Edited, then every hash from there recomputed in plain SHA-256: the keyed chain does
        // not take unkeyed events back.
        let mut trail = chain(5);
        trail[2].event.actor = "mallory".into();
        let mut prev = trail[1].hash.clone();
        for e in &mut trail[2..] {
            e.prev_hash = prev.clone();
            e.hash = chain_hash(&prev, &e.event);
            prev = e.hash.clone();
        }
        assert!(matches!(
            verify(Some(&key()), trail.clone()),
            Verdict::Broken { id: 3, .. }
        ));
        // The same under another key, prefix and all.
        let other = AuditKey::from_bytes([8; 32]);
        let mut prev = trail[1].hash.clone();
        for e in &mut trail[2..] {
            e.prev_hash = prev.clone();
            e.hash = keyed_chain_hash(&other, &prev, &e.event);
            prev = e.hash.clone();
        }
        assert!(matches!(
            verify(Some(&key()), trail.clone()),
            Verdict::Broken { id: 3, .. }
        ));
        assert!(matches!(
            verify(None, chain(2)),
            Verdict::Broken { id: 1, .. }
        ));
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = AuditEvent::now("ab", "c", "x", Outcome::Success);
        let mut b = a.clone();
        b.actor = "a".into();
        b.role = "bc".into();
        assert_ne!(chain_hash(GENESIS, &a), chain_hash(GENESIS, &b));
        assert_ne!(
            keyed_chain_hash(&key(), GENESIS, &a),
            keyed_chain_hash(&key(), GENESIS, &b)
        );
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
        assert_eq!(capped("a\0b", 8), "a\u{FFFD}b");
        assert_eq!(capped("exactly8", 8), "exactly8");
        assert_eq!(capped("nine char", 8), "nine ch…");
    }
}
