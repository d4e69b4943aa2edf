//! `strata mpi link` as a user runs it: the real binary on real CSV files, without an archive.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

const HEADER: &str = "record_id,issuer,patient_id,family_name,given_name,middle_name,birth_date,sex,street,city,postcode,phone\n";

/// Links `input` into `dir/persons.csv`, the model estimated written to `dir/model.json`.
fn link(dir: &Path, input: &str) -> std::process::Output {
    let path = dir.join("records.csv");
    std::fs::write(&path, input).unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        // A data directory that does not exist: linking a file must not need one.
        .arg("--data")
        .arg(dir.join("no-archive-here"))
        .args(["mpi", "link", "--input"])
        .arg(&path)
        .arg("--output")
        .arg(dir.join("persons.csv"))
        .arg("--model")
        .arg(dir.join("model.json"))
        .output()
        .unwrap()
}

#[test]
fn a_file_is_linked_into_persons() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{HEADER}\
         1,HOSP A,100,Müller,José,,19650310,M,12 High St,Boston,02139,617-555-0100\n\
         2,HOSP A,101,Jones,Mary,Ann,19720101,F,3 Elm Rd,Salem,01970,\n\
         3,HOSP B,7,MUELLER,Jose,,19651003,M,12 High Street,Boston,02139,\n\
         4,HOSP B,8,Garcia,Ana,,19800505,F,,,,\n\
         5,,,\"Jones, Mary\",,,19720101,F,,Salem,01970,\n\
         6,HOSP C,55,Garcia,Ana,,19800505,F,,,,\n"
    );
    let out = link(dir.path(), &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("persons.csv")).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["record_id", "person_id", "decision"]);
    assert_eq!(rows.len(), 7);
    let person = |r: usize| rows[r][1];
    assert_eq!(rows[1][2], "new");
    assert_eq!(person(3), person(1), "{text}");
    assert_eq!(rows[3][2], "linked");
    assert_eq!(person(5), person(2), "{text}");
    assert_ne!(person(2), person(1));
    assert_ne!(person(4), person(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("linked 6 records"), "{stderr}");
}

#[test]
fn a_bad_line_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{HEADER}\
         1,HOSP A,100,Smith,John,,19650310,M,,,,\n\
         2,HOSP A,101,Jones,Mary\n"
    );
    let out = link(dir.path(), &input);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("records.csv"), "{stderr}");
    assert!(!dir.path().join("persons.csv").exists());

    let out = link(dir.path(), "id,name\n1,Smith\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column record_id"));
}

/// Pairs of `persons.csv` against the true person of each record: (pairs linked that are one
/// person, pairs linked, true pairs, records sent to review; a record sent to review links
/// nothing).
fn pair_counts(persons_csv: &str, truth: &[usize]) -> (usize, usize, usize, usize) {
    let (predicted, review) = predicted_persons(persons_csv);
    let (p, t) = (
        pairs_within(predicted.values()),
        pairs_within(clusters(truth).values()),
    );
    (p.intersection(&t).count(), p.len(), t.len(), review)
}

/// The records of each person `persons.csv` names (a record sent to review alone), and how many
/// records went to review.
fn predicted_persons(persons_csv: &str) -> (HashMap<String, Vec<usize>>, usize) {
    let mut predicted: HashMap<String, Vec<usize>> = HashMap::new();
    let mut review = 0usize;
    for line in persons_csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let record: usize = f[0].parse::<usize>().unwrap() - 1;
        let key = if f[2] == "review" {
            review += 1;
            format!("review {record}")
        } else {
            f[1].to_string()
        };
        predicted.entry(key).or_default().push(record);
    }
    (predicted, review)
}

/// The records of each value of `of` (a person, a household).
fn clusters(of: &[usize]) -> HashMap<usize, Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for (record, &value) in of.iter().enumerate() {
        out.entry(value).or_default().push(record);
    }
    out
}

/// Every pair of records within one cluster, the lesser first.
fn pairs_within<'a>(clusters: impl Iterator<Item = &'a Vec<usize>>) -> HashSet<(usize, usize)> {
    let mut out = HashSet::new();
    for members in clusters {
        for (i, &a) in members.iter().enumerate() {
            for &b in &members[i + 1..] {
                out.insert((a.min(b), a.max(b)));
            }
        }
    }
    out
}

/// Pairs of records of two people of one household, and how many of them `persons.csv` put in
/// one person.
fn relatives_linked(persons_csv: &str, truth: &[usize], households: &[usize]) -> (usize, usize) {
    let linked = pairs_within(predicted_persons(persons_csv).0.values());
    let relatives: Vec<(usize, usize)> = pairs_within(clusters(households).values())
        .into_iter()
        .filter(|&(a, b)| truth[a] != truth[b])
        .collect();
    let together = relatives.iter().filter(|p| linked.contains(p)).count();
    (relatives.len(), together)
}

/// Pairwise precision, recall and F1, and the share sent to review, of [`pair_counts`] over
/// `records` records.
fn figures(
    (correct, linked, true_pairs, review): (usize, usize, usize, usize),
    records: usize,
) -> (f64, f64, f64, f64) {
    let precision = correct as f64 / linked.max(1) as f64;
    let recall = correct as f64 / true_pairs.max(1) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    (precision, recall, f1, review as f64 / records as f64)
}

/// Populations unlike FEBRL's: a survey with addresses, typos, nicknames and initials, and a
/// register with no addresses and several records a person (married women under either name),
/// households of relatives at one address, names as common as a census finds them. Each is
/// linked without labels, with a model estimated from its file alone, and each must meet the
/// targets; so must the five together (about 43,000 records).
#[test]
fn a_survey_and_a_register_without_addresses_are_linked() {
    use strata_synth::persons::{survey_and_register, to_csv, PopulationOptions};
    let (mut all, mut records, mut report) = ((0, 0, 0, 0), 0, String::new());
    // Pairs of two people of one household (a family name, an address, often a birth year in
    // common), and how many of them were linked.
    let mut relatives = (0, 0);
    for seed in [3, 5, 7, 11, 22] {
        let dir = tempfile::tempdir().unwrap();
        let rows = survey_and_register(PopulationOptions {
            seed,
            households: 2500,
        });
        let out = link(dir.path(), &to_csv(&rows));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let text = std::fs::read_to_string(dir.path().join("persons.csv")).unwrap();
        let truth: Vec<usize> = rows.iter().map(|r| r.person).collect();
        let counts = pair_counts(&text, &truth);
        let households: Vec<usize> = rows.iter().map(|r| r.household).collect();
        let (pairs, together) = relatives_linked(&text, &truth, &households);
        relatives = (relatives.0 + pairs, relatives.1 + together);
        let (precision, recall, f1, review) = figures(counts, rows.len());
        report += &format!(
            "seed {seed}, {} records: precision {precision:.5} recall {recall:.5} F1 {f1:.5} \
             review {:.2} %\n",
            rows.len(),
            100.0 * review
        );
        assert!(
            precision >= 0.998 && f1 >= 0.99 && review <= 0.02,
            "{report}"
        );
        // Weighed by source pair: the survey holds each person once, so two of its records
        // are almost never one person, while a survey record and a register record often are.
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("model.json")).unwrap()).unwrap();
        let prior = |a: &str, b: &str| {
            model["source_pairs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["sources"] == serde_json::json!([a, b]))
                .unwrap_or_else(|| panic!("no weights of {a}–{b}: {model}"))["model"]
                ["match_proportion"]
                .as_f64()
                .unwrap()
        };
        let (survey, across) = (prior("SURVEY", "SURVEY"), prior("REGISTER", "SURVEY"));
        assert!(survey * 1000.0 < across, "{survey} against {across}");
        all = (
            all.0 + counts.0,
            all.1 + counts.1,
            all.2 + counts.2,
            all.3 + counts.3,
        );
        records += rows.len();
    }
    let (precision, recall, f1, review) = figures(all, records);
    report += &format!(
        "all {records} records: precision {precision:.5} recall {recall:.5} F1 {f1:.5} review \
         {:.2} %",
        100.0 * review
    );
    report += &format!(
        "; relatives linked {} of {} pairs",
        relatives.1, relatives.0
    );
    eprintln!("{report}");
    assert!(precision >= 0.998, "{report}");
    assert!(f1 >= 0.99, "{report}");
    assert!(review <= 0.02, "{report}");
    // Relatives are not linked on what a household shares: at most one pair in ten thousand.
    assert!(relatives.0 > 50_000, "{relatives:?}");
    assert!(
        relatives.1 * 10_000 <= relatives.0,
        "{relatives:?} {report}"
    );
}

/// Dirty values (birth dates not YYYYMMDD or no date, an unknown sex code) are read as missing,
/// counted and their lines named, and the rest is linked; `--strict` stops at the first.
#[test]
fn malformed_values_are_read_as_missing_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{HEADER}\
         1,HOSP A,100,Smith,John,,19650310,M,12 High St,Boston,02139,\n\
         2,HOSP B,200,Smith,John,,1965-03-10,M,12 High St,Boston,02139,\n\
         3,HOSP A,101,Jones,Mary,,19721301,X,3 Elm Rd,Salem,01970,\n\
         4,HOSP B,201,Jones,Mary,,19721201,F,3 Elm Rd,Salem,01970,\n"
    );
    let out = link(dir.path(), &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 malformed values read as missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("birth_date: 2 on lines 3 (\"1965-03-10\"), 4 (\"19721301\")"),
        "{stderr}"
    );
    assert!(stderr.contains("sex: 1 on lines 4 (\"X\")"), "{stderr}");
    assert!(stderr.contains("linked 4 records"), "{stderr}");
    let text = std::fs::read_to_string(dir.path().join("persons.csv")).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");

    std::fs::remove_file(dir.path().join("persons.csv")).unwrap();
    let path = dir.path().join("records.csv");
    let strict = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data")
        .arg(dir.path().join("no-archive-here"))
        .args(["mpi", "link", "--strict", "--input"])
        .arg(&path)
        .arg("--output")
        .arg(dir.path().join("persons.csv"))
        .output()
        .unwrap();
    assert!(!strict.status.success());
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("YYYYMMDD"),
        "{stderr}"
    );
    assert!(!dir.path().join("persons.csv").exists());
}
