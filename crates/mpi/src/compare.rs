//! Graded comparison of two normalised records, field by field. Each field gives a level, 0 the
//! strongest agreement, or nothing when either side lacks the field (a missing value is no
//! evidence either way). The levels are what the Fellegi–Sunter model weighs; this module knows
//! nothing of weights.

use super::Normalised;

/// The fields compared, in the order of a [`Vector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Family,
    Given,
    Middle,
    BirthDate,
    Sex,
    Street,
    City,
    Postcode,
    Phone,
}

pub const FIELDS: [Field; 9] = [
    Field::Family,
    Field::Given,
    Field::Middle,
    Field::BirthDate,
    Field::Sex,
    Field::Street,
    Field::City,
    Field::Postcode,
    Field::Phone,
];

/// One level per field; [`MISSING`] where either record lacks it.
pub type Vector = [u8; FIELDS.len()];

pub const MISSING: u8 = u8::MAX;

/// Names that Jaro–Winkler puts this close differ by a typo or two ("JOHNSON" / "JONHSON" 0.97,
/// "CATHERINE" / "KATHERINE" 0.93).
const NAME_CLOSE: f64 = 0.92;
/// Names this close share most letters in order: a phonetic variant or several typos.
const NAME_NEAR: f64 = 0.80;
/// Addresses this close differ by a typo or an abbreviation.
const ADDRESS_CLOSE: f64 = 0.90;

impl Field {
    /// How many levels the field has (missing is not a level).
    pub const fn levels(self) -> usize {
        match self {
            Field::Family => 5,
            Field::Given => 6,
            Field::Middle => 3,
            Field::BirthDate => 6,
            Field::Sex => 2,
            Field::Street | Field::City | Field::Postcode => 3,
            Field::Phone => 2,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Field::Family => "family_name",
            Field::Given => "given_name",
            Field::Middle => "middle_name",
            Field::BirthDate => "birth_date",
            Field::Sex => "sex",
            Field::Street => "street",
            Field::City => "city",
            Field::Postcode => "postcode",
            Field::Phone => "phone",
        }
    }
}

/// The comparison vector of two records. Family and given names are compared in both orders and
/// the closer order kept, so "SMITH JOHN" against "JOHN SMITH" agrees on both names.
pub fn compare(a: &Normalised, b: &Normalised) -> Vector {
    // Each name similarity is computed once and handed to the level functions: Jaro–Winkler is
    // most of comparing's time.
    let (ff, gg) = (jw(&a.family, &b.family), jw(&a.given, &b.given));
    let straight = ff + gg;
    // Two names that already agree (both JW ≥ 0.92) need no look at the other order, nor do
    // names whose first letters match in neither crossing: swapped names with a typo in the
    // first letter of both are rare, and trying the other order costs two more similarities.
    let initial = |x: &str, y: &str| {
        !x.is_empty() && x.as_bytes()[0] == y.as_bytes().first().copied().unwrap_or(0)
    };
    let crossed = initial(&a.family, &b.given) || initial(&a.given, &b.family);
    let (fg, gf) = if straight >= 2.0 * NAME_CLOSE || !crossed {
        (0.0, 0.0)
    } else {
        (jw(&a.family, &b.given), jw(&a.given, &b.family))
    };
    let (bf, bg, sf, sg) = if fg + gf > straight + 0.1 {
        (&b.given, &b.family, fg, gf)
    } else {
        (&b.family, &b.given, ff, gg)
    };
    // Women change family names on marriage far more often than men: a family name that
    // differs between two records of women is its own level, weighed apart.
    let women = a.sex != "M" && b.sex != "M" && (a.sex == "F" || b.sex == "F");
    let family = match family_level_of(&a.family, bf, sf) {
        3 if women => 4,
        level => level,
    };
    [
        family,
        given_level_of(&a.given, bg, sg),
        middle_level(&a.middle, &b.middle),
        date_level(&a.birth_date, &b.birth_date),
        exact_level(&a.sex, &b.sex),
        street_level(&a.street, &b.street),
        address_level(&a.city, &b.city),
        postcode_level(&a.postcode, &b.postcode),
        exact_level(&a.phone, &b.phone),
    ]
}

/// Jaro–Winkler similarity (Winkler's prefix scale 0.1 over at most 4 characters, applied above
/// a Jaro similarity of 0.7), the values of `strsim::jaro_winkler`. Comparing strings is most of
/// linking's time, and normalised text is ASCII: on bytes, with the matched positions kept as
/// bit masks, it runs several times faster than the crate's generic, allocating version, which
/// stays for strings longer than 64 bytes.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let plain = |s: &[u8]| s.len() <= 64 && s.iter().all(|&c| (32..96).contains(&c));
    if !plain(x) || !plain(y) {
        return strsim::jaro_winkler(a, b);
    }
    if x.is_empty() || y.is_empty() {
        return if x.len() == y.len() { 1.0 } else { 0.0 };
    }
    // Where each character stands in y, as a bit mask per character (upper case letters,
    // digits, space and punctuation are all between 32 and 95).
    let mut at = [0u64; 64];
    for (j, &d) in y.iter().enumerate() {
        at[(d - 32) as usize] |= 1 << j;
    }
    let below = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let range = (x.len().max(y.len()) / 2).saturating_sub(1);
    let (mut x_matched, mut y_matched) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &c) in x.iter().enumerate() {
        let window = below(i + range + 1) & !below(i.saturating_sub(range));
        let free = at[(c - 32) as usize] & window & !y_matched;
        if free != 0 {
            x_matched |= 1 << i;
            y_matched |= free & free.wrapping_neg();
            matches += 1;
        }
    }
    if matches == 0 {
        return 0.0;
    }
    // Matched characters in order on both sides; each position where they differ is half a
    // transposition.
    let mut half_transpositions = 0usize;
    let mut rest = y_matched;
    for (i, &c) in x.iter().enumerate() {
        if x_matched & (1 << i) != 0 {
            let j = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if c != y[j] {
                half_transpositions += 1;
            }
        }
    }
    let m = matches as f64;
    let jaro =
        (m / x.len() as f64 + m / y.len() as f64 + (matches - half_transpositions / 2) as f64 / m)
            / 3.0;
    if jaro > 0.7 {
        let prefix = x.iter().zip(y).take(4).take_while(|(c, d)| c == d).count();
        jaro + 0.1 * prefix as f64 * (1.0 - jaro)
    } else {
        jaro
    }
}

/// Jaro–Winkler similarity, 0 when either side is empty. Equal names, the commonest case
/// among candidate pairs, need no character matching.
fn jw(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() {
        0.0
    } else if a == b {
        1.0
    } else {
        jaro_winkler(a, b)
    }
}

#[cfg(test)]
fn family_level(a: &str, b: &str) -> u8 {
    family_level_of(a, b, jw(a, b))
}

/// The family name level of `a` and `b`, whose Jaro–Winkler similarity is `s`: 0 the same, 1 a
/// typo or one part of a double-barrelled name, 2 near in spelling, 3 different ([`compare`]
/// makes 3 into 4 between two women, who change family names far more often than men).
fn family_level_of(a: &str, b: &str, s: f64) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 0;
    }
    // A double-barrelled name against one of its parts ("GARCIA LOPEZ" / "GARCIA").
    let part_of = |x: &str, y: &str| x.contains(' ') && x.split(' ').any(|t| t == y);
    if s >= NAME_CLOSE || part_of(a, b) || part_of(b, a) {
        1
    } else if s >= NAME_NEAR {
        2
    } else {
        3
    }
}

#[cfg(test)]
fn given_level(a: &str, b: &str) -> u8 {
    given_level_of(a, b, jw(a, b))
}

/// The given name level of `a` and `b`, whose Jaro–Winkler similarity is `s`: 0 the same, 1 a
/// typo, 2 one name in two forms ("ROBERT" / "BOB", [`crate::nicknames`]), 3 near in spelling,
/// 4 an initial against a name it begins, 5 different. Two forms of one name are graded apart
/// from names near in spelling: strangers' names are often near ("MARIA" / "MARIE") and seldom
/// two forms of one.
fn given_level_of(a: &str, b: &str, s: f64) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 0;
    }
    // Short names are where Jaro–Winkler misses a typo ("JOE" / "JE" is 0.61): a letter left
    // out or two neighbours swapped is a typo at any length.
    if s >= NAME_CLOSE || one_left_out(a, b) || neighbours_swapped(a.as_bytes(), b.as_bytes()) {
        1
    } else if crate::nicknames::same_name(a, b) {
        2
    } else if s >= NAME_NEAR {
        3
    } else if (a.len() == 1 || b.len() == 1) && a.as_bytes()[0] == b.as_bytes()[0] {
        4
    } else {
        5
    }
}

fn middle_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        MISSING
    } else if a == b {
        0
    } else if a.as_bytes()[0] == b.as_bytes()[0] {
        1
    } else {
        2
    }
}

/// Birth dates: 0 the same; 1 day and month swapped (the US and European orders); 2 one keying
/// error (the same year and one of month and day, or two neighbouring digits swapped anywhere,
/// "19170509" / "19175009"); 3 the same month and day in another year; 4 only the year the same
/// (a date typed from memory, or a placeholder day and month); 5 different.
///
/// Swapping two neighbouring digits is the commonest keying error after a wrong digit (Damerau
/// 1964), and a wrong digit in the month or the day already lands in level 2; a swap across the
/// month and day, or the year and month, is the same kind of error and is graded with it.
pub fn date_level(a: &str, b: &str) -> u8 {
    if a.len() != 8 || b.len() != 8 {
        return MISSING;
    }
    if a == b {
        return 0;
    }
    let (ya, ma, da) = (&a[..4], &a[4..6], &a[6..]);
    let (yb, mb, db) = (&b[..4], &b[4..6], &b[6..]);
    if ya == yb && ma == db && da == mb {
        1
    } else if ya == yb && (ma == mb || da == db) {
        2
    } else if ma == mb && da == db {
        3
    } else if neighbours_swapped(a.as_bytes(), b.as_bytes()) {
        2
    } else if ya == yb {
        4
    } else {
        5
    }
}

/// True when one of `a` and `b` is the other with one character left out ("JOE" / "JE").
fn one_left_out(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    // An initial is graded as one, not as a name with a letter left out ("J" / "JO").
    if long.len() != short.len() + 1 || short.len() < 2 {
        return false;
    }
    let k = short
        .bytes()
        .zip(long.bytes())
        .take_while(|(x, y)| x == y)
        .count();
    short.as_bytes()[k..] == long.as_bytes()[k + 1..]
}

/// True when `b` is `a` with exactly two neighbouring, different characters swapped.
fn neighbours_swapped(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = (0..a.len()).filter(|&i| a[i] != b[i]);
    match (diff.next(), diff.next(), diff.next()) {
        (Some(i), Some(j), None) => j == i + 1 && a[i] == b[j] && a[j] == b[i],
        _ => false,
    }
}

fn exact_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        MISSING
    } else if a == b {
        0
    } else {
        1
    }
}

fn address_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        MISSING
    } else if a == b {
        0
    } else if jaro_winkler(a, b) >= ADDRESS_CLOSE {
        1
    } else {
        2
    }
}

/// Streets as address_level, but words may come in another order or be run together
/// ("16 HALIFAX CLOSE LINKS COURT" / "LINKS COURT 16 HALIFAX CLOSE", "MCLEOD PLACE" /
/// "MCLEODPLACE"): the letters without spaces, and the words sorted, are compared too.
fn street_level(a: &str, b: &str) -> u8 {
    match address_level(a, b) {
        // Streets without a word or house number in common are different streets (and most
        // pairs are such).
        2 if a.split(' ').any(|w| {
            (w.len() > 2 || w.bytes().all(|c| c.is_ascii_digit())) && b.split(' ').any(|v| v == w)
        }) =>
        {
            let joined = |s: &str| s.replace(' ', "");
            let sorted = |s: &str| {
                let mut w: Vec<&str> = s.split(' ').collect();
                w.sort_unstable();
                w.join(" ")
            };
            let close = jaro_winkler(&joined(a), &joined(b)) >= ADDRESS_CLOSE
                || jaro_winkler(&sorted(a), &sorted(b)) >= ADDRESS_CLOSE
                || shorter_form(a, b)
                || shorter_form(b, a);
            if close {
                1
            } else {
                2
            }
        }
        level => level,
    }
}

/// True when street `a` is a shorter form of street `b`: the same house number and at least one
/// more word, every word of `a` found in `b` (up to a typo), as when one source kept only one of
/// two address lines ("5 PINE HILL" / "5 BEAUREPAIRE CRESCENT PINE HILL"). The house number is
/// required because a street or locality name alone is shared by many neighbours.
fn shorter_form(a: &str, b: &str) -> bool {
    let number = |s: &str| {
        s.split(' ')
            .find(|w| w.bytes().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
    };
    let words = a.split(' ').count();
    words >= 2
        && words < b.split(' ').count()
        && number(a).is_some()
        && number(a) == number(b)
        && a.split(' ').all(|w| {
            b.split(' ')
                .any(|v| v == w || (w.len() > 3 && jaro_winkler(v, w) >= ADDRESS_CLOSE))
        })
}

/// Postcodes: 0 the same; 1 one character changed or two neighbours swapped; 2 different.
fn postcode_level(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 0;
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let one_changed = x.len() == y.len() && (0..x.len()).filter(|&i| x[i] != y[i]).count() == 1;
    if one_changed || neighbours_swapped(x, y) {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::tests::person;

    #[test]
    fn jaro_winkler_values() {
        // The textbook pairs (Winkler 1990).
        assert!((jaro_winkler("MARTHA", "MARHTA") - 0.961).abs() < 0.001);
        assert!((jaro_winkler("DWAYNE", "DUANE") - 0.84).abs() < 0.001);
        assert!((jaro_winkler("DIXON", "DICKSONX") - 0.813).abs() < 0.001);
        assert_eq!(family_level("MARTHA", "MARHTA"), 1);
        assert_eq!(given_level("DWAYNE", "DUANE"), 3);
        assert_eq!(given_level("J", "JOHN"), 4);
        // A short form against its formal name, or another short form of it.
        assert_eq!(given_level("ROBERT", "BOB"), 2);
        assert_eq!(given_level("BOB", "ROB"), 2);
        assert_eq!(given_level("MARY", "ZOE"), 5);
        // A letter left out or two swapped, where short names put Jaro–Winkler far off.
        assert_eq!(given_level("JOE", "JE"), 1);
        assert_eq!(given_level("IAN", "INA"), 1);
        assert_eq!(given_level("IAN", "IN"), 1);
        assert_eq!(given_level("DAN", "DON"), 5);
        assert_ne!(given_level("J", "JO"), 1);
        assert_eq!(family_level("GARCIA LOPEZ", "GARCIA"), 1);
        assert_eq!(family_level("", "GARCIA"), MISSING);
    }

    /// The byte version gives the crate's values, on pairs of every kind of closeness.
    #[test]
    fn jaro_winkler_agrees_with_strsim() {
        let words = [
            "",
            "A",
            "AB",
            "BA",
            "MARTHA",
            "MARHTA",
            "DWAYNE",
            "DUANE",
            "DIXON",
            "DICKSONX",
            "JOHNSON",
            "JONHSON",
            "CATHERINE",
            "KATHERINE",
            "SMITH",
            "SMYTH",
            "SMITH JONES",
            "12 HIGH STREET",
            "12 HIGHSTREET",
            "STREET HIGH 12",
            "AAAAAAAAAB",
            "BAAAAAAAAA",
            "16 HALIFAX CLOSE LINKS COURT CNR SUSANNE S STREET SOUTH MACLEAN QUEENSLAND AUS",
        ];
        for a in words {
            for b in words {
                let (ours, theirs) = (jaro_winkler(a, b), strsim::jaro_winkler(a, b));
                assert!(
                    (ours - theirs).abs() < 1e-12,
                    "{a:?} {b:?}: {ours} {theirs}"
                );
            }
        }
    }

    #[test]
    fn birth_dates_grade_transpositions_and_typos() {
        assert_eq!(date_level("19650310", "19650310"), 0);
        assert_eq!(date_level("19650310", "19651003"), 1);
        assert_eq!(date_level("19650310", "19650311"), 2);
        assert_eq!(date_level("19650310", "19650410"), 2);
        assert_eq!(date_level("19650310", "19560310"), 3);
        assert_eq!(date_level("19650310", "19720822"), 5);
        assert_eq!(date_level("19650310", "19651122"), 4);
        // Neighbouring digits swapped across month and day, and across year and month.
        assert_eq!(date_level("19170509", "19175009"), 2);
        assert_eq!(date_level("19740614", "19740164"), 2);
        assert_eq!(date_level("19650310", "19605310"), 2);
        // Two digits swapped that are not neighbours are not one keying error.
        assert_eq!(date_level("19650310", "19050316"), 5);
        assert_eq!(date_level("19650310", ""), MISSING);
    }

    #[test]
    fn streets_agree_in_another_word_order() {
        assert_eq!(street_level("2 HIGH STREET", "2 HIGH STREET"), 0);
        assert_eq!(street_level("2 HIGH STREET", "2 HIGHSTREET"), 1);
        assert_eq!(
            street_level(
                "9 DARWINIA TERRACE STRATHALAN HOMES",
                "9 STRATHALAN HOMES DARWINIA TERRACE"
            ),
            1
        );
        assert_eq!(street_level("2 HIGH STREET", "41 HAYSTACK CRESCENT"), 2);
        // One address line of two, with a typo: the same house number and every word found.
        assert_eq!(
            street_level("5 BEAUREPAIRE CRESCENT PINE HILL", "5 PINE HILL"),
            1
        );
        assert_eq!(
            street_level(
                "4 RAWORTH COTTAGE MEEDICAL PRACTICE",
                "4 HODGKINSON STREET RAWORTH COTTAGE MEDICAL PRACTICE"
            ),
            1
        );
        // Another house number, or a street name alone, is not the same address.
        assert_eq!(
            street_level("7 BEAUREPAIRE CRESCENT PINE HILL", "5 PINE HILL"),
            2
        );
        assert_eq!(street_level("5 BEAUREPAIRE CRESCENT", "5"), 2);
    }

    #[test]
    fn postcodes_grade_single_typos() {
        assert_eq!(postcode_level("2000", "2000"), 0);
        assert_eq!(postcode_level("2000", "2001"), 1);
        assert_eq!(postcode_level("2134", "2143"), 1);
        assert_eq!(postcode_level("2134", "3341"), 2);
    }

    #[test]
    fn swapped_names_compare_as_agreeing() {
        let n = |f: &str, g: &str| person(f, g, "19650310");
        let v = compare(&n("Smith", "John"), &n("John", "Smith"));
        assert_eq!(&v[..2], &[0, 0]);
        let v = compare(&n("Smith", "John"), &n("Brown", "Alice"));
        assert_eq!(&v[..2], &[3, 5]);
        assert_eq!(v[3], 0);
        assert_eq!(v[4], MISSING);
    }
}
