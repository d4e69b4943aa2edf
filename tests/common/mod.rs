//! Helpers shared by the integration tests: run the real `strata` binary on a fresh data
//! directory, make studies with the project's generator, and open the archive in-process to check
//! what the binary left behind.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use strata::archive::Archive;
use strata::config::Config;
use strata::synth::{self, SynthOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_strata");

pub struct TestArchive {
    pub dir: tempfile::TempDir,
}

impl TestArchive {
    pub fn new() -> TestArchive {
        TestArchive {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(self.data());
        c.env_remove("STRATA_MASTER_KEY").env("STRATA_LOG", "warn");
        c
    }

    /// Runs `strata <args>` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running strata")
    }

    /// Runs `strata <args>` and insists it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Generates studies under `<tmp>/<name>` with the project's generator.
    pub fn generate(&self, name: &str, opts: &SynthOptions) -> Vec<PathBuf> {
        synth::generate(&self.path(name), opts).expect("generating studies")
    }

    pub fn replica(&self, letter: char) -> PathBuf {
        self.data().join(format!("replica-{letter}"))
    }

    /// The object file of `blob` on one replica.
    pub fn blob_file(&self, letter: char, blob: &strata::store::address::BlobId) -> PathBuf {
        self.replica(letter).join(blob.object_key())
    }

    /// Opens the archive in this process (the binary must not be running).
    pub async fn open(&self) -> Arc<Archive> {
        let config = Config::load(&self.data(), None, Vec::new()).expect("config");
        Archive::open(config).await.expect("opening the archive")
    }
}

/// The SOP Instance UID of a Part-10 file.
pub fn sop_uid(path: &Path) -> String {
    let obj = dicom_object::open_file(path).expect("a DICOM file");
    obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .expect("SOP Instance UID")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string()
}

/// Every regular file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}
