//! Two sources of one synthetic population, for evaluating person matching on data shaped
//! unlike FEBRL's: a survey (one record a person, with an address, typed by hand: typos in
//! names and dates, nicknames, middle names as initials) and an administrative register (no
//! address at all, several records of a person over the years, married women under their
//! maiden, married or double-barrelled name). People live in households of relatives who share
//! the family name and the address, partners and siblings are often born the same year, and
//! now and then twins share the birth date too. Seeded: the same options give the same rows.

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One record of either source, with the person it truly belongs to (for scoring only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonRow {
    pub record_id: String,
    pub issuer: String,
    pub patient_id: String,
    pub family_name: String,
    pub given_name: String,
    pub middle_name: String,
    pub birth_date: String,
    pub sex: String,
    pub street: String,
    pub city: String,
    pub postcode: String,
    pub phone: String,
    pub person: usize,
    /// The person's household (for scoring only: relatives share one).
    pub household: usize,
}

/// The header of `strata mpi link`'s input, the order [`to_csv`] writes.
pub const CSV_HEADER: &str = "record_id,issuer,patient_id,family_name,given_name,middle_name,birth_date,sex,street,city,postcode,phone";

#[derive(Debug, Clone, Copy)]
pub struct PopulationOptions {
    pub seed: u64,
    /// Households of 1 to 5 relatives (2.5 on average).
    pub households: usize,
}

/// Names and how common they are, from the US Census Bureau's 1990 name files (public domain):
/// the commonest given names of each sex and family names, each with its percent of people. A
/// population drawn from them is as concentrated on a few names as a real one (the commonest
/// family name one person in a hundred, the commonest given name three in a hundred); the share
/// of people the lists do not cover get generated names, each rare.
const GIVEN_FEMALE: &str = include_str!("../data/given_female.txt");
const GIVEN_MALE: &str = include_str!("../data/given_male.txt");
const FAMILY: &str = include_str!("../data/family.txt");

/// A list of names with their weights, and the share of people it covers.
struct Listed {
    names: Vec<&'static str>,
    weights: WeightedIndex<f64>,
    covers: f64,
}

impl Listed {
    /// Reads a list: `#` comments, then one `NAME PERCENT` a line.
    fn parse(text: &'static str) -> Listed {
        let (names, percents): (Vec<&str>, Vec<f64>) = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, percent) = l.split_once(' ').expect("NAME PERCENT");
                (name, percent.trim().parse::<f64>().expect("a percent"))
            })
            .unzip();
        Listed {
            covers: percents.iter().sum::<f64>() / 100.0,
            weights: WeightedIndex::new(&percents).expect("positive weights"),
            names,
        }
    }

    /// A name of the list with its weight, or one of `tail` (uniformly) for the people the list
    /// does not cover.
    fn draw(&self, rng: &mut StdRng, tail: &[String]) -> String {
        if rng.gen_bool(self.covers) {
            self.names[self.weights.sample(rng)].to_string()
        } else {
            tail.choose(rng).unwrap().clone()
        }
    }
}

const ONSETS: &[&str] = &[
    "B", "BR", "C", "CH", "D", "F", "G", "GR", "H", "J", "K", "L", "M", "N", "P", "R", "S", "SH",
    "ST", "T", "TH", "V", "W", "Z", "",
];
const VOWELS: &[&str] = &["A", "E", "I", "O", "U", "AI", "EA", "OU", "Y"];
const CODAS: &[&str] = &[
    "", "N", "R", "S", "L", "M", "T", "CK", "ND", "RT", "SON", "LEY", "MAN", "ER", "TON",
];
const STREET_TYPES: &[&str] = &["STREET", "ROAD", "AVENUE", "LANE", "DRIVE", "CLOSE"];

/// A vocabulary of `n` distinct generated words and Zipf weights (a few common, most rare).
fn vocabulary(rng: &mut StdRng, n: usize, syllables: (usize, usize)) -> Vec<String> {
    let mut words = std::collections::BTreeSet::new();
    while words.len() < n {
        let mut w = String::new();
        for _ in 0..rng.gen_range(syllables.0..=syllables.1) {
            w.push_str(ONSETS.choose(rng).unwrap());
            w.push_str(VOWELS.choose(rng).unwrap());
        }
        w.push_str(CODAS.choose(rng).unwrap());
        if w.len() >= 3 {
            words.insert(w);
        }
    }
    let mut words: Vec<String> = words.into_iter().collect();
    words.shuffle(rng);
    words
}

/// An index into a list of `n`, drawn with Zipf weights 1/(k+1)^0.9.
fn zipf(rng: &mut StdRng, n: usize) -> usize {
    // Inverse of the continuous approximation of the cumulative weights.
    let s = 0.9f64;
    let total = ((n as f64 + 1.0).powf(1.0 - s) - 1.0) / (1.0 - s);
    let u = rng.gen::<f64>() * total;
    (((u * (1.0 - s) + 1.0).powf(1.0 / (1.0 - s)) - 1.0) as usize).min(n - 1)
}

/// One person of the population, as truly named.
#[derive(Debug, Clone)]
struct Person {
    family: String,
    /// A married woman's family name before marriage, when she took her partner's.
    maiden: Option<String>,
    given: String,
    middle: String,
    birth: (u32, u32, u32),
    sex: &'static str,
    household: usize,
    phone: String,
}

struct Address {
    street: String,
    city: String,
    postcode: String,
}

struct Names {
    female: Listed,
    male: Listed,
    family: Listed,
    family_tail: Vec<String>,
    given_tail: Vec<String>,
}

impl Names {
    fn family(&self, rng: &mut StdRng) -> String {
        self.family.draw(rng, &self.family_tail)
    }
    fn given(&self, rng: &mut StdRng, sex: &str) -> String {
        let listed = if sex == "M" { &self.male } else { &self.female };
        listed.draw(rng, &self.given_tail)
    }
}

/// The year of the newest records: nobody is born after it.
const LAST_YEAR: u32 = 2023;

fn birth_after(rng: &mut StdRng, year: u32) -> (u32, u32, u32) {
    (year, rng.gen_range(1..=12), rng.gen_range(1..=28))
}

/// The households and their people.
fn population(rng: &mut StdRng, households: usize) -> (Vec<Person>, Vec<Address>) {
    let names = Names {
        female: Listed::parse(GIVEN_FEMALE),
        male: Listed::parse(GIVEN_MALE),
        family: Listed::parse(FAMILY),
        family_tail: vocabulary(rng, 30_000, (2, 3)),
        given_tail: vocabulary(rng, 3000, (1, 2)),
    };
    let streets = vocabulary(rng, 500, (1, 3));
    let cities: Vec<(String, u32)> = vocabulary(rng, 120, (1, 3))
        .into_iter()
        .map(|c| (c, rng.gen_range(1000..9000)))
        .collect();
    let (mut people, mut addresses) = (Vec::new(), Vec::new());
    for h in 0..households {
        let (city, postcode) = &cities[zipf(rng, cities.len())];
        addresses.push(Address {
            street: format!(
                "{} {} {}",
                rng.gen_range(1..300),
                streets[zipf(rng, streets.len())],
                STREET_TYPES.choose(rng).unwrap()
            ),
            city: city.clone(),
            postcode: (postcode + rng.gen_range(0..3)).to_string(),
        });
        let size = match rng.gen_range(0..100) {
            0..=27 => 1,
            28..=59 => 2,
            60..=75 => 3,
            76..=91 => 4,
            _ => 5,
        };
        let family = names.family(rng);
        let head_year = rng.gen_range(1935..LAST_YEAR - 23);
        let head_sex = if rng.gen_bool(0.5) { "M" } else { "F" };
        let person = |rng: &mut StdRng, sex: &'static str, birth, family: String| Person {
            given: names.given(rng, sex),
            middle: if rng.gen_bool(0.6) {
                names.given(rng, sex)
            } else {
                String::new()
            },
            family,
            maiden: None,
            birth,
            sex,
            household: h,
            phone: if rng.gen_bool(0.5) {
                format!("04{:08}", rng.gen_range(0..100_000_000))
            } else {
                String::new()
            },
        };
        let birth = birth_after(rng, head_year);
        people.push(person(rng, head_sex, birth, family.clone()));
        if size >= 2 {
            let sex = if head_sex == "M" { "F" } else { "M" };
            let year = if rng.gen_bool(0.2) {
                head_year
            } else {
                (head_year as i32 + rng.gen_range(-6..=6)) as u32
            };
            // Partners share the family name, the woman's own kept as her maiden name (older
            // records have it), or each keeps their own.
            let takes = rng.gen_bool(0.75);
            let own = names.family(rng);
            let birth = birth_after(rng, year);
            let shared = if takes { family.clone() } else { own.clone() };
            let mut partner = person(rng, sex, birth, shared);
            if takes {
                let woman = if sex == "F" {
                    &mut partner
                } else {
                    people.last_mut().unwrap()
                };
                woman.maiden = Some(own);
            }
            people.push(partner);
        }
        let mut last_child: Option<(u32, u32, u32)> = None;
        let first_of_household = people.len() - size.min(2);
        for _ in 2..size {
            let sex = if rng.gen_bool(0.5) { "M" } else { "F" };
            // Twins now and then; otherwise a child born 20 to 40 years after the head, if
            // that year has come.
            let birth = match last_child {
                Some(b) if rng.gen_bool(0.04) => b,
                _ => {
                    let year = head_year + rng.gen_range(20..40);
                    if year > LAST_YEAR {
                        continue;
                    }
                    birth_after(rng, year)
                }
            };
            last_child = Some(birth);
            // Parents seldom give a child a name already in the household.
            let mut child = person(rng, sex, birth, family.clone());
            while people[first_of_household..]
                .iter()
                .any(|p| p.given == child.given)
            {
                child.given = names.given(rng, sex);
            }
            people.push(child);
        }
    }
    (people, addresses)
}

fn typo(rng: &mut StdRng, s: &str) -> String {
    let mut b: Vec<u8> = s.bytes().collect();
    if b.len() < 2 {
        return s.to_string();
    }
    let i = rng.gen_range(0..b.len());
    match rng.gen_range(0..3) {
        0 => {
            b.remove(i);
        }
        1 if i + 1 < b.len() => b.swap(i, i + 1),
        _ => b[i] = b'A' + rng.gen_range(0..26u8),
    }
    String::from_utf8(b).unwrap()
}

/// Short forms people go by that the matcher's table ([`strata_mpi::nicknames`]) does not
/// hold: family pet names and forms of one region. A record under one of these is matched on
/// its other fields alone, as a real source's unlisted nickname would be.
const UNLISTED_SHORT_FORMS: &[(&str, &[&str])] = &[
    ("JAMES", &["JAS", "JEM"]),
    ("JOHN", &["JOCK", "JOHNNIE"]),
    ("MARGARET", &["MAISIE", "RITA"]),
    ("ELIZABETH", &["LILIBET", "ELLA"]),
    ("MARY", &["MINNIE", "MAMEY"]),
    ("ROBERT", &["RAB", "ROBIN"]),
    ("WILLIAM", &["WULLIE", "WILS"]),
    ("EDWARD", &["NEDDY"]),
    ("PATRICIA", &["PATTIE", "TISH"]),
    ("CHARLES", &["CHAY"]),
];

/// A short form of a given name, if it has any: one in ten from forms the matcher's table does
/// not hold, the rest from the table.
fn nickname(rng: &mut StdRng, given: &str) -> Option<String> {
    let table = if rng.gen_bool(0.1) {
        UNLISTED_SHORT_FORMS
    } else {
        strata_mpi::nicknames::NICKNAMES
    };
    table
        .iter()
        .find(|(formal, _)| *formal == given)
        .and_then(|(_, short)| short.choose(rng))
        .map(|s| s.to_string())
}

/// How often each kind of error is made in one source.
struct Errors {
    family_typo: f64,
    given_typo: f64,
    nickname: f64,
    initial: f64,
    middle_initial: f64,
    middle_missing: f64,
    date_typo: f64,
    date_swapped: f64,
    year_only: f64,
    date_missing: f64,
    sex_missing: f64,
    /// For a married woman: her maiden name, or both names joined.
    maiden: f64,
    double_barrelled: f64,
}

/// A record of `p` as a source with `errors` would type it.
fn record(rng: &mut StdRng, p: &Person, e: &Errors) -> PersonRow {
    let mut family = p.family.clone();
    if let Some(maiden) = &p.maiden {
        if rng.gen_bool(e.maiden) {
            family = maiden.clone();
        } else if rng.gen_bool(e.double_barrelled) {
            family = format!("{maiden}-{family}");
        }
    }
    if rng.gen_bool(e.family_typo) {
        family = typo(rng, &family);
    }
    let mut given = p.given.clone();
    if rng.gen_bool(e.nickname) {
        given = nickname(rng, &given).unwrap_or(given);
    } else if rng.gen_bool(e.initial) {
        given.truncate(1);
    } else if rng.gen_bool(e.given_typo) {
        given = typo(rng, &given);
    }
    let mut middle = p.middle.clone();
    if rng.gen_bool(e.middle_missing) {
        middle.clear();
    } else if rng.gen_bool(e.middle_initial) {
        middle.truncate(1);
    }
    let (y, mut m, mut d) = p.birth;
    let mut birth = format!("{y}{m:02}{d:02}");
    if rng.gen_bool(e.date_missing) {
        birth.clear();
    } else if rng.gen_bool(e.date_swapped) && d <= 12 && d != m {
        std::mem::swap(&mut m, &mut d);
        birth = format!("{y}{m:02}{d:02}");
    } else if rng.gen_bool(e.year_only) {
        birth = format!(
            "{y}{:02}{:02}",
            rng.gen_range(1..=12),
            rng.gen_range(1..=28)
        );
    } else if rng.gen_bool(e.date_typo) {
        let mut b: Vec<u8> = birth.into_bytes();
        let i = rng.gen_range(2..8);
        b[i] = if i == 4 || i == 6 {
            b'0' + rng.gen_range(0..2u8)
        } else {
            b'0' + rng.gen_range(0..10u8)
        };
        birth = String::from_utf8(b).unwrap();
    }
    PersonRow {
        family_name: family,
        given_name: given,
        middle_name: middle,
        birth_date: birth,
        sex: if rng.gen_bool(e.sex_missing) {
            String::new()
        } else {
            p.sex.to_string()
        },
        ..PersonRow::default()
    }
}

/// The survey's and the register's records of one population, shuffled together (so neither
/// source comes first), record IDs numbered in that order.
pub fn survey_and_register(opts: PopulationOptions) -> Vec<PersonRow> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (people, addresses) = population(&mut rng, opts.households);
    let survey = Errors {
        family_typo: 0.06,
        given_typo: 0.05,
        nickname: 0.12,
        initial: 0.03,
        middle_initial: 0.4,
        middle_missing: 0.3,
        date_typo: 0.02,
        date_swapped: 0.02,
        year_only: 0.01,
        date_missing: 0.015,
        sex_missing: 0.03,
        maiden: 0.05,
        double_barrelled: 0.1,
    };
    let register = Errors {
        family_typo: 0.04,
        given_typo: 0.03,
        nickname: 0.06,
        initial: 0.02,
        middle_initial: 0.3,
        middle_missing: 0.4,
        date_typo: 0.015,
        date_swapped: 0.015,
        year_only: 0.01,
        date_missing: 0.01,
        sex_missing: 0.08,
        maiden: 0.25,
        double_barrelled: 0.05,
    };
    let mut rows = Vec::new();
    for (k, p) in people.iter().enumerate() {
        if rng.gen_bool(0.55) {
            let a = &addresses[p.household];
            let mut row = record(&mut rng, p, &survey);
            row.street = if rng.gen_bool(0.05) {
                typo(&mut rng, &a.street)
            } else {
                a.street.clone()
            };
            row.city = if rng.gen_bool(0.03) {
                typo(&mut rng, &a.city)
            } else {
                a.city.clone()
            };
            if rng.gen_bool(0.97) {
                row.postcode = a.postcode.clone();
            }
            row.phone = p.phone.clone();
            row.issuer = "SURVEY".into();
            row.person = k;
            row.household = p.household;
            rows.push(row);
        }
        if rng.gen_bool(0.55) {
            let records = match rng.gen_range(0..100) {
                0..=54 => 1,
                55..=84 => 2,
                _ => 3,
            };
            for _ in 0..records {
                let mut row = record(&mut rng, p, &register);
                row.issuer = "REGISTER".into();
                row.person = k;
                row.household = p.household;
                rows.push(row);
            }
        }
    }
    rows.shuffle(&mut rng);
    for (n, row) in rows.iter_mut().enumerate() {
        row.record_id = (n + 1).to_string();
        row.patient_id = format!("{}{}", &row.issuer[..1], 100_000 + n);
    }
    rows
}

/// The rows as `strata mpi link` reads them (no value holds a comma or a quote).
pub fn to_csv(rows: &[PersonRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fields = [
            &r.record_id,
            &r.issuer,
            &r.patient_id,
            &r.family_name,
            &r.given_name,
            &r.middle_name,
            &r.birth_date,
            &r.sex,
            &r.street,
            &r.city,
            &r.postcode,
            &r.phone,
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sources_of_households_one_without_addresses() {
        let opts = PopulationOptions {
            seed: 5,
            households: 300,
        };
        let rows = survey_and_register(opts);
        assert_eq!(rows, survey_and_register(opts));
        let survey: Vec<_> = rows.iter().filter(|r| r.issuer == "SURVEY").collect();
        let register: Vec<_> = rows.iter().filter(|r| r.issuer == "REGISTER").collect();
        assert!(
            survey.len() > 250 && register.len() > 350,
            "{} {}",
            survey.len(),
            register.len()
        );
        assert!(register
            .iter()
            .all(|r| r.street.is_empty() && r.postcode.is_empty()));
        assert!(survey.iter().filter(|r| !r.street.is_empty()).count() == survey.len());
        // Several register records of one person, and relatives sharing an address.
        let mut per_person = std::collections::HashMap::new();
        for r in &register {
            *per_person.entry(r.person).or_insert(0) += 1;
        }
        assert!(per_person.values().any(|&n| n >= 2));
        let mut at = std::collections::HashMap::new();
        for r in &survey {
            at.entry(&r.street).or_insert_with(Vec::new).push(r.person);
        }
        assert!(at.values().any(|p| p.iter().any(|&x| x != p[0])));
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), rows.len() + 1);
        assert!(csv.lines().all(|l| l.split(',').count() == 12));
    }
}
