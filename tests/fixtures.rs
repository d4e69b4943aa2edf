//! The committed fixtures are exactly what the generator makes, and they import cleanly.

mod common;

use common::{files_under, TestArchive};
use strata_synth::{self as synth, SynthOptions};

/// The options `fixtures/make.sh` passes to the generator.
fn fixture_options() -> SynthOptions {
    SynthOptions {
        seed: 2026,
        patients: 2,
        studies: 3,
        series_per_study: 2,
        slices: 2,
        rows: 32,
        cols: 32,
        modality: None,
        noise: true,
    }
}

fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/studies")
}

#[test]
fn fixtures_are_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let made = synth::generate(dir.path(), &fixture_options()).unwrap();
    let committed = files_under(&fixtures_dir());
    assert_eq!(made.len(), committed.len(), "run fixtures/make.sh");
    for m in &made {
        let rel = m.strip_prefix(dir.path()).unwrap();
        let c = fixtures_dir().join(rel);
        assert_eq!(
            std::fs::read(m).unwrap(),
            std::fs::read(&c).unwrap(),
            "{} drifted: run fixtures/make.sh",
            rel.display()
        );
    }
}

#[test]
fn fixtures_import_and_list() {
    let t = TestArchive::new();
    let out = t.ok(&["import", fixtures_dir().to_str().unwrap()]);
    assert!(
        out.contains("12 stored") && out.contains("0 refused"),
        "{out}"
    );
    let studies = t.ok(&["studies"]);
    assert!(studies.contains("3 studies"), "{studies}");
}
