//! Linking a whole file of records at once (`strata mpi link`), for evaluation and for migrating
//! another index. The archive decides for each record as it arrives, against the persons of
//! the records before it; a file is all there at once, so its persons are formed from every
//! candidate pair, the surest first ([`cluster`]), and no record's decision depends on where it
//! stands in the file. The model, the link line and the candidate pairs are the archive's.
//! Normalising, blocking, comparing and scoring run in parallel.

use super::block::BlockIndex;
use super::compare::{compare, Vector};
use super::model::{half_bits, random_pairs, SourceCandidates, Sources, LINK_PROBABILITY};
use super::{Decision, Identity, Model, MpiError, Normalised};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::{Read, Write};

/// The columns of an input file, all required in the header (in any order).
pub const INPUT_COLUMNS: [&str; 12] = [
    "record_id",
    "issuer",
    "patient_id",
    "family_name",
    "given_name",
    "middle_name",
    "birth_date",
    "sex",
    "street",
    "city",
    "postcode",
    "phone",
];

/// One input row.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub record_id: String,
    pub identity: Identity,
}

/// The result of linking a batch: per record, in input order, its person (numbered from 0 in
/// order of each person's first record) and the decision; and the model estimated from the
/// batch.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    pub links: Vec<(usize, Decision)>,
    pub model: Model,
    pub candidate_pairs: u64,
}

/// Links records into persons. A record sent to review gets a person of its own: until somebody
/// decides, it links nothing.
pub fn link_batch(records: &[Identity]) -> Vec<(usize, Decision)> {
    link_batch_with_model(records).links
}

/// [`link_batch`], also returning the model it estimated.
pub fn link_batch_with_model(records: &[Identity]) -> BatchOutcome {
    let normalised: Vec<Normalised> = records.par_iter().map(Normalised::new).collect();
    let index = BlockIndex::new(&normalised);
    // Every record's earlier candidates and their comparison vectors, in parallel.
    let compared: Vec<Vec<(u32, Vector, bool)>> = (0..normalised.len())
        .into_par_iter()
        .map(|i| {
            let r = &normalised[i];
            index
                .earlier_candidates(i)
                .into_iter()
                .map(|j| {
                    let other = &normalised[j];
                    (j as u32, compare(r, other), r.same_local_key(other))
                })
                .collect()
        })
        .collect();
    let random = random_pairs(&normalised);
    let counted = Model::counted(&random, &normalised);
    let sources = Sources::new(&normalised);
    let by_sources = compared
        .par_iter()
        .enumerate()
        .fold(SourceCandidates::new, |mut h, (i, cands)| {
            let adjust = counted.value_adjustments(&normalised[i]);
            for (j, v, _) in cands {
                let half = half_bits(Model::value_adjustment(v, &adjust));
                *h.entry(sources.pair(i, *j as usize))
                    .or_default()
                    .entry((*v, half))
                    .or_default() += 1;
            }
            h
        })
        .reduce(SourceCandidates::new, |mut a, b| {
            for (pair, candidates) in b {
                let into = a.entry(pair).or_default();
                for (v, n) in candidates {
                    *into.entry(v).or_default() += n;
                }
            }
            a
        });
    let model = counted.fit_by_source(&by_sources, &random, &normalised, &sources);
    // Each source pair's model, and the two parts of the weight of each vector its candidate
    // pairs gave.
    let weights: HashMap<(u32, u32), (&Model, WeightParts)> = by_sources
        .iter()
        .map(|(&pair, candidates)| {
            let [a, b] = sources.name_pair(pair);
            let between = model.between(&a, &b);
            let parts = candidates
                .keys()
                .map(|(v, _)| (*v, between.weight_parts(v)))
                .collect();
            (pair, (between, parts))
        })
        .collect();
    // Each candidate pair's match weight, as `Model::score` gives it, in parallel.
    let scored: Vec<Vec<(u32, f64, bool)>> = compared
        .into_par_iter()
        .enumerate()
        .map(|(i, cands)| {
            let adjust = model.value_adjustments(&normalised[i]);
            cands
                .iter()
                .map(|(j, v, same_key)| {
                    let (between, parts) = &weights[&sources.pair(i, *j as usize)];
                    let weight = between.weight_with(v, parts[v], &adjust);
                    (*j, weight, *same_key)
                })
                .collect()
        })
        .collect();
    let candidate_pairs = by_sources
        .values()
        .flat_map(|candidates| candidates.values())
        .sum();
    drop(weights);

    let links = cluster(&model, &normalised, &scored);
    // Half a million records hold millions of small strings: freed on the threads that made
    // them, they take a fraction of the time one thread takes.
    normalised.into_par_iter().for_each(drop);
    scored.into_par_iter().for_each(drop);
    BatchOutcome {
        links,
        model,
        candidate_pairs,
    }
}

/// The two parts of the weight ([`Model::weight_parts`]) of each comparison vector.
type WeightParts = HashMap<Vector, (f64, f64)>;

/// At most this many records of each of two persons are compared before they are joined.
const APART_CHECKED: usize = 32;

/// The whole file's persons at once, the surest links first. Every candidate pair at or above
/// the link line, or of one local key and not below the review line, joins the persons of its
/// two records (pairs of one local key first, then by weight), except:
/// - two persons of several records each are joined by a pair below [`LINK_PROBABILITY`] only
///   when every record of one against every record of the other is at least even odds: a link
///   nearer the line may add a record to a person, but stakes two persons on one guess only
///   where none of their records speaks against it (a woman's records under her maiden name and
///   her married name, joined by a record with both);
/// - no person gets two records the model is as sure are two people (relatives, or a chain of
///   links drifting from one person to another).
///
/// A record with the local key of earlier records, all with demographics below the review line,
/// goes to review, as in the archive (one patient ID seemingly given to two people), and joins
/// nobody. So does a record no pair joined whose best candidate pair is above the review line.
/// The first record of each person is new, the others linked. Unlike deciding in file order, a
/// record with little to go on (an initial, a year alone) cannot start a person that better
/// records of the same person then stay apart from.
fn cluster(
    model: &Model,
    records: &[Normalised],
    scored: &[Vec<(u32, f64, bool)>],
) -> Vec<(usize, Decision)> {
    let n = scored.len();
    // Records whose local key earlier records hold, none of them with like demographics.
    let disputed: Vec<bool> = scored
        .iter()
        .map(|cands| {
            let mut same = cands.iter().filter(|c| c.2).peekable();
            same.peek().is_some() && same.all(|&(_, score, _)| score < model.lower)
        })
        .collect();
    // (same local key, weight, record, earlier record), surest first.
    let mut edges: Vec<(bool, f64, u32, u32)> = scored
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, cands)| {
            let disputed = &disputed;
            cands.iter().filter_map(move |&(j, score, same_key)| {
                let joins = (same_key && score >= model.lower) || score >= model.upper;
                (joins && !disputed[i] && !disputed[j as usize])
                    .then_some((same_key, score, i as u32, j))
            })
        })
        .collect();
    edges.par_sort_unstable_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    // The weight of a pair at LINK_PROBABILITY, and of one as surely two people.
    let sure = (LINK_PROBABILITY / (1.0 - LINK_PROBABILITY)).log2();
    let apart_line = -sure;
    let mut best = vec![f64::NEG_INFINITY; n];
    for (i, cands) in scored.iter().enumerate() {
        for &(j, score, _) in cands {
            best[i] = best[i].max(score);
            best[j as usize] = best[j as usize].max(score);
        }
    }
    let mut root: Vec<u32> = (0..n as u32).collect();
    let mut members: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![i]).collect();
    fn find(root: &mut [u32], mut x: u32) -> u32 {
        while root[x as usize] != x {
            let up = root[root[x as usize] as usize];
            root[x as usize] = up;
            x = up;
        }
        x
    }
    // Pairs of persons (by root) found apart, true where two of their records were as surely
    // two people, false where below even odds only. Persons only grow, so they stay apart: many
    // edges join the same two persons, and each would look again.
    let mut found_apart: HashMap<(u32, u32), bool> = HashMap::new();
    for (_, score, i, j) in edges {
        let (a, b) = (find(&mut root, i), find(&mut root, j));
        if a == b {
            continue;
        }
        let several = members[a as usize].len() > 1 && members[b as usize].len() > 1;
        let even_odds = several && score < sure;
        let pair = (a.min(b), a.max(b));
        match found_apart.get(&pair) {
            Some(true) => continue,
            Some(false) if even_odds => continue,
            _ => {}
        }
        let floor = if even_odds { model.lower } else { apart_line };
        // The first records of each (at most APART_CHECKED a side): a file of one record many
        // times over must not cost the square of its size.
        let apart = members[a as usize].iter().take(APART_CHECKED).any(|&x| {
            members[b as usize]
                .iter()
                .take(APART_CHECKED)
                .any(|&y| model.score(&records[x as usize], &records[y as usize]) < floor)
        });
        if apart {
            found_apart.insert(pair, !even_odds);
            continue;
        }
        let (big, small) = if members[a as usize].len() >= members[b as usize].len() {
            (a, b)
        } else {
            (b, a)
        };
        let moved = std::mem::take(&mut members[small as usize]);
        members[big as usize].extend(moved);
        root[small as usize] = big;
    }
    // Persons numbered in order of their first record.
    let mut person_of_root: Vec<Option<usize>> = vec![None; n];
    let mut persons = 0usize;
    let mut links = Vec::with_capacity(n);
    for (i, &best) in best.iter().enumerate() {
        let r = find(&mut root, i as u32) as usize;
        let alone = members[r].len() == 1;
        let first = person_of_root[r].is_none();
        let person = *person_of_root[r].get_or_insert_with(|| {
            persons += 1;
            persons - 1
        });
        let decision = if !first {
            Decision::Linked
        } else if disputed[i] || (alone && best >= model.lower) {
            Decision::Review
        } else {
            Decision::New
        };
        links.push((person, decision));
    }
    links
}

/// A field value that is not of its column's form (a birth date not YYYYMMDD or no calendar
/// date, a sex code none of M, F, O, U), read as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: u64,
    pub field: &'static str,
    pub value: String,
}

/// What [`read_records`] read: the records, and the values it read as missing.
#[derive(Debug, Clone, Default)]
pub struct ReadRecords {
    pub records: Vec<InputRecord>,
    /// In file order.
    pub malformed: Vec<Malformed>,
}

/// Reads an input file: a header naming [`INPUT_COLUMNS`], then one record per line. Any column
/// but record_id may be empty; record IDs must be unique. A line that is not a record (another
/// number of fields, no record ID, one seen before, not UTF-8) stops the reading. A malformed
/// value stops it only when `strict`; otherwise it is read as missing and listed, because
/// registration data has such values and the rest of the record still identifies a person.
pub fn read_records(input: impl Read, strict: bool) -> Result<ReadRecords, MpiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let line_of = |e: &csv::Error| e.position().map(|p| p.line()).unwrap_or(1);
    let headers = reader
        .headers()
        .map_err(|e| MpiError::Csv {
            line: line_of(&e),
            message: e.to_string(),
        })?
        .clone();
    let mut column = [0usize; INPUT_COLUMNS.len()];
    for (k, name) in INPUT_COLUMNS.iter().enumerate() {
        column[k] = headers
            .iter()
            .position(|h| h.trim() == *name)
            .ok_or_else(|| MpiError::Csv {
                line: 1,
                message: format!(
                    "the header has no column {name} (it needs {})",
                    INPUT_COLUMNS.join(",")
                ),
            })?;
    }
    // Splitting rows is sequential (a quoted field may hold a line break); making records of
    // them, most of reading's time, runs in parallel.
    let mut rows = Vec::new();
    let mut row = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(false) => break,
            Ok(true) => rows.push(row.clone()),
            Err(e) => {
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} fields where the header has {expected_len}"),
                    _ => e.to_string(),
                };
                return Err(MpiError::Csv {
                    line: line_of(&e),
                    message,
                });
            }
        }
    }
    let made: Vec<Result<(InputRecord, Vec<Malformed>), MpiError>> = rows
        .par_iter()
        .map(|row| input_record(row, &column, strict))
        .collect();
    // The first error in file order, whether of one row or a record ID seen before.
    let mut seen = std::collections::HashMap::with_capacity(made.len());
    let mut malformed = Vec::new();
    for (made, row) in made.iter().zip(&rows) {
        let (record, bad) = made.as_ref().map_err(MpiError::clone)?;
        malformed.extend_from_slice(bad);
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        if let Some(first) = seen.insert(record.record_id.as_str(), line) {
            return Err(MpiError::Csv {
                line,
                message: format!("record_id {:?} already on line {first}", record.record_id),
            });
        }
    }
    drop(seen);
    let records = made
        .into_par_iter()
        .filter_map(|r| r.ok().map(|(record, _)| record))
        .collect();
    Ok(ReadRecords { records, malformed })
}

/// One row as a record, the fields in the order of [`INPUT_COLUMNS`] at `column`, and the
/// values it read as missing (an error instead when `strict`).
fn input_record(
    row: &csv::ByteRecord,
    column: &[usize; INPUT_COLUMNS.len()],
    strict: bool,
) -> Result<(InputRecord, Vec<Malformed>), MpiError> {
    let line = row.position().map(|p| p.line()).unwrap_or(0);
    let mut fields: [String; INPUT_COLUMNS.len()] = Default::default();
    for (k, field) in fields.iter_mut().enumerate() {
        let bytes = row.get(column[k]).unwrap_or(b"");
        let text = std::str::from_utf8(bytes).map_err(|_| MpiError::Csv {
            line,
            message: "not valid UTF-8".into(),
        })?;
        *field = text.trim().to_string();
    }
    let [record_id, issuer, patient_id, family_name, given_name, middle_name, birth_date, sex, street, city, postcode, phone] =
        fields;
    if record_id.is_empty() {
        return Err(MpiError::Csv {
            line,
            message: "record_id is empty".into(),
        });
    }
    let [mut birth_date, mut sex] = [birth_date, sex];
    let mut malformed = Vec::new();
    for (field, value, problem) in [
        (
            "birth_date",
            &mut birth_date,
            date_problem as fn(&str) -> Option<&'static str>,
        ),
        ("sex", &mut sex, sex_problem),
    ] {
        if let Some(problem) = problem(value) {
            if strict {
                return Err(MpiError::Csv {
                    line,
                    message: format!("{field} {value:?} {problem}"),
                });
            }
            malformed.push(Malformed {
                line,
                field,
                value: std::mem::take(value),
            });
        }
    }
    Ok((
        InputRecord {
            record_id,
            identity: Identity {
                issuer,
                patient_id,
                family_name,
                given_name,
                middle_name,
                birth_date,
                sex,
                street,
                city,
                postcode,
                phone,
            },
        },
        malformed,
    ))
}

/// Why a birth date is not one, if it is not: YYYYMMDD, a month 1 to 12 and a day 1 to 31.
fn date_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return None;
    }
    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Some("is not YYYYMMDD");
    }
    let (month, day): (u32, u32) = (value[4..6].parse().unwrap(), value[6..].parse().unwrap());
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Some("is no calendar date");
    }
    None
}

/// Why a sex code is not one, if it is not: DICOM's M, F, O, or U for unknown (or the word).
fn sex_problem(value: &str) -> Option<&'static str> {
    let known = ["M", "F", "O", "U", "MALE", "FEMALE", "OTHER", "UNKNOWN"];
    if value.is_empty() || known.iter().any(|k| k.eq_ignore_ascii_case(value)) {
        None
    } else {
        Some("is none of M, F, O, U")
    }
}

/// Writes `record_id,person_id,decision`, one line per record in input order (`record_ids`
/// those of the records linked).
pub fn write_links(
    output: impl Write,
    record_ids: &[String],
    links: &[(usize, Decision)],
) -> Result<(), MpiError> {
    let mut w = csv::Writer::from_writer(output);
    let io = |e: csv::Error| MpiError::Write(e.to_string());
    w.write_record(["record_id", "person_id", "decision"])
        .map_err(io)?;
    for (id, (person, decision)) in record_ids.iter().zip(links) {
        let decision = match decision {
            Decision::Linked => "linked",
            Decision::New => "new",
            Decision::Review => "review",
        };
        let person = (person + 1).to_string();
        w.write_record([id.as_str(), person.as_str(), decision])
            .map_err(io)?;
    }
    w.flush().map_err(|e| MpiError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "record_id,issuer,patient_id,family_name,given_name,middle_name,birth_date,sex,street,city,postcode,phone\n";

    #[test]
    fn bad_files_name_the_line() {
        let err = |text: &str| read_records(text.as_bytes(), true).unwrap_err().to_string();
        let short = format!("{HEADER}r1,A,1,Smith,John,,19650310,M,,,,\nr2,A,2,Smith\n");
        assert!(err(&short).contains("line 3"), "{}", err(&short));
        let date = format!("{HEADER}r1,A,1,Smith,John,,1965-03-10,M,,,,\n");
        assert!(err(&date).contains("line 2") && err(&date).contains("YYYYMMDD"));
        let dup = format!("{HEADER}r1,A,1,Smith,John,,,M,,,,\nr1,A,2,Jones,Mary,,,F,,,,\n");
        assert!(err(&dup).contains("line 3") && err(&dup).contains("line 2"));
        let empty_id = format!("{HEADER},A,1,Smith,John,,,M,,,,\n");
        assert!(err(&empty_id).contains("record_id is empty"));
        assert!(err("record_id,family_name\nr1,Smith\n").contains("no column issuer"));
    }

    #[test]
    fn malformed_values_are_read_as_missing_and_listed() {
        let text = format!(
            "{HEADER}\
             r1,A,1,Smith,John,,1965-03-10,M,,,,\n\
             r2,A,2,Jones,Mary,,19721301,X,,,,\n\
             r3,A,3,Brown,Ann,,19800505,f,,,,\n"
        );
        let read = read_records(text.as_bytes(), false).unwrap();
        assert_eq!(read.records.len(), 3);
        assert_eq!(read.records[0].identity.birth_date, "");
        assert_eq!(read.records[1].identity.sex, "");
        assert_eq!(read.records[2].identity.birth_date, "19800505");
        let seen: Vec<(u64, &str, &str)> = read
            .malformed
            .iter()
            .map(|m| (m.line, m.field, m.value.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (2, "birth_date", "1965-03-10"),
                (3, "birth_date", "19721301"),
                (3, "sex", "X")
            ]
        );
        let err = read_records(text.as_bytes(), true).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("YYYYMMDD"), "{err}");
    }

    /// Two persons of two records each, joined by a pair nearer the line than 0.999: only when
    /// no record of one speaks against a record of the other.
    #[test]
    fn two_persons_join_below_the_surest_line_only_when_no_record_speaks_against_it() {
        let record = |issuer: &str, family: &str, birth_date: &str| {
            Normalised::new(&Identity {
                issuer: issuer.into(),
                family_name: family.into(),
                given_name: "Mary".into(),
                birth_date: birth_date.into(),
                sex: "F".into(),
                ..Identity::default()
            })
        };
        let model = Model {
            upper: 3.0,
            ..Model::default()
        };
        // Maiden name twice, married name twice, and one pair across at 5 bits.
        let scored = vec![
            vec![],
            vec![(0, 12.0, false)],
            vec![(1, 5.0, false)],
            vec![(2, 12.0, false)],
        ];
        let woman = [
            record("A", "Jones", "19720101"),
            record("B", "Jones", "19720101"),
            record("C", "Smith", "19720101"),
            record("D", "Smith", "19720101"),
        ];
        // Every record of one against every record of the other: another family name, the
        // same given name and birth date, at least even odds.
        assert!(model.score(&woman[0], &woman[3]) > model.lower);
        let links = cluster(&model, &woman, &scored);
        assert!(links.iter().all(|l| l.0 == 0), "{links:?}");
        // One of the married name's records born another year: that pair is below even odds,
        // and the two persons stay apart.
        let mut apart = woman.clone();
        apart[3] = record("D", "Smith", "19800101");
        assert!(model.score(&apart[0], &apart[3]) < model.lower);
        let links = cluster(&model, &apart, &scored);
        assert_eq!(
            links.iter().map(|l| l.0).collect::<Vec<_>>(),
            [0, 0, 1, 1],
            "{links:?}"
        );
    }

    #[test]
    fn a_batch_links_duplicates_and_keeps_strangers_apart() {
        let text = format!(
            "{HEADER}\
             a1,A,100,Smith,John,,19650310,M,12 High St,Boston,02139,617-555-0100\n\
             a2,A,101,Jones,Mary,,19720101,F,3 Elm Rd,Salem,01970,\n\
             b1,B,7,SMYTH,Jon,,19651003,M,12 High Street,Boston,02139,\n\
             b2,B,8,Garcia,Ana,,19800505,F,,,,\n\
             c1,,,John,Smith,,19650310,M,,Boston,02139,(617) 555 0100\n\
             d1,D,1,Brown,Lucy,,19910214,F,4 Oak Ave,Lowell,01851,\n\
             d2,D,2,Nguyen,Minh,,19580930,M,77 Bay Rd,Quincy,02169,\n\
             d3,D,3,Kowalski,Piotr,,19441122,M,9 Mill St,Worcester,01608,\n\
             d4,D,4,Okafor,Ada,,20010707,F,5 Pine Ln,Lynn,01901,\n"
        );
        let records = read_records(text.as_bytes(), false).unwrap().records;
        let ids: Vec<Identity> = records.iter().map(|r| r.identity.clone()).collect();
        let links = link_batch(&ids);
        assert_eq!(links[0], (0, Decision::New));
        assert_eq!(links[1], (1, Decision::New));
        assert_eq!(links[2], (0, Decision::Linked));
        assert_eq!(links[3], (2, Decision::New));
        assert_eq!(links[4], (0, Decision::Linked));
        assert!(links[5..].iter().all(|(_, d)| *d == Decision::New));
        // One patient ID of one issuer given to somebody else: a person decides.
        let text = format!(
            "{HEADER}\
             a1,A,100,Smith,John,,19650310,M,12 High St,Boston,02139,\n\
             a2,A,100,Okafor,Ada,,20010707,F,5 Pine Ln,Lynn,01901,\n\
             a3,A,100,Smith,John,,19650310,M,,,,\n\
             b4,B,9,Okafor,Ada,,20010707,F,5 Pine Ln,Lynn,01901,\n"
        );
        let ids: Vec<Identity> = read_records(text.as_bytes(), false)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.identity)
            .collect();
        let same_key = link_batch(&ids);
        assert_eq!(same_key[0], (0, Decision::New));
        assert_eq!(same_key[1].1, Decision::Review);
        assert_eq!(same_key[2], (0, Decision::Linked));
        // Under review, the disputed record joins nobody, not even its own double, which waits
        // for the same decision.
        assert_eq!(same_key[3].1, Decision::Review);
        assert_ne!(same_key[3].0, same_key[1].0);
        let mut out = Vec::new();
        let record_ids: Vec<String> = records.iter().map(|r| r.record_id.clone()).collect();
        write_links(&mut out, &record_ids, &links).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("record_id,person_id,decision\na1,1,new\n"));
        assert!(out.contains("b1,1,linked\n"));
    }
}
