//! Access letters: the patient's own copy, with credentials the provider hands over. An
//! authorised user issues a letter for a person: an access code, a separate passcode and a
//! validity (90 days unless said otherwise, at most the retention period of an adult's
//! record). With the code, the patient (or a guardian) sees the studies a patient account
//! bound to that person would see, with no account of their own; with the passcode too, they
//! take them away as the media ZIP encrypted under the passcode in OpenPGP
//! ([`crate::media::openpgp`]), which `gpg --decrypt` opens.
//!
//! The code is 100 random bits (20 characters of Crockford's base 32, read forgivingly:
//! case, dashes and spaces ignored, O read as 0, I and L as 1); only its SHA-256 is kept,
//! which is enough for a value that cannot be guessed. The passcode is 80 bits (16 characters
//! without look-alikes) and is kept only as an argon2 hash: the archive needs it once more to
//! encrypt a download, so the patient types it then, and a mistyped one is refused before
//! anything is sent. Both are shown once, on the printed letter. How often codes may be tried
//! is the door's part (per address and in all), as is the audit of every step.

use crate::auth::{hash_password, secret_hash, verify_password};
use crate::media::{Export, Media};
use crate::ServiceError;
use rand::RngCore;
use strata_core::config::RetentionConfig;
use strata_index::{Index, LetterHolder, LetterRefusal, LetterRow, NewLetter, PersonStudy, Scope};

/// How long a letter is valid unless its issuer says otherwise: a quarter, long enough to take
/// the letter home and ask someone to help.
pub const DEFAULT_LETTER_DAYS: i64 = 90;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Crockford's base 32: no I, L, O or U, so what is read aloud or typed is what was printed.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code (5 bits each: 100 bits), printed in groups of [`CODE_GROUP`].
const CODE_CHARS: usize = 20;
const CODE_GROUP: usize = 4;
/// The passcode's characters: no 0, 1, I, L or O, since a passphrase is typed exactly.
const PASSCODE_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Characters of a passcode (about 4.95 bits each: 79 bits).
const PASSCODE_CHARS: usize = 16;

/// Why a letter cannot be issued, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// No letter has this code (or it is not a code at all).
    #[error("no letter has this access code")]
    UnknownCode,
    #[error("this letter was revoked; ask your provider for a new one")]
    Revoked { letter: LetterRow },
    #[error("this letter expired; ask your provider for a new one")]
    Expired { letter: LetterRow },
    /// The person was merged into another: the letter waits for a person's decision, as a
    /// patient account does.
    #[error(
        "this letter's records were joined with another's; ask your provider for a new letter"
    )]
    Merged { letter: LetterRow, into: String },
    #[error("wrong passcode: type it as printed on the letter")]
    WrongPasscode { letter: LetterRow },
    #[error("no person {0}")]
    NoPerson(String),
    #[error("person {person} was merged into {into}: issue the letter for {into}")]
    MergedPerson { person: String, into: String },
    #[error(
        "none of person {0}'s patient IDs is confirmed as theirs, so a letter would show \
         nothing: confirm them first (a link, a merge, an accepted review or a bound patient \
         account confirms them)"
    )]
    NothingConfirmed(String),
    #[error("valid_days must be from 1 to {max} (the retention period of a record)")]
    Validity { max: i64 },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<strata_index::IndexError> for LetterError {
    fn from(e: strata_index::IndexError) -> Self {
        LetterError::Service(e.into())
    }
}

/// A letter just issued, with its secrets: the only time they exist outside the letter.
#[derive(Debug, Clone)]
pub struct Issued {
    pub letter: LetterRow,
    /// The access code as printed (groups of four).
    pub code: String,
    pub passcode: String,
}

/// A letter whose code was accepted: live, not revoked, its person not merged.
#[derive(Debug, Clone)]
pub struct OpenLetter {
    pub letter: LetterRow,
    /// What the letter may show: the person's confirmed keys, as for a patient account.
    pub scope: Scope,
    passcode_hash: String,
}

#[derive(Clone)]
pub struct Letters {
    index: Index,
    media: Media,
    retention: RetentionConfig,
}

impl Letters {
    pub fn new(index: Index, media: Media, retention: RetentionConfig) -> Letters {
        Letters {
            index,
            media,
            retention,
        }
    }

    /// The longest validity a letter may have: the retention period of an adult's record
    /// (`retention.adult_years`), after which its studies need not be here at all.
    pub fn max_days(&self) -> i64 {
        i64::from(self.retention.adult_years.max(1)) * 365
    }

    /// Issues a letter for `person` (a person uid), valid `days` days ([`DEFAULT_LETTER_DAYS`]
    /// unless said), by `issued_by`.
    pub async fn issue(
        &self,
        person: &str,
        days: Option<i64>,
        issued_by: &str,
    ) -> Result<Issued, LetterError> {
        let days = days.unwrap_or(DEFAULT_LETTER_DAYS);
        let max = self.max_days();
        if !(1..=max).contains(&days) {
            return Err(LetterError::Validity { max });
        }
        let code = new_code();
        let passcode = new_passcode();
        let hashed = passcode.clone();
        let passcode_hash = tokio::task::spawn_blocking(move || hash_password(&hashed))
            .await
            .map_err(|e| ServiceError::Setup(format!("hashing a passcode: {e}")))?;
        let now = strata_core::now_ms();
        let new = NewLetter {
            code_hash: secret_hash(&normalise_code(&code).unwrap_or_default()),
            passcode_hash,
            person: person.to_string(),
            issued_by: issued_by.to_string(),
            issued_at: now,
            expires_at: now + days * DAY_MS,
        };
        let letter = match self.index.create_letter(new).await? {
            Ok(letter) => letter,
            Err(LetterRefusal::NoPerson) => return Err(LetterError::NoPerson(person.into())),
            Err(LetterRefusal::Merged(into)) => {
                return Err(LetterError::MergedPerson {
                    person: person.into(),
                    into,
                })
            }
            Err(LetterRefusal::NothingConfirmed) => {
                return Err(LetterError::NothingConfirmed(person.into()))
            }
        };
        Ok(Issued {
            letter,
            code,
            passcode,
        })
    }

    /// Every letter, or one person's, newest first.
    pub async fn list(&self, person: Option<String>) -> Result<Vec<LetterRow>, LetterError> {
        Ok(self.index.letters(person).await?)
    }

    /// Revokes letter `id`; the letter as it is then (None: no such letter).
    pub async fn revoke(&self, id: i64, by: &str) -> Result<Option<LetterRow>, LetterError> {
        Ok(self.index.revoke_letter(id, by.to_string()).await?)
    }

    /// The letter `code` opens, if it is live: recorded as used.
    pub async fn open(&self, code: &str) -> Result<OpenLetter, LetterError> {
        let hash = secret_hash(&normalise_code(code).ok_or(LetterError::UnknownCode)?);
        let LetterHolder {
            letter,
            person_row,
            merged_into,
            passcode_hash,
        } = self
            .index
            .letter_by_code(hash)
            .await?
            .ok_or(LetterError::UnknownCode)?;
        if letter.revoked_at.is_some() {
            return Err(LetterError::Revoked { letter });
        }
        if letter.expires_at <= strata_core::now_ms() {
            return Err(LetterError::Expired { letter });
        }
        if let Some(into) = merged_into {
            return Err(LetterError::Merged { letter, into });
        }
        self.index.letter_used(letter.id, false).await?;
        Ok(OpenLetter {
            letter,
            scope: Scope::Person(person_row),
            passcode_hash,
        })
    }

    /// The studies the letter shows.
    pub async fn studies(&self, open: &OpenLetter) -> Result<Vec<PersonStudy>, LetterError> {
        let view = self
            .index
            .person(open.letter.person.clone(), open.scope)
            .await?;
        Ok(view.map(|v| v.studies).unwrap_or_default())
    }

    /// The letter's studies as media to stream, once `passcode` is shown to be the letter's:
    /// the passcode as printed (the passphrase to encrypt under) and the export. Counted as a
    /// download.
    pub async fn download(
        &self,
        open: &OpenLetter,
        passcode: &str,
    ) -> Result<(String, Export), LetterError> {
        let typed = normalise_passcode(passcode);
        let (hash, given) = (open.passcode_hash.clone(), typed.clone());
        let right = tokio::task::spawn_blocking(move || verify_password(&given, &hash))
            .await
            .unwrap_or(false);
        if !right {
            return Err(LetterError::WrongPasscode {
                letter: open.letter.clone(),
            });
        }
        let export = self.media.person(&open.letter.person, open.scope).await?;
        self.index.letter_used(open.letter.id, true).await?;
        Ok((typed, export))
    }
}

/// A new access code, printed in groups: `XXXX-XXXX-XXXX-XXXX-XXXX`.
fn new_code() -> String {
    let mut b = [0u8; CODE_CHARS];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let chars: Vec<char> = b
        .iter()
        .map(|x| CODE_ALPHABET[(*x & 31) as usize] as char)
        .collect();
    chars
        .chunks(CODE_GROUP)
        .map(|g| g.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed, in the form whose hash is kept: upper case, without dashes and spaces,
/// look-alikes read as the digits they resemble; None when it cannot be a code.
pub fn normalise_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (code.len() == CODE_CHARS && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// A new passcode: 16 characters, each drawn without bias from [`PASSCODE_ALPHABET`].
fn new_passcode() -> String {
    let mut out = String::with_capacity(PASSCODE_CHARS);
    let limit = 256 - 256 % PASSCODE_ALPHABET.len();
    while out.len() < PASSCODE_CHARS {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        for x in b.iter().map(|x| *x as usize).filter(|x| *x < limit) {
            if out.len() < PASSCODE_CHARS {
                out.push(PASSCODE_ALPHABET[x % PASSCODE_ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// A passcode as typed on the page, as printed: upper case, spaces dropped (it is printed in
/// capitals; a passphrase given to GnuPG must be typed exactly so).
fn normalise_passcode(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_forgivingly_and_passcodes_have_no_look_alikes() {
        let code = new_code();
        assert_eq!(code.len(), CODE_CHARS + CODE_CHARS / CODE_GROUP - 1);
        assert_ne!(code, new_code());
        let plain = normalise_code(&code).unwrap();
        assert_eq!(normalise_code(&code.to_lowercase()), Some(plain.clone()));
        assert_eq!(normalise_code(&code.replace('-', " ")), Some(plain));
        assert_eq!(
            normalise_code("oOiI-lL00-1111-2222-3333").as_deref(),
            Some("00111100111122223333")
        );
        assert_eq!(normalise_code("ABCD"), None);
        assert_eq!(normalise_code("UUUU-UUUU-UUUU-UUUU-UUUU"), None);
        let passcode = new_passcode();
        assert_eq!(passcode.len(), PASSCODE_CHARS);
        assert!(passcode.bytes().all(|b| PASSCODE_ALPHABET.contains(&b)));
        assert_eq!(normalise_passcode(&passcode.to_lowercase()), passcode);
    }
}
