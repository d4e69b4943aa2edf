//! Accuracy of batch person matching, as `strata mpi link` links a file, on several sets at once:
//! directories holding `records.csv` and `truth.json` (what `benches/febrl.py export` and
//! `benches/mpi_gen.py` write), and the survey-and-register population of `strata_synth::persons`
//! by seed. Prints pairwise precision, recall and F1, the share sent to review, and persons
//! whole and pure; with `--explain`, the model's weights and the commonest comparison vectors
//! among the pairs missed and the pairs wrongly linked. The truth is read only to score.
//!
//! ```text
//! python3 benches/febrl.py export febrl4 /tmp/febrl/febrl4
//! cargo run --release --example mpi_eval -- /tmp/febrl/febrl4 --synth 22 --synth 7
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;
use strata_mpi::compare::{compare, FIELDS, MISSING};
use strata_mpi::{link_batch_with_model, read_records, Decision, Identity, Normalised};
use strata_synth::persons::{survey_and_register, PopulationOptions};

#[derive(Debug, Parser)]
struct Args {
    /// Directories with records.csv and truth.json (record_id -> true person).
    dirs: Vec<PathBuf>,
    /// Seeds of survey-and-register populations to generate and link.
    #[arg(long)]
    synth: Vec<u64>,
    /// Households in each generated population.
    #[arg(long, default_value_t = 2500)]
    households: usize,
    /// Print the model and the commonest vectors of missed and wrong pairs.
    #[arg(long)]
    explain: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    for dir in &args.dirs {
        let file = std::fs::File::open(dir.join("records.csv"))
            .with_context(|| format!("{}", dir.display()))?;
        let read = read_records(file, false)?;
        let truth: HashMap<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json"))?)?;
        let persons: Vec<String> = read
            .records
            .iter()
            .map(|r| truth[&r.record_id].to_string())
            .collect();
        let ids: Vec<Identity> = read.records.into_iter().map(|r| r.identity).collect();
        evaluate(
            &dir.display().to_string(),
            &ids,
            &persons,
            None,
            args.explain,
        );
    }
    for &seed in &args.synth {
        let rows = survey_and_register(PopulationOptions {
            seed,
            households: args.households,
        });
        let csv = strata_synth::persons::to_csv(&rows);
        let ids: Vec<Identity> = read_records(csv.as_bytes(), false)?
            .records
            .into_iter()
            .map(|r| r.identity)
            .collect();
        let persons: Vec<String> = rows.iter().map(|r| r.person.to_string()).collect();
        let households: Vec<usize> = rows.iter().map(|r| r.household).collect();
        evaluate(
            &format!("survey and register, seed {seed}"),
            &ids,
            &persons,
            Some(&households),
            args.explain,
        );
    }
    Ok(())
}

/// Every pair of records within one cluster, lower index first.
fn pairs_within(clusters: &HashMap<String, Vec<usize>>) -> HashSet<(usize, usize)> {
    let mut out = HashSet::new();
    for members in clusters.values() {
        for (k, &a) in members.iter().enumerate() {
            for &b in &members[k + 1..] {
                out.insert((a.min(b), a.max(b)));
            }
        }
    }
    out
}

/// Links `ids` and scores the links against `truth` (each record's person); `households`, where
/// known, each record's household, to count relatives linked as one person.
fn evaluate(
    name: &str,
    ids: &[Identity],
    truth: &[String],
    households: Option<&[usize]>,
    explain: bool,
) {
    let started = Instant::now();
    let out = link_batch_with_model(ids);
    let seconds = started.elapsed().as_secs_f64();
    // A record sent to review links nothing until a person decides.
    let mut predicted: HashMap<String, Vec<usize>> = HashMap::new();
    let mut review = 0usize;
    for (i, (person, decision)) in out.links.iter().enumerate() {
        let key = if *decision == Decision::Review {
            review += 1;
            format!("review {i}")
        } else {
            person.to_string()
        };
        predicted.entry(key).or_default().push(i);
    }
    let mut true_clusters: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, person) in truth.iter().enumerate() {
        true_clusters.entry(person.clone()).or_default().push(i);
    }
    let (found, real) = (pairs_within(&predicted), pairs_within(&true_clusters));
    let correct = found.intersection(&real).count() as f64;
    let precision = correct / found.len().max(1) as f64;
    let recall = correct / real.len().max(1) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    let pure = predicted
        .values()
        .filter(|m| m.iter().all(|&i| truth[i] == truth[m[0]]))
        .count();
    // A true person is whole when one predicted person holds exactly its records.
    let mut cluster_of: HashMap<usize, &str> = HashMap::new();
    for (key, members) in &predicted {
        for &i in members {
            cluster_of.insert(i, key);
        }
    }
    let whole = true_clusters
        .values()
        .filter(|m| {
            let key = cluster_of[&m[0]];
            predicted[key].len() == m.len() && m.iter().all(|i| cluster_of[i] == key)
        })
        .count();
    println!(
        "{name}: {} records, precision {precision:.5} recall {recall:.5} F1 {f1:.5}, review \
         {:.2} % ({review}), {} false and {} missed pairs; persons pure {:.5}, whole {:.5}; {seconds:.2} s",
        ids.len(),
        100.0 * review as f64 / ids.len() as f64,
        found.len() - correct as usize,
        real.len() - correct as usize,
        pure as f64 / predicted.len() as f64,
        whole as f64 / true_clusters.len() as f64,
    );
    if let Some(households) = households {
        // Pairs of two people of one household, and how many of them were linked.
        let mut by_household: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, &h) in households.iter().enumerate() {
            by_household.entry(h).or_default().push(i);
        }
        let relatives = pairs_within(
            &by_household
                .into_iter()
                .map(|(h, members)| (h.to_string(), members))
                .collect(),
        )
        .into_iter()
        .filter(|&(a, b)| truth[a] != truth[b]);
        let (mut pairs, mut linked) = (0usize, 0usize);
        for pair in relatives {
            pairs += 1;
            linked += usize::from(found.contains(&pair));
        }
        println!(
            "  relatives (two people of one household): {linked} of {pairs} pairs linked, \
             {linked} of the {} false pairs",
            found.len() - correct as usize
        );
    }
    if !explain {
        return;
    }
    let model = &out.model;
    println!(
        "  prior {:.3e}, relatives {:.3e}, link at {:.2}, review from {:.2}",
        model.match_proportion, model.relative_proportion, model.upper, model.lower
    );
    for pair in &model.source_pairs {
        let [a, b] = &pair.sources;
        let weights: Vec<String> = (0..pair.model.fields.len())
            .map(|k| format!("{:+.1}", pair.model.field_weight(k, 0)))
            .collect();
        println!(
            "  {a}–{b}: {} candidate pairs, EM {} iterations, prior {:.3e}, relatives {:.3e}, \
             agreeing weighs {}",
            pair.model.pairs,
            pair.model.iterations,
            pair.model.match_proportion,
            pair.model.relative_proportion,
            weights.join(" ")
        );
    }
    for (k, f) in model.fields.iter().enumerate() {
        let weights: Vec<String> = (0..f.m.len())
            .map(|l| format!("{:+.1}", model.field_weight(k, l as u8)))
            .collect();
        println!("  {:12} weights {}", f.field, weights.join(" "));
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2e}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "      m {}\n      u {}\n      r {}",
            fmt(&f.m),
            fmt(&f.u),
            fmt(&f.r)
        );
    }
    let normalised: Vec<Normalised> = ids.iter().map(Normalised::new).collect();
    let commonest = |title: &str, pairs: Vec<&(usize, usize)>| {
        let mut by_vector: HashMap<String, usize> = HashMap::new();
        for &&(a, b) in &pairs {
            let v = compare(&normalised[b], &normalised[a]);
            let text: Vec<String> = v
                .iter()
                .zip(FIELDS)
                .filter(|(&level, _)| level != MISSING)
                .map(|(level, field)| format!("{}={level}", field.name()))
                .collect();
            *by_vector.entry(text.join(" ")).or_default() += 1;
        }
        let mut by_vector: Vec<(String, usize)> = by_vector.into_iter().collect();
        by_vector.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        println!("  {title} ({}), commonest comparisons:", pairs.len());
        for (vector, n) in by_vector.iter().take(12) {
            println!("    {n:6}  {vector}");
        }
    };
    commonest("missed pairs", real.difference(&found).collect());
    // Why the missed pairs were missed: a record of the pair sent to review, or both decided
    // apart with the pair itself scoring above the link line (never compared, as no blocking
    // key brought them together, or kept apart by a surer pair) or below it.
    let (mut in_review, mut apart_above, mut apart_below) = (0, 0, 0);
    for &(a, b) in real.difference(&found) {
        if out.links[a].1 == Decision::Review || out.links[b].1 == Decision::Review {
            in_review += 1;
        } else if model.score(&normalised[b], &normalised[a]) >= model.upper {
            apart_above += 1;
        } else {
            apart_below += 1;
        }
    }
    println!(
        "  missed: {in_review} with a record in review, {apart_above} apart though the pair \
         scores above the link line, {apart_below} apart and below it"
    );
    commonest("false pairs", found.difference(&real).collect());
    // Which sources the false and the missed pairs join.
    let by_sources = |pairs: Vec<&(usize, usize)>| {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for &&(a, b) in &pairs {
            let (x, y) = (ids[a].issuer.clone(), ids[b].issuer.clone());
            *counts
                .entry(if x <= y { (x, y) } else { (y, x) })
                .or_default() += 1;
        }
        let text: Vec<String> = counts
            .into_iter()
            .map(|((x, y), n)| format!("{x}–{y} {n}"))
            .collect();
        text.join(", ")
    };
    println!(
        "  by sources: false {}; missed {}",
        by_sources(found.difference(&real).collect()),
        by_sources(real.difference(&found).collect())
    );
}
