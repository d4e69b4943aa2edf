//! The MPI at scale: registers N generated identities in a fresh index (each matched as at
//! ingest), then times matching probe identities against them through the index, as
//! `POST /api/mpi/match` and ingest do: blocking lookup, scoring, decision.
//!
//! ```text
//! cargo run --release --example mpi_scale -- --persons 1000000 --probes 2000 --dir /tmp/mpi
//! ```

use anyhow::Result;
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;
use strata_index::Index;
use strata_mpi::Identity;

#[derive(Debug, Parser)]
struct Args {
    /// Identities registered before probing.
    #[arg(long, default_value_t = 1_000_000)]
    persons: usize,
    /// Identities matched (and timed) afterwards.
    #[arg(long, default_value_t = 2000)]
    probes: usize,
    /// Where the index is made (emptied first).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const SYLLABLES: [&str; 40] = [
    "an", "bel", "car", "dor", "el", "fa", "gil", "har", "is", "jo", "ka", "lin", "mar", "nor",
    "ol", "per", "qui", "ros", "san", "tor", "ul", "ver", "wil", "xan", "yor", "zel", "bro",
    "chen", "dal", "ev", "fitz", "gar", "hol", "ing", "kow", "lee", "mc", "ny", "ort", "pa",
];
const GIVEN: [&str; 48] = [
    "JAMES",
    "MARY",
    "JOHN",
    "PATRICIA",
    "ROBERT",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "WILLIAM",
    "ELIZABETH",
    "DAVID",
    "BARBARA",
    "RICHARD",
    "SUSAN",
    "JOSEPH",
    "JESSICA",
    "THOMAS",
    "SARAH",
    "CHARLES",
    "KAREN",
    "CHRISTOPHER",
    "NANCY",
    "DANIEL",
    "LISA",
    "MATTHEW",
    "BETTY",
    "ANTHONY",
    "MARGARET",
    "MARK",
    "SANDRA",
    "DONALD",
    "ASHLEY",
    "STEVEN",
    "KIMBERLY",
    "PAUL",
    "EMILY",
    "ANDREW",
    "DONNA",
    "JOSHUA",
    "MICHELLE",
    "KENNETH",
    "CAROL",
    "KEVIN",
    "AMANDA",
    "BRIAN",
    "MELISSA",
    "GEORGE",
    "DEBORAH",
];

fn person(rng: &mut StdRng, n: usize) -> Identity {
    let syllables = rng.gen_range(2..=3);
    let family: String = (0..syllables)
        .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
        .collect::<String>()
        .to_uppercase();
    Identity {
        issuer: format!("HOSP_{}", rng.gen_range(0..8)),
        patient_id: format!("{n:08}"),
        family_name: family,
        given_name: GIVEN[rng.gen_range(0..GIVEN.len())].into(),
        birth_date: format!(
            "{}{:02}{:02}",
            rng.gen_range(1925..2024),
            rng.gen_range(1..=12),
            rng.gen_range(1..=28)
        ),
        sex: if rng.gen_bool(0.5) { "F" } else { "M" }.into(),
        postcode: format!("{:04}", rng.gen_range(1000..9999)),
        ..Identity::default()
    }
}

/// The same person as another hospital records them: a typo, swapped day and month, or as is.
fn variant(rng: &mut StdRng, of: &Identity, n: usize) -> Identity {
    let mut v = of.clone();
    v.issuer = "HOSP_PROBE".into();
    v.patient_id = format!("P{n:08}");
    match rng.gen_range(0..3) {
        0 => {
            let mut chars: Vec<char> = v.given_name.chars().collect();
            let i = rng.gen_range(0..chars.len());
            chars[i] = (b'A' + rng.gen_range(0..26)) as char;
            v.given_name = chars.into_iter().collect();
        }
        1 => {
            let (y, m, d) = (
                &of.birth_date[..4],
                &of.birth_date[4..6],
                &of.birth_date[6..],
            );
            v.birth_date = format!("{y}{d}{m}");
        }
        _ => {}
    }
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Identities registered per call, each call one transaction, as a migration would send them.
/// Not ten thousand: within one SQLite transaction every statement's end walks the in-memory
/// journal of all the pages the transaction changed so far, so a call's cost grows with the
/// square of its size (ten thousand a call fell to 160/s at 400,000 persons).
const REGISTER_CALL: usize = 500;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let index = Index::open(&args.dir.join("index.sqlite"))?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut kept = Vec::new();
    let started = Instant::now();
    let mut registered = 0;
    while registered < args.persons {
        let batch: Vec<Identity> = (registered..(registered + REGISTER_CALL).min(args.persons))
            .map(|n| person(&mut rng, n))
            .collect();
        kept.extend(batch.iter().step_by(500).cloned());
        registered += batch.len();
        index.mpi_register(batch).await?;
        if registered % 100_000 == 0 {
            eprintln!(
                "{registered} registered, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let load = started.elapsed().as_secs_f64();
    println!(
        "registered {} identities in {load:.1} s ({:.0}/s, each matched as at ingest)",
        args.persons,
        args.persons as f64 / load
    );
    let mut times = Vec::with_capacity(args.probes);
    let mut linked = 0;
    for n in 0..args.probes {
        let probe = if n % 2 == 0 {
            let of = &kept[rng.gen_range(0..kept.len())];
            variant(&mut rng, of, n)
        } else {
            person(&mut rng, args.persons + n)
        };
        let t = Instant::now();
        let (decision, _, _) = index.mpi_match(probe).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if decision == strata_mpi::Decision::Linked {
            linked += 1;
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "match one identity against {} persons: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} probes, {} linked)",
        args.persons,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
        args.probes,
        linked
    );
    index.close().await?;
    Ok(())
}
