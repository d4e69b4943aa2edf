//! `strata mpi link` as a user runs it: the real binary on real CSV files, without an archive.

use std::path::Path;
use std::process::Command;

const HEADER: &str = "record_id,issuer,patient_id,family_name,given_name,middle_name,birth_date,sex,street,city,postcode,phone\n";

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
