//! From raw demographics to comparable ones: one spelling per name (upper case ASCII letters,
//! accents folded, punctuation gone, "FAMILY, GIVEN" split), one form per date (YYYYMMDD digits),
//! one code per sex, and the blocking keys that decide which stored records are compared at all.

use super::{phonetic, Identity};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// One local patient key's demographics, normalised for comparison. Stored as JSON beside the
/// key, so the matcher never normalises a stored record twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalised {
    pub issuer: String,
    pub patient_id: String,
    /// Upper case ASCII letters and single spaces: "VAN DER BERG".
    pub family: String,
    pub given: String,
    pub middle: String,
    /// Eight digits, YYYYMMDD, or empty when the date given had not eight digits.
    pub birth_date: String,
    /// "M", "F" or empty (unknown, other, missing).
    pub sex: String,
    pub street: String,
    pub city: String,
    /// Letters and digits only.
    pub postcode: String,
    /// The last ten digits at most, so a country prefix does not hide a match.
    pub phone: String,
}

/// Tokens that are no part of a person's name when they turn up in a name field: generational
/// suffixes and honorifics. DICOM has components for them; free-text sources put them anywhere.
const NAME_NOISE: &[&str] = &[
    "JR", "SR", "II", "III", "IV", "MR", "MRS", "MS", "MISS", "DR", "PROF",
];

/// Street types and other words that name no particular street: a blocking key on one of them
/// would hold every house of that number in the country.
const STREET_TYPES: &[&str] = &[
    "STREET",
    "ST",
    "ROAD",
    "RD",
    "AVENUE",
    "AVE",
    "PLACE",
    "PL",
    "DRIVE",
    "DR",
    "LANE",
    "LN",
    "COURT",
    "CT",
    "CRESCENT",
    "CRES",
    "CLOSE",
    "WAY",
    "CIRCUIT",
    "PARADE",
    "TERRACE",
    "HIGHWAY",
    "BOULEVARD",
    "BLVD",
    "GROVE",
    "SQUARE",
    "PARK",
    "NORTH",
    "SOUTH",
    "EAST",
    "WEST",
    "THE",
    "UNIT",
    "FLAT",
    "APARTMENT",
];

/// Street words used for blocking keys at most: a long street line (two address lines, a
/// building name) would otherwise give a record a dozen keys.
const MAX_STREET_WORDS: usize = 4;

/// Phone numbers are compared on at most this many trailing digits (a national number without
/// its country code in North America and most of Europe).
const PHONE_DIGITS: usize = 10;

impl Identity {
    /// The identity a DICOM header gives: the person name's alphabetic group (before the first
    /// '=') split into Family^Given^Middle^Prefix^Suffix; prefix and suffix are not kept.
    pub fn from_dicom(
        issuer: &str,
        patient_id: &str,
        patient_name: &str,
        birth_date: &str,
        sex: &str,
    ) -> Identity {
        let alphabetic = patient_name.split('=').next().unwrap_or("");
        let mut parts = alphabetic.split('^').map(str::trim);
        Identity {
            issuer: issuer.trim().to_string(),
            patient_id: patient_id.trim().to_string(),
            family_name: parts.next().unwrap_or("").to_string(),
            given_name: parts.next().unwrap_or("").to_string(),
            middle_name: parts.next().unwrap_or("").to_string(),
            birth_date: birth_date.trim().to_string(),
            sex: sex.trim().to_string(),
            ..Identity::default()
        }
    }
}

impl Normalised {
    pub fn new(id: &Identity) -> Normalised {
        let (mut family, mut given, mut middle) = (
            name_text(&id.family_name),
            name_text(&id.given_name),
            name_text(&id.middle_name),
        );
        // "SMITH, JOHN A" in the family field with nothing in the given field: the source put the
        // whole name in one field, family first, as PN and most registration systems order it.
        if given.is_empty() {
            if let Some((f, g)) = id.family_name.split_once(',') {
                family = name_text(f);
                let mut rest = name_text(g)
                    .split(' ')
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                rest.retain(|t| !t.is_empty());
                if !rest.is_empty() {
                    given = rest.remove(0);
                    if middle.is_empty() {
                        middle = rest.join(" ");
                    }
                }
            }
        }
        // A given field with two words and no middle name: the second word is the middle name
        // ("JOHN PAUL" against "JOHN" "PAUL").
        if middle.is_empty() {
            if let Some((g, m)) = given.split_once(' ') {
                let (g, m) = (g.to_string(), m.to_string());
                given = g;
                middle = m;
            }
        }
        Normalised {
            issuer: id.issuer.trim().to_string(),
            patient_id: id.patient_id.trim().to_string(),
            family,
            given,
            middle,
            birth_date: birth_date(&id.birth_date),
            sex: sex(&id.sex),
            street: plain_text(&id.street),
            city: plain_text(&id.city),
            postcode: id
                .postcode
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            phone: {
                let digits: Vec<char> = id.phone.chars().filter(char::is_ascii_digit).collect();
                digits[digits.len().saturating_sub(PHONE_DIGITS)..]
                    .iter()
                    .collect()
            },
        }
    }

    /// The birth year, when the date is known.
    pub fn birth_year(&self) -> Option<&str> {
        (self.birth_date.len() == 8).then(|| &self.birth_date[..4])
    }

    /// The blocking keys: two records are compared when they share at least one. Each key
    /// survives a different kind of error, so a true match is missed only when every key is
    /// broken at once:
    /// - `F`: phonetic family name + birth year (survives typos in the given name and in day or
    ///   month);
    /// - `G`: phonetic given name + full birth date (survives a changed or misspelt family name);
    /// - `D`: birth date + sex (survives both names being wrong);
    /// - `N`: both phonetic names, in either order, without a date (survives a wrong date, and
    ///   family and given names swapped);
    /// - `S`: the same pair with the birth year (swapped names in a common-name block too large
    ///   to compare whole);
    /// - `A`: postcode + either phonetic name (survives a wrong date and swapped names);
    /// - `H`: house number + a phonetic word of the street, `K`: postcode + the same, `C`: the
    ///   phonetic city + the same, for each word of the street name but its type ("STREET", "PLACE"), so words
    ///   in another order, one of two address lines kept, or a typo in one word still share a
    ///   key (survive everything but a move);
    /// - `P`: phone number; `L`: the local key itself (issuer + patient ID).
    pub fn block_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(7);
        let pf = phonetic(&self.family);
        let pg = phonetic(&self.given);
        let year = self.birth_year();
        if let (false, Some(y)) = (pf.is_empty(), year) {
            keys.push(format!("F:{pf}:{y}"));
        }
        if !pg.is_empty() && !self.birth_date.is_empty() {
            keys.push(format!("G:{pg}:{}", self.birth_date));
        }
        if !self.birth_date.is_empty() {
            keys.push(format!("D:{}:{}", self.birth_date, self.sex));
        }
        if !pf.is_empty() && !pg.is_empty() {
            let (a, b) = if pf <= pg { (&pf, &pg) } else { (&pg, &pf) };
            keys.push(format!("N:{a}:{b}"));
            if let Some(y) = year {
                keys.push(format!("S:{a}:{b}:{y}"));
            }
        }
        if !self.postcode.is_empty() {
            for p in [&pf, &pg] {
                if !p.is_empty() {
                    keys.push(format!("A:{}:{p}", self.postcode));
                }
            }
        }
        // Every distinct name word of the street, not only the first: sources write the words
        // of an address in another order, or keep one of its two lines.
        let mut street_words: Vec<String> = Vec::new();
        for w in self.street.split(' ') {
            if w.len() > 2
                && w.bytes().all(|b| b.is_ascii_alphabetic())
                && !STREET_TYPES.contains(&w)
            {
                let code = phonetic(w);
                if !street_words.contains(&code) {
                    street_words.push(code);
                }
            }
        }
        let number = self
            .street
            .split(' ')
            .find(|w| w.bytes().all(|b| b.is_ascii_digit()));
        // The town by its sound, so a typo late in a long name ("MODBURY EHIGHTS") keeps it.
        let town = phonetic(&self.city);
        for name in street_words.iter().take(MAX_STREET_WORDS) {
            if let Some(number) = number {
                keys.push(format!("H:{number}:{name}"));
            }
            if !self.postcode.is_empty() {
                keys.push(format!("K:{}:{name}", self.postcode));
            }
            if !town.is_empty() {
                keys.push(format!("C:{town}:{name}"));
            }
        }
        if self.phone.len() >= 7 {
            keys.push(format!("P:{}", self.phone));
        }
        if !self.patient_id.is_empty() {
            keys.push(format!("L:{}:{}", self.issuer, self.patient_id));
        }
        keys
    }

    /// True when both records carry the same issuer and patient ID: one local key, one person.
    pub fn same_local_key(&self, other: &Normalised) -> bool {
        !self.patient_id.is_empty()
            && self.patient_id == other.patient_id
            && self.issuer == other.issuer
    }
}

/// One character as the archive compares letters, handed to `emit`: ASCII in upper case,
/// accents dropped (canonical decomposition without its combining marks), and the letters that
/// decomposition leaves whole spelled in ASCII (ß → SS, Æ → AE, Ø → O, Ł → L). A character with
/// no such form (a digit, punctuation, a Greek or CJK letter) is emitted as it is. The one
/// folding of the archive: searching (`name_key`) and matching ([`fold`]) agree through it.
pub(crate) fn fold_char(c: char, mut emit: impl FnMut(char)) {
    if c.is_ascii() {
        return emit(c.to_ascii_uppercase());
    }
    let spelled: &str = match c {
        'ß' => "SS",
        'Æ' | 'æ' => "AE",
        'Œ' | 'œ' => "OE",
        'Ø' | 'ø' => "O",
        'Ł' | 'ł' => "L",
        'Đ' | 'đ' | 'Ð' | 'ð' => "D",
        'Þ' | 'þ' => "TH",
        'ı' => "I",
        _ => "",
    };
    if !spelled.is_empty() {
        return spelled.chars().for_each(emit);
    }
    for d in std::iter::once(c).nfkd() {
        if !unicode_normalization::char::is_combining_mark(d) {
            emit(d.to_ascii_uppercase());
        }
    }
}

/// Letters folded by [`fold_char`], anything but ASCII letters and digits a single space
/// between words.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        fold_char(c, |c| {
            if c.is_ascii_alphanumeric() {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            } else {
                space = true;
            }
        });
    }
    out
}

/// A name field: folded, without digits, honorifics or generational suffixes.
fn name_text(s: &str) -> String {
    fold(s)
        .split(' ')
        .filter(|t| {
            !t.is_empty() && !NAME_NOISE.contains(t) && t.chars().all(|c| c.is_ascii_alphabetic())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An address field: folded, digits kept.
fn plain_text(s: &str) -> String {
    fold(s)
}

/// YYYYMMDD from "19650310", "1965-03-10" or "1965/03/10"; empty when not eight digits.
fn birth_date(s: &str) -> String {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 8 && digits != "00000000" {
        digits
    } else {
        String::new()
    }
}

fn sex(s: &str) -> String {
    match fold(s).as_str() {
        "M" | "MALE" => "M".into(),
        "F" | "FEMALE" => "F".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A normalised identity of the three fields most tests need; shared by the MPI's tests.
    pub(crate) fn person(family: &str, given: &str, birth: &str) -> Normalised {
        Normalised::new(&Identity {
            family_name: family.into(),
            given_name: given.into(),
            birth_date: birth.into(),
            ..Identity::default()
        })
    }

    #[test]
    fn names_fold_accents_case_and_punctuation() {
        let n = person("Müller-Lüdenscheidt", "  José  ", "1965-03-10");
        assert_eq!(n.family, "MULLER LUDENSCHEIDT");
        assert_eq!(n.given, "JOSE");
        assert_eq!(n.birth_date, "19650310");
        assert_eq!(person("O'Brien", "Zoë", "").family, "O BRIEN");
        assert_eq!(person("Straße", "Łukasz", "").family, "STRASSE");
        assert_eq!(person("Straße", "Łukasz", "").given, "LUKASZ");
        assert_eq!(person("Smith Jr.", "Dr John", "").family, "SMITH");
        assert_eq!(person("Smith Jr.", "Dr John", "").given, "JOHN");
        assert_eq!(person("x", "y", "1965031").birth_date, "");
    }

    #[test]
    fn name_order_and_middle_names() {
        let n = person("SMITH, John Paul", "", "");
        assert_eq!((n.family.as_str(), n.given.as_str()), ("SMITH", "JOHN"));
        assert_eq!(n.middle, "PAUL");
        let n = person("Smith", "John Paul", "");
        assert_eq!((n.given.as_str(), n.middle.as_str()), ("JOHN", "PAUL"));
    }

    #[test]
    fn dicom_person_names_split_into_components() {
        let id = Identity::from_dicom(
            "HOSP A",
            " 123 ",
            "Yamada^Tarou^K^Dr^Jr=山田^太郎=やまだ^たろう",
            "19800101",
            "M",
        );
        assert_eq!(id.family_name, "Yamada");
        assert_eq!(id.given_name, "Tarou");
        assert_eq!(id.middle_name, "K");
        assert_eq!(id.patient_id, "123");
        let n = Normalised::new(&id);
        assert_eq!((n.family.as_str(), n.sex.as_str()), ("YAMADA", "M"));
        let bare = Identity::from_dicom("", "", "Doe", "", "");
        assert_eq!(
            (bare.family_name.as_str(), bare.given_name.as_str()),
            ("Doe", "")
        );
    }

    #[test]
    fn swapped_names_share_a_block_key() {
        let a = person("Smith", "John", "19650310");
        let b = person("John", "Smith", "19650310");
        let c = person("Jones", "Mary", "19650310");
        let shared = |x: &Normalised, y: &Normalised, prefix: &str| {
            let ky = y.block_keys();
            x.block_keys()
                .into_iter()
                .any(|k| k.starts_with(prefix) && ky.contains(&k))
        };
        assert!(shared(&a, &b, "N:"));
        assert!(shared(&a, &b, "S:"));
        assert!(!shared(&a, &c, "N:"));
        // A typo in the family name still shares the given name + date key.
        let typo = person("Smiht", "John", "19650310");
        assert!(shared(&a, &typo, "G:"));
        // A wrong birth date still shares the names key.
        let wrong_date = person("Smith", "John", "19560310");
        assert!(shared(&a, &wrong_date, "N:"));
    }

    #[test]
    fn streets_share_a_key_in_any_word_order() {
        let at = |street: &str, postcode: &str, city: &str| {
            Normalised::new(&Identity {
                street: street.into(),
                postcode: postcode.into(),
                city: city.into(),
                ..Identity::default()
            })
            .block_keys()
        };
        let shared = |x: &[String], y: &[String]| x.iter().filter(|k| y.contains(k)).count();
        // The same house number and a street word, whatever the order and the typos elsewhere.
        let a = at("121 blackbutt street ethnam farm", "3088", "maitland");
        let b = at("121 ethnamf arm blackbutt street", "3089", "maitkand");
        assert!(shared(&a, &b) > 0, "{a:?} {b:?}");
        // No house number and another postcode: the city and a street word.
        let a = at("2 outtrim avenue gowrie", "2260", "crows nest");
        let b = at("outtrim avenue gowrie", "2262", "crows nest");
        assert!(shared(&a, &b) > 0, "{a:?} {b:?}");
        // Another house number and postcode, a typo in the city.
        let a = at("15 hensman street", "3169", "modbury heights");
        let b = at("51 hensman street", "3196", "modbury ehights");
        assert!(shared(&a, &b) > 0, "{a:?} {b:?}");
        // A street type alone is no key: neighbours' numbers on another street share nothing.
        let a = at("12 high street", "2000", "sydney");
        let b = at("12 low street", "3000", "perth");
        assert_eq!(shared(&a, &b), 0, "{a:?} {b:?}");
        assert!(a.iter().all(|k| !k.contains("STRT")), "{a:?}");
    }

    #[test]
    fn phone_and_postcode_keep_what_identifies() {
        let n = Normalised::new(&Identity {
            phone: "+1 (617) 555-0100".into(),
            postcode: "sw1a 1aa".into(),
            sex: "female".into(),
            ..Identity::default()
        });
        assert_eq!(n.phone, "6175550100");
        assert_eq!(n.postcode, "SW1A1AA");
        assert_eq!(n.sex, "F");
    }
}
