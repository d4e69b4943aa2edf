//! Command-line front end for `strata_synth`: writes a reproducible synthetic
//! DICOM workload (or one large streamed multi-frame instance) to a directory,
//! for benchmarks, demos and manual testing of the archive.
//!
//! ```text
//! cargo run --release --example gen -- --out DIR [--seed N] [--patients N] [--studies N]
//!     [--series N] [--slices N] [--rows N] [--cols N] [--modality ct|mr] [--no-noise]
//! cargo run --release --example gen -- --out DIR --large-frames N [--rows N] [--cols N]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use strata_synth::{self as synth, Modality, SynthOptions};

/// Modality choice on the command line (absent = mix of CT and MR).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModalityArg {
    Ct,
    Mr,
}

/// Generate synthetic DICOM studies (deterministic for a given seed).
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed for all random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of distinct people.
    #[arg(long, default_value_t = 2)]
    patients: usize,
    /// Total number of studies (patients are reused).
    #[arg(long, default_value_t = 3)]
    studies: usize,
    /// Series per study.
    #[arg(long, default_value_t = 1)]
    series: usize,
    /// Instances per series.
    #[arg(long, default_value_t = 4)]
    slices: usize,
    /// Image rows.
    #[arg(long, default_value_t = 64)]
    rows: u16,
    /// Image columns.
    #[arg(long, default_value_t = 64)]
    cols: u16,
    /// Only this modality (default: a mix of CT and MR).
    #[arg(long, value_enum)]
    modality: Option<ModalityArg>,
    /// Disable demographic noise between studies of one person.
    #[arg(long)]
    no_noise: bool,
    /// Instead of studies, stream one multi-frame instance with this many
    /// frames of rows x cols to OUT/large.dcm.
    #[arg(long)]
    large_frames: Option<u32>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let start = Instant::now();
    let (files, bytes) = if let Some(frames) = args.large_frames {
        let path = args.out.join("large.dcm");
        synth::write_large_multiframe(&path, args.seed, args.rows, args.cols, frames)
            .with_context(|| format!("writing {}", path.display()))?;
        (1, std::fs::metadata(&path)?.len())
    } else {
        let opts = SynthOptions {
            seed: args.seed,
            patients: args.patients,
            studies: args.studies,
            series_per_study: args.series,
            slices: args.slices,
            rows: args.rows,
            cols: args.cols,
            modality: args.modality.map(|m| match m {
                ModalityArg::Ct => Modality::Ct,
                ModalityArg::Mr => Modality::Mr,
            }),
            noise: !args.no_noise,
        };
        let paths = synth::generate(&args.out, &opts)
            .with_context(|| format!("generating into {}", args.out.display()))?;
        let mut bytes = 0;
        for p in &paths {
            bytes += std::fs::metadata(p)?.len();
        }
        (paths.len(), bytes)
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {files} files, {bytes} bytes ({:.1} MiB) to {} in {secs:.2} s",
        bytes as f64 / (1024.0 * 1024.0),
        args.out.display()
    );
    Ok(())
}
