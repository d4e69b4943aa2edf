//! The Fellegi–Sunter model: for each field and level, how likely that level is between two
//! records of one person (m) and between two records of different people (u). No labelled data
//! is needed anywhere:
//! - u is counted on random pairs of records, which are almost all two people (the few that
//!   are one person are taken out by the m found);
//! - m and the number of true matches come from expectation–maximisation over the candidate
//!   pairs blocking yields: a mixture of one person, relatives and strangers. Relatives (one
//!   household: a family name, an address, often a birth year) agree on several fields at
//!   once, which strangers seldom do; weighed as strangers, a household would look like one
//!   person. When the data holds no households the relatives' class is left out;
//! - the prior odds of a pair are those matches over all pairs, so a match weight is the log2
//!   posterior odds that two records drawn at random are one person;
//! - the thresholds are posterior probabilities ([`LINK_PROBABILITY`], [`REVIEW_PROBABILITY`]);
//!   the link line is lowered while the model expects few wrong links ([`FALSE_LINK_SHARE`]).
//!
//! Exact agreement on a name, city or postcode is further weighed by how common the value is
//! ([`ValueFrequencies`], counted on the same records): two records agreeing on a family name
//! one record in ten thousand holds are stronger evidence than two agreeing on the commonest.
//! The EM weighs candidate pairs so too, else pairs of strangers sharing the commonest names
//! would pass for one person with a wrong birth date, and teach the model that birth dates
//! often disagree.
//!
//! u is taken from random pairs rather than from the non-match side of the EM because blocking
//! selects non-matches that agree on the blocked fields: counted there, agreement on a family
//! name would look common among different people and weigh almost nothing.

use super::block::BlockIndex;
use super::compare::{compare, Field, Vector, FIELDS, MISSING};
use super::Normalised;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A pair is linked when its posterior probability of being one person is at least this. At
/// 0.999 the model itself expects one wrong link per thousand links made at the threshold, and
/// far fewer above it, where most links are.
pub const LINK_PROBABILITY: f64 = 0.999;
/// The link line is lowered below [`LINK_PROBABILITY`] as far as the model expects no more than
/// this share of the candidate pairs it would then link to be two people (the model's own
/// false discovery rate, Müller, Parmigiani and Rice 2006): where most links are far surer than
/// the line, the few nearer it cost little, and a population whose records disagree more (no
/// addresses in one source, names changed by marriage) is not left to review for the want of
/// evidence a single pair cannot have.
pub const FALSE_LINK_SHARE: f64 = 0.001;
/// Below this posterior probability a pair is taken as two people; between the two a person
/// reviews it.
pub const REVIEW_PROBABILITY: f64 = 0.5;

/// EM stops when no probability moves by more than this in an iteration.
const EM_TOLERANCE: f64 = 1e-7;
const EM_MAX_ITERATIONS: usize = 200;
/// Pseudo-counts of pairs that pull the estimates towards the prior: enough that a level seen
/// in a handful of pairs (day and month swapped, say) does not get a weight of ±20 bits from
/// chance, too few to matter for levels seen thousands of times.
const PRIOR_PAIRS: f64 = 20.0;
/// No level is ever certain: a probability is kept at least this far from 0.
const FLOOR: f64 = 1e-6;

/// m and u per level of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldWeights {
    pub field: String,
    /// P(level | same person), level 0 first.
    pub m: Vec<f64>,
    /// P(level | different people).
    pub u: Vec<f64>,
    /// P(level | relatives): two people of one household, who share a family name and an
    /// address and are often born in one year. Empty in a model from before households were
    /// weighed, which then has none.
    #[serde(default)]
    pub r: Vec<f64>,
}

/// Weights, the proportion of matches among candidate pairs, and the two thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub fields: Vec<FieldWeights>,
    /// Probability that two records drawn at random are one person (the prior of every
    /// comparison).
    pub match_proportion: f64,
    /// Match weight (log2 posterior odds) at and above which a pair is linked.
    pub upper: f64,
    /// Match weight below which a pair is two people.
    pub lower: f64,
    /// Probability that two records drawn at random are two relatives (see [`FieldWeights::r`]).
    #[serde(default)]
    pub relative_proportion: f64,
    /// Candidate pairs the estimate was made from (0 for the prior).
    pub pairs: u64,
    pub iterations: usize,
    /// How common each value of [`VALUE_FIELDS`] is; empty in the prior, which weighs every
    /// agreement alike.
    #[serde(default)]
    pub frequencies: Vec<ValueFrequencies>,
    /// The pairs of sources weighed by weights of their own ([`Model::between`]); empty in the
    /// prior and where the records came from one source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_pairs: Vec<SourcePair>,
}

/// The weights of pairs of records from two sources (issuers), or two records of one source:
/// m, relatives' probabilities and the shares of matches and relatives among their pairs,
/// estimated by the EM over those pairs alone. u, the value frequencies and the thresholds are
/// the whole model's, copied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePair {
    /// The two issuers, the lesser first (the same twice for pairs within one source).
    pub sources: [String; 2],
    pub model: Model,
}

/// A pair of sources needs at least this many candidate pairs to be weighed apart: the EM
/// then has hundreds of matches to count levels in wherever the pair holds many.
const SOURCE_PAIR_MIN_CANDIDATES: u64 = 2_000;
/// At most this many pairs of sources, those with the most candidate pairs, are weighed apart
/// (the rest by the whole model): it bounds the stored model and the lookup of a pair's
/// weights.
const SOURCE_PAIRS_KEPT: usize = 16;
/// A source pair's EM is drawn towards the whole model's m and relatives by this many
/// pseudo-pairs: a pair of sources holding few matches (a source that holds each person once,
/// against itself) keeps the whole model's m rather than one from a handful of pairs.
const SOURCE_PRIOR_PAIRS: f64 = 200.0;

/// Each record's source (issuer) numbered, the numbers in the order of the names, and how many
/// records each source holds.
pub struct Sources {
    names: Vec<String>,
    of: Vec<u32>,
    counts: Vec<f64>,
}

impl Sources {
    pub fn new(records: &[Normalised]) -> Sources {
        let mut names: Vec<&str> = records
            .iter()
            .map(|r| r.issuer.as_str())
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        names.sort_unstable();
        let number: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(k, name)| (*name, k as u32))
            .collect();
        let of: Vec<u32> = records.iter().map(|r| number[r.issuer.as_str()]).collect();
        let mut counts = vec![0.0; names.len()];
        for &k in &of {
            counts[k as usize] += 1.0;
        }
        Sources {
            names: names.into_iter().map(String::from).collect(),
            of,
            counts,
        }
    }

    /// The source pair of records `i` and `j`, the lesser number first.
    pub fn pair(&self, i: usize, j: usize) -> (u32, u32) {
        let (a, b) = (self.of[i], self.of[j]);
        (a.min(b), a.max(b))
    }

    /// The names of a source pair's two sources.
    pub fn name_pair(&self, (a, b): (u32, u32)) -> [String; 2] {
        [
            self.names[a as usize].clone(),
            self.names[b as usize].clone(),
        ]
    }
}

/// Candidate pairs by the pair of sources ([`Sources::pair`]) their records come from.
pub type SourceCandidates = HashMap<(u32, u32), Candidates>;

/// What [`Model::em`] converged on: the model and the shares of matches and relatives among
/// the candidate pairs.
struct Em {
    model: Model,
    matches: f64,
    relatives: f64,
    iterations: usize,
}

impl Em {
    /// The shares of matches and of relatives among `all_pairs` pairs of records, the EM's
    /// shares being among `total` candidate pairs: no share of matches when there were no
    /// pairs, and none of relatives when fewer than one pair of relatives is expected among
    /// the candidates (the data has no households, and the prior's relatives, whose address
    /// agreement would be strong evidence against a match, are not weighed at all).
    fn proportions(&self, total: f64, all_pairs: f64) -> (Option<f64>, f64) {
        let matches = (total > 0.0 && all_pairs > 0.0)
            .then(|| (self.matches * total / all_pairs).clamp(1e-12, 0.5));
        let relatives = if self.relatives * total >= 1.0 && all_pairs > 0.0 {
            (self.relatives * total / all_pairs).clamp(0.0, 0.5)
        } else {
            0.0
        };
        (matches, relatives)
    }
}

/// `counts` made probabilities, drawn towards `prior` by `prior_pairs` pseudo-counts and kept
/// at least [`FLOOR`] from 0.
fn smooth(counts: &[f64], prior: &[f64], prior_pairs: f64) -> Vec<f64> {
    let sum: f64 = counts.iter().sum::<f64>() + prior_pairs;
    counts
        .iter()
        .zip(prior)
        .map(|(c, p)| ((c + prior_pairs * p) / sum).max(FLOOR))
        .collect()
}

/// How many pairs of a histogram show each level of each field.
fn level_counts(h: &Histogram) -> Vec<Vec<f64>> {
    let mut counts: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels()]).collect();
    for (v, &n) in h {
        for (k, &level) in v.iter().enumerate() {
            if level != MISSING {
                counts[k][level as usize] += n as f64;
            }
        }
    }
    counts
}

/// The candidates in a fixed order (by vector, then value adjustment), so the EM's sums are
/// the same on every run, each with what its value adjustment does to strangers and its count;
/// and the count of all.
fn entries_of(candidates: &Candidates) -> (Vec<(Vector, f64, f64)>, f64) {
    let mut entries: Vec<(Vector, f64, f64)> = candidates
        .iter()
        .map(|(&(v, half), &n)| (v, (-(half as f64) / 2.0).exp2(), n as f64))
        .collect();
    entries.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let total = candidates.values().map(|&n| n as f64).sum();
    (entries, total)
}

/// The fields whose exact agreement is weighed by the value agreed on: the ones where some
/// values are far commoner than others (a few family names, given names and towns hold much
/// of any population). Streets are left out: with the house number, nearly every value is
/// unique, so its frequency says no more than the field's u.
pub const VALUE_FIELDS: [Field; 4] = [Field::Family, Field::Given, Field::City, Field::Postcode];

/// At most this many values of a field are listed with their own frequency (the commonest);
/// the rest share one. It bounds the stored model (tens of kilobytes) while every value held by
/// more than a few records in ten thousand keeps its own weight.
const LISTED_VALUES: usize = 1000;

/// Records' worth of the field's average agreement (its u) that every value's frequency is
/// drawn towards: a value must be counted in about this many records before its own count
/// outweighs the average, so a handful of records (a small batch, a new archive) gives no
/// value a strong weight of its own by chance.
const FREQUENCY_PRIOR_RECORDS: f64 = 100.0;

/// How common the values of one field are among the records a model was estimated from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueFrequencies {
    pub field: String,
    /// For each of the commonest values, the chance that another record holds it.
    pub common: BTreeMap<String, f64>,
    /// The same for a value not listed, averaged over the records holding an unlisted value.
    pub rest: f64,
}

impl ValueFrequencies {
    /// Counts the values of `field` in `records` (records without the field are not counted),
    /// each frequency drawn towards `u`, the chance that two different people agree on the
    /// field at all.
    pub fn count(field: Field, records: &[Normalised], u: f64) -> ValueFrequencies {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for r in records {
            let v = value_of(field, r);
            if !v.is_empty() {
                *counts.entry(v).or_default() += 1;
            }
        }
        let total = counts.values().sum::<u64>() as f64;
        // The chance that another record holds a value `count` records hold (the record
        // itself left out), drawn towards u.
        let other = |count: f64| {
            let seen = (count - 1.0).max(0.0) / (total - 1.0).max(1.0);
            (seen * total + FREQUENCY_PRIOR_RECORDS * u) / (total + FREQUENCY_PRIOR_RECORDS)
        };
        let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
        by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let rest = &by_count[by_count.len().min(LISTED_VALUES)..];
        // Averaged over the records holding an unlisted value.
        let held: f64 = rest.iter().map(|&(_, c)| c as f64).sum();
        let rest = if held > 0.0 {
            rest.iter()
                .map(|&(_, c)| c as f64 * other(c as f64))
                .sum::<f64>()
                / held
        } else {
            u
        };
        ValueFrequencies {
            field: field.name().into(),
            common: by_count
                .iter()
                .take(LISTED_VALUES)
                .map(|&(v, c)| (v.to_string(), other(c as f64)))
                .collect(),
            rest,
        }
    }

    /// The chance that another record holds `value`.
    pub fn of(&self, value: &str) -> f64 {
        self.common.get(value).copied().unwrap_or(self.rest)
    }
}

/// The value of a field that [`ValueFrequencies`] counts.
fn value_of(field: Field, r: &Normalised) -> &str {
    match field {
        Field::Family => &r.family,
        Field::Given => &r.given,
        Field::Middle => &r.middle,
        Field::BirthDate => &r.birth_date,
        Field::Sex => &r.sex,
        Field::Street => &r.street,
        Field::City => &r.city,
        Field::Postcode => &r.postcode,
        Field::Phone => &r.phone,
    }
}

/// For one record, what exact agreement on each of [`VALUE_FIELDS`] adds to or takes from the
/// field's weight, in bits: log2(u / f), the field's u at exact agreement over the frequency of
/// the record's own value. Computed once per record, not per pair.
pub type ValueAdjustments = [f64; VALUE_FIELDS.len()];

/// Comparison vectors and how many candidate pairs gave each.
pub type Histogram = HashMap<Vector, u64>;

/// Comparison vectors of candidate pairs with how much the values agreed on are worth (the
/// [`Model::value_adjustments`] of the fields agreeing exactly, in half bits), and how many
/// pairs gave each: the EM weighs a pair agreeing on a rare name as the final weights do.
pub type Candidates = HashMap<(Vector, i16), u64>;

/// The value adjustment of a pair in the half bits of [`Candidates`].
pub fn half_bits(adjustment: f64) -> i16 {
    (adjustment * 2.0).round().clamp(-100.0, 100.0) as i16
}

fn log2_odds(p: f64) -> f64 {
    (p / (1.0 - p)).log2()
}

impl Default for Model {
    /// Weights from what is known of registration data in general (names and dates agree in
    /// most records of one person and in very few random pairs; dates are mistyped in a few
    /// percent of records), and the prior of an archive of about 100,000 records with one
    /// further record per person, so the archive links sensibly before it has data of its own.
    fn default() -> Model {
        let f = |field: Field, m: &[f64], u: &[f64], r: &[f64]| FieldWeights {
            field: field.name().into(),
            m: m.to_vec(),
            u: u.to_vec(),
            r: r.to_vec(),
        };
        // Relatives share the family name and the address and seldom a given name; a birth
        // date only as twins do, and a birth year as partners and twins do.
        let fields = vec![
            f(
                Field::Family,
                &[0.86, 0.07, 0.03, 0.01, 0.03],
                &[0.003, 0.002, 0.03, 0.72, 0.245],
                &[0.85, 0.03, 0.02, 0.06, 0.04],
            ),
            f(
                Field::Given,
                &[0.84, 0.07, 0.02, 0.01, 0.02, 0.04],
                &[0.006, 0.004, 0.002, 0.048, 0.002, 0.938],
                &[0.02, 0.02, 0.01, 0.04, 0.01, 0.90],
            ),
            f(
                Field::Middle,
                &[0.80, 0.15, 0.05],
                &[0.006, 0.06, 0.934],
                &[0.05, 0.15, 0.80],
            ),
            f(
                Field::BirthDate,
                &[0.90, 0.02, 0.04, 0.02, 0.01, 0.01],
                &[0.00004, 0.00001, 0.002, 0.0003, 0.012, 0.98565],
                &[0.02, 0.001, 0.05, 0.005, 0.06, 0.864],
            ),
            f(Field::Sex, &[0.98, 0.02], &[0.5, 0.5], &[0.5, 0.5]),
            f(
                Field::Street,
                &[0.70, 0.15, 0.15],
                &[0.0001, 0.001, 0.9989],
                &[0.85, 0.05, 0.10],
            ),
            f(
                Field::City,
                &[0.80, 0.10, 0.10],
                &[0.01, 0.01, 0.98],
                &[0.90, 0.03, 0.07],
            ),
            f(
                Field::Postcode,
                &[0.80, 0.10, 0.10],
                &[0.002, 0.01, 0.988],
                &[0.90, 0.03, 0.07],
            ),
            f(
                Field::Phone,
                &[0.85, 0.15],
                &[0.00001, 0.99999],
                &[0.05, 0.95],
            ),
        ];
        Model::with_thresholds(fields, 1e-5, 0, 0)
    }
}

/// The stages of the EM ([`Model::fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// One person against everyone else, every agreement alike.
    Plain,
    /// The values agreed on weighed by how common they are.
    Values,
    /// Relatives apart from strangers.
    Households,
}

/// The fields whose relatives' probabilities are the prior's, not estimated: they define a
/// household.
const RELATIVES_BY_DEFINITION: [Field; 2] = [Field::Family, Field::BirthDate];

/// Pairs drawn at random for u: enough that a level a few pairs in ten thousand show is
/// counted tens of times.
const RANDOM_PAIRS: usize = 300_000;

/// Comparison vectors of pairs drawn at random (seeded, so the same records give the same
/// model); pairs of one local key are left out, being one person by definition.
pub fn random_pairs(records: &[Normalised]) -> Histogram {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    let n = records.len();
    if n < 2 {
        return Histogram::new();
    }
    let all = n as u128 * (n as u128 - 1) / 2;
    let draws = RANDOM_PAIRS.min(all as usize);
    (0..draws)
        .into_par_iter()
        .chunks(10_000)
        .map(|chunk| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(chunk[0] as u64);
            let mut h = Histogram::new();
            for _ in chunk {
                let i = rng.gen_range(0..n);
                let j = (i + rng.gen_range(1..n)) % n;
                if !records[i].same_local_key(&records[j]) {
                    *h.entry(compare(&records[i], &records[j])).or_default() += 1;
                }
            }
            h
        })
        .reduce(Histogram::new, |mut a, b| {
            for (v, c) in b {
                *a.entry(v).or_default() += c;
            }
            a
        })
}

impl Model {
    fn with_thresholds(
        fields: Vec<FieldWeights>,
        match_proportion: f64,
        pairs: u64,
        iterations: usize,
    ) -> Model {
        Model {
            fields,
            match_proportion,
            relative_proportion: 0.0,
            upper: log2_odds(LINK_PROBABILITY),
            lower: log2_odds(REVIEW_PROBABILITY),
            pairs,
            iterations,
            frequencies: Vec::new(),
            source_pairs: Vec::new(),
        }
    }

    /// True when every field has the levels [`compare`] grades it in today (a model stored by an
    /// older version may not), and relatives' probabilities, where there are any, as many.
    pub fn has_current_levels(&self) -> bool {
        self.fields.len() == FIELDS.len()
            && self.fields.iter().zip(FIELDS).all(|(f, field)| {
                let n = field.levels();
                f.m.len() == n && f.u.len() == n && (f.r.is_empty() || f.r.len() == n)
            })
            && (self.relative_proportion == 0.0 || self.fields.iter().all(|f| !f.r.is_empty()))
            && self
                .source_pairs
                .iter()
                .all(|p| p.model.has_current_levels())
    }

    /// The prior model with what random pairs and value counts give before any EM: u of random
    /// pairs and the values' frequencies, so that candidate pairs can be weighed by the values
    /// they agree on ([`Model::value_adjustments`]) before [`Model::fit`].
    pub fn counted(random: &Histogram, records: &[Normalised]) -> Model {
        let mut model = Model::default();
        let counts = level_counts(random);
        for (f, counts) in model.fields.iter_mut().zip(&counts) {
            f.u = smooth(counts, &f.u, PRIOR_PAIRS);
        }
        model.frequencies = VALUE_FIELDS
            .iter()
            .map(|&f| ValueFrequencies::count(f, records, model.fields[f as usize].u[0]))
            .collect();
        model
    }

    /// The value adjustments of a pair agreeing as `v` does, `adjust` the first record's.
    pub fn value_adjustment(v: &Vector, adjust: &ValueAdjustments) -> f64 {
        VALUE_FIELDS
            .iter()
            .enumerate()
            .filter(|(_, f)| v[**f as usize] == 0)
            .map(|(t, _)| adjust[t])
            .sum()
    }

    /// Estimates the model from unlabelled records: u from random pairs, m and the number of
    /// matches by EM over every candidate pair that blocking yields, for the whole and for each
    /// pair of sources with pairs enough ([`Model::fit_by_source`]).
    pub fn estimate(records: &[Normalised]) -> Model {
        let index = BlockIndex::new(records);
        let random = random_pairs(records);
        let counted = Model::counted(&random, records);
        let sources = Sources::new(records);
        let mut candidates = SourceCandidates::new();
        for (i, r) in records.iter().enumerate() {
            let adjust = counted.value_adjustments(r);
            for j in index.earlier_candidates(i) {
                let v = compare(r, &records[j]);
                let half = half_bits(Model::value_adjustment(&v, &adjust));
                *candidates
                    .entry(sources.pair(i, j))
                    .or_default()
                    .entry((v, half))
                    .or_default() += 1;
            }
        }
        counted.fit_by_source(&candidates, &random, records, &sources)
    }

    /// Fits the model to the comparison vectors of candidate pairs and of random pairs among
    /// `records`, with this model as the starting point and the prior, and counts the values
    /// of [`VALUE_FIELDS`] in `records`.
    pub fn fit(
        &self,
        candidates: &Candidates,
        random: &Histogram,
        records: &[Normalised],
    ) -> Model {
        let records = records.len();
        let prior = Model::default();
        // u of random pairs: what two different people share by chance.
        let random_counts = level_counts(random);
        let u_random: Vec<Vec<f64>> = (0..FIELDS.len())
            .map(|k| smooth(&random_counts[k], &prior.fields[k].u, PRIOR_PAIRS))
            .collect();
        let (entries, total) = entries_of(candidates);
        let mut start = self.clone();
        // The EM's own u is that of candidate pairs (non-matches that share a blocking key);
        // it starts halfway between the random pairs' and indifference.
        for (k, f) in start.fields.iter_mut().enumerate() {
            let levels = f.u.len() as f64;
            f.u = u_random[k].iter().map(|u| 0.5 * u + 0.5 / levels).collect();
        }
        let em = start.em(
            &entries,
            total,
            (&prior, &u_random, PRIOR_PAIRS),
            Stage::Plain,
            (0.5, 0.0),
        );
        // The matches the EM found among candidate pairs, over all pairs of records.
        let all_pairs = (records as f64) * (records as f64 - 1.0) / 2.0;
        let (match_proportion, relative_proportion) = em.proportions(total, all_pairs);
        let match_proportion = match_proportion.unwrap_or(self.match_proportion);
        // Random pairs are almost all two people, but not all: one in 1/match_proportion is one
        // person, and where chance agreement is rarer still (a full birth date, a phone number)
        // those few pairs are most of the agreement counted. Their expected share, by the m the
        // EM found, is taken out, so u is what two different people share.
        let u_random: Vec<Vec<f64>> = (0..FIELDS.len())
            .map(|k| {
                let present: f64 = random_counts[k].iter().sum();
                let others: Vec<f64> = random_counts[k]
                    .iter()
                    .zip(&em.model.fields[k].m)
                    .map(|(&c, &m)| (c - match_proportion * present * m).max(0.0))
                    .collect();
                smooth(&others, &prior.fields[k].u, PRIOR_PAIRS)
            })
            .collect();
        let fields = em
            .model
            .fields
            .into_iter()
            .zip(u_random)
            .map(|(f, u)| FieldWeights { u, ..f })
            .collect();
        let mut model = Model {
            frequencies: self.frequencies.clone(),
            relative_proportion,
            ..Model::with_thresholds(fields, match_proportion, total as u64, em.iterations)
        };
        model.upper = model.link_line([(&model, candidates)]);
        model
    }

    /// [`Model::fit`] to the candidate pairs of every pair of sources together; then, for each
    /// pair of sources with candidate pairs enough, m, relatives and the share of matches of
    /// its own ([`Model::between`]); and the link line over all candidate pairs, each weighed
    /// by its sources' model. Sources differ in how they record a person: one may hold each
    /// person once (its pairs are then almost never one person), another several times over
    /// the years; one may mistype names another keeps clean.
    pub fn fit_by_source(
        &self,
        candidates: &SourceCandidates,
        random: &Histogram,
        records: &[Normalised],
        sources: &Sources,
    ) -> Model {
        let mut all = Candidates::new();
        for c in candidates.values() {
            for (key, n) in c {
                *all.entry(*key).or_default() += n;
            }
        }
        let mut model = self.fit(&all, random, records);
        if candidates.len() < 2 {
            return model;
        }
        let mut own: Vec<(&(u32, u32), &Candidates, u64)> = candidates
            .iter()
            .map(|(key, c)| (key, c, c.values().sum::<u64>()))
            .filter(|&(_, _, n)| n >= SOURCE_PAIR_MIN_CANDIDATES)
            .collect();
        own.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        own.truncate(SOURCE_PAIRS_KEPT);
        // Each source pair's EM on a thread of its own: a file from six hospitals has sixteen.
        use rayon::prelude::*;
        let pairs: Vec<SourcePair> = own
            .par_iter()
            .map(|&(&(a, b), c, _)| {
                let (na, nb) = (sources.counts[a as usize], sources.counts[b as usize]);
                let all_pairs = if a == b {
                    na * (na - 1.0) / 2.0
                } else {
                    na * nb
                };
                SourcePair {
                    sources: sources.name_pair((a, b)),
                    model: model.fit_source_pair(c, all_pairs),
                }
            })
            .collect();
        model.source_pairs = pairs;
        let line = model.link_line(candidates.iter().map(|(&key, c)| {
            let [a, b] = sources.name_pair(key);
            (model.between(&a, &b), c)
        }));
        model.upper = line;
        for p in &mut model.source_pairs {
            p.model.upper = line;
        }
        model
    }

    /// m, relatives and the proportions of one pair of sources: the EM over its candidate pairs
    /// alone, begun from this (the whole) model and drawn towards it, so that a source pair
    /// with few matches among its pairs keeps the whole model's m. u, the value frequencies and
    /// the thresholds stay the whole model's.
    fn fit_source_pair(&self, candidates: &Candidates, all_pairs: f64) -> Model {
        let (entries, total) = entries_of(candidates);
        let mut start = self.clone();
        start.frequencies = Vec::new();
        start.source_pairs = Vec::new();
        let whole_u: Vec<Vec<f64>> = self.fields.iter().map(|f| f.u.clone()).collect();
        for f in start.fields.iter_mut() {
            let levels = f.u.len() as f64;
            f.u = f.u.iter().map(|u| 0.5 * u + 0.5 / levels).collect();
        }
        // Begun from the shares of matches and relatives the whole model expects among these
        // pairs, near where most source pairs end, so the EM has little way to go.
        let share = |proportion: f64| (proportion * all_pairs / total).clamp(FLOOR, 0.45);
        let (stage, proportions) = if self.relative_proportion > 0.0 {
            (
                Stage::Households,
                (
                    share(self.match_proportion),
                    share(self.relative_proportion),
                ),
            )
        } else {
            (Stage::Values, (share(self.match_proportion), 0.0))
        };
        let em = start.em(
            &entries,
            total,
            (self, &whole_u, SOURCE_PRIOR_PAIRS),
            stage,
            proportions,
        );
        let (match_proportion, relative_proportion) = em.proportions(total, all_pairs);
        let mut model = em.model;
        for (f, u) in model.fields.iter_mut().zip(&whole_u) {
            f.u.clone_from(u);
        }
        model.match_proportion = match_proportion.unwrap_or(self.match_proportion);
        // Relatives are the population's, not the sources': a source pair may show more of
        // them than the whole (where addresses make households plain), but never fewer, for
        // where the fields that show a household are missing (a source without addresses) the
        // EM cannot tell relatives from strangers, and twins would pass for one person.
        model.relative_proportion = relative_proportion.max(self.relative_proportion);
        model.pairs = total as u64;
        model.iterations = em.iterations;
        model
    }

    /// Expectation–maximisation over candidate pairs, from this model: m, relatives' and
    /// strangers' probabilities per level and the share of each among the candidates, each
    /// drawn towards `prior` (strangers' towards `u_prior`) by `prior_pairs` pseudo-pairs. It
    /// goes in stages from `first`, each from where the last converged: one person against
    /// everyone else; then with the values agreed on weighed; then with relatives apart (when
    /// begun at the first stage; a source pair's EM begins at the second or the third). Begun
    /// with all at once, a small population with few names can settle on "one person" meaning
    /// something else (a common given name at one postcode).
    fn em(
        &self,
        entries: &[(Vector, f64, f64)],
        total: f64,
        (prior, u_prior, prior_pairs): (&Model, &[Vec<f64>], f64),
        first: Stage,
        (mut pm, mut pr): (f64, f64),
    ) -> Em {
        // Three kinds of candidate pair: one person, relatives, strangers. Relatives are
        // weighed apart because among candidates they are many, and their agreements (family
        // name, address, birth year) come together rather than one by one.
        let mut model = self.clone();
        let mut stage = first;
        let mut iterations = 0;
        let mut stage_iterations = 0;
        while total > 0.0 && iterations < 3 * EM_MAX_ITERATIONS {
            let households = stage == Stage::Households;
            iterations += 1;
            stage_iterations += 1;
            // One pass over the candidates: each vector's chance of being one person,
            // relatives or strangers, added to its levels' counts for each.
            let zeros =
                || -> Vec<Vec<f64>> { FIELDS.iter().map(|f| vec![0.0; f.levels()]).collect() };
            let (mut m_counts, mut r_counts, mut u_counts) = (zeros(), zeros(), zeros());
            let (mut matches, mut relatives) = (0.0, 0.0);
            for (v, rarity, n) in entries {
                let (mut a, mut b, mut c) = (pm, pr, 1.0 - pm - pr);
                for (k, &level) in v.iter().enumerate() {
                    if level != MISSING {
                        let (f, l) = (&model.fields[k], level as usize);
                        a *= f.m[l];
                        b *= f.r[l];
                        c *= f.u[l];
                    }
                }
                // A value agreed on that strangers share less often than the field's u (a
                // rare name) makes strangers less likely by as much.
                if stage != Stage::Plain {
                    c *= rarity;
                }
                let sum = a + b + c;
                let (a, b, c) = (a / sum * n, b / sum * n, c / sum * n);
                for (k, &level) in v.iter().enumerate() {
                    if level != MISSING {
                        let l = level as usize;
                        m_counts[k][l] += a;
                        r_counts[k][l] += b;
                        u_counts[k][l] += c;
                    }
                }
                matches += a;
                relatives += b;
            }
            let mut next = model.clone();
            let mut moved: f64 = 0.0;
            for k in 0..FIELDS.len() {
                let mut m = smooth(&m_counts[k], &prior.fields[k].m, prior_pairs);
                let r = smooth(&r_counts[k], &prior.fields[k].r, prior_pairs);
                let u = smooth(&u_counts[k], &u_prior[k], prior_pairs);
                // Until the last stage, a family name differing between two women weighs as one
                // differing between any two records: free from the start, on a small population
                // with few names, "one person" can drift to "two women born on one day".
                if FIELDS[k] == Field::Family && !households {
                    let (both_m, both_u) = (m[3] + m[4], u[3] + u[4]);
                    m[3] = both_m * u[3] / both_u;
                    m[4] = both_m * u[4] / both_u;
                }
                for l in 0..m.len() {
                    moved = moved
                        .max((m[l] - model.fields[k].m[l]).abs())
                        .max((u[l] - model.fields[k].u[l]).abs());
                    if households {
                        moved = moved.max((r[l] - model.fields[k].r[l]).abs());
                    }
                }
                next.fields[k].m = m;
                // What makes relatives relatives is kept as the prior says: one family name,
                // and birth dates that agree only as twins'. Estimated too, the class could as
                // well become one person's records with a misspelt family name.
                if households && !RELATIVES_BY_DEFINITION.contains(&FIELDS[k]) {
                    next.fields[k].r = r;
                }
                next.fields[k].u = u;
            }
            let qm = (matches / total).clamp(FLOOR, 1.0 - FLOOR);
            let qr = if households {
                (relatives / total).clamp(FLOOR, 1.0 - FLOOR)
            } else {
                0.0
            };
            moved = moved.max((qm - pm).abs()).max((qr - pr).abs());
            (pm, pr) = (qm, qr);
            next.match_proportion = pm;
            model = next;
            if moved < EM_TOLERANCE || stage_iterations == EM_MAX_ITERATIONS {
                stage_iterations = 0;
                match stage {
                    Stage::Plain => stage = Stage::Values,
                    Stage::Values if first == Stage::Plain => {
                        stage = Stage::Households;
                        pr = 0.1 * (1.0 - pm);
                    }
                    Stage::Values | Stage::Households => break,
                }
            }
        }
        Em {
            model,
            matches: pm,
            relatives: pr,
            iterations,
        }
    }

    /// The lowest match weight, no higher than that of [`LINK_PROBABILITY`] and above the review
    /// line, at which the candidate pairs weighing at least as much hold no more than
    /// [`FALSE_LINK_SHARE`] pairs of two people by the model's own posterior probabilities.
    /// Each group of candidate pairs is weighed by its own model (its sources').
    fn link_line<'a>(&self, groups: impl IntoIterator<Item = (&'a Model, &'a Candidates)>) -> f64 {
        let mut weighed: Vec<(f64, f64)> = groups
            .into_iter()
            .flat_map(|(model, candidates)| {
                candidates.iter().map(move |(&(v, half), &n)| {
                    let w = model.combine(model.weight_parts(&v), half as f64 / 2.0);
                    (w, n as f64)
                })
            })
            .filter(|&(w, _)| w > self.lower)
            .collect();
        weighed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
        let (mut pairs, mut wrong, mut line) = (0.0, 0.0, self.upper);
        // Pairs of one weight are all linked or none: each run of equal weights is added whole.
        let mut k = 0;
        while k < weighed.len() {
            let w = weighed[k].0;
            while k < weighed.len() && weighed[k].0 == w {
                pairs += weighed[k].1;
                wrong += weighed[k].1 * (1.0 - Model::probability(w));
                k += 1;
            }
            if wrong > FALSE_LINK_SHARE * pairs {
                break;
            }
            line = line.min(w);
        }
        line
    }

    /// What exact agreement with `a` on each of [`VALUE_FIELDS`] is worth beyond the field's
    /// own weight (all 0 with the prior, which has no frequencies).
    pub fn value_adjustments(&self, a: &Normalised) -> ValueAdjustments {
        let mut out = [0.0; VALUE_FIELDS.len()];
        for (t, freq) in self.frequencies.iter().enumerate().take(out.len()) {
            let field = VALUE_FIELDS[t];
            let value = value_of(field, a);
            if !value.is_empty() {
                let u = self.fields[field as usize].u[0];
                out[t] = (u / freq.of(value).max(FLOOR)).log2();
            }
        }
        out
    }

    /// The match weight of a pair whose comparison vector is `v` and whose first record's
    /// [`Model::value_adjustments`] are `adjust`: the vector's weight, plus the adjustment of
    /// each value field agreeing exactly.
    pub fn weight_with(&self, v: &Vector, parts: (f64, f64), adjust: &ValueAdjustments) -> f64 {
        self.combine(parts, Model::value_adjustment(v, adjust))
    }

    /// The match weight from [`Model::weight_parts`] and the pair's value adjustment, which
    /// makes strangers likelier or less likely (not relatives, who share a name however rare).
    fn combine(&self, (strangers, relatives): (f64, f64), adjustment: f64) -> f64 {
        if self.relative_proportion > 0.0 {
            strangers + adjustment - (1.0 + (relatives + adjustment).exp2()).log2()
        } else {
            strangers + adjustment
        }
    }

    /// log2(m/u) of one field at one level.
    pub fn field_weight(&self, field: usize, level: u8) -> f64 {
        let f = &self.fields[field];
        (f.m[level as usize] / f.u[level as usize]).log2()
    }

    /// The match weight of a comparison vector: log2 of the posterior odds that the pair is one
    /// person (prior odds of a candidate pair plus the evidence of every field present).
    pub fn weight(&self, v: &Vector) -> f64 {
        self.combine(self.weight_parts(v), 0.0)
    }

    /// The two parts of a vector's weight: log2 of the odds of one person against strangers,
    /// and of relatives against strangers.
    pub fn weight_parts(&self, v: &Vector) -> (f64, f64) {
        let mut w = log2_odds(self.match_proportion);
        // log2 of the odds of relatives against strangers, for the pair's evidence.
        let mut relatives = (self.relative_proportion / (1.0 - self.match_proportion)).log2();
        let weigh_relatives = self.relative_proportion > 0.0;
        for (k, &level) in v.iter().enumerate() {
            if level != MISSING {
                w += self.field_weight(k, level);
                if weigh_relatives {
                    let f = &self.fields[k];
                    relatives += (f.r[level as usize] / f.u[level as usize]).log2();
                }
            }
        }
        (w, relatives)
    }

    /// The match weight of two records, by the weights of their sources ([`Model::between`]).
    pub fn score(&self, a: &Normalised, b: &Normalised) -> f64 {
        let v = compare(a, b);
        let model = self.between(&a.issuer, &b.issuer);
        model.weight_with(&v, model.weight_parts(&v), &self.value_adjustments(a))
    }

    /// The model weighing a pair of records from sources (issuers) `a` and `b`: their source
    /// pair's own where it has one, else this one. Value adjustments are always this model's.
    pub fn between(&self, a: &str, b: &str) -> &Model {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        self.source_pairs
            .iter()
            .find(|p| p.sources[0] == x && p.sources[1] == y)
            .map_or(self, |p| &p.model)
    }

    /// The probability of one person that a match weight stands for.
    pub fn probability(weight: f64) -> f64 {
        1.0 / (1.0 + (-weight).exp2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::tests::person;
    use crate::Identity;
    use rand::{Rng, SeedableRng};

    const FAMILY: &[&str] = &[
        "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "WILSON",
        "TAYLOR", "MOORE", "THOMAS", "WHITE", "HARRIS", "MARTIN", "THOMPSON", "CLARK", "LEWIS",
    ];
    const GIVEN: &[&str] = &[
        "JAMES",
        "MARY",
        "ROBERT",
        "PATRICIA",
        "JOHN",
        "JENNIFER",
        "MICHAEL",
        "LINDA",
        "DAVID",
        "ELIZABETH",
        "WILLIAM",
        "BARBARA",
        "RICHARD",
        "SUSAN",
        "JOSEPH",
        "JESSICA",
    ];

    fn typo(rng: &mut impl Rng, s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        let i = rng.gen_range(0..b.len());
        b[i] = b'A' + rng.gen_range(0..26u8);
        String::from_utf8(b).unwrap()
    }

    /// People with one or two noisy copies each: EM must find agreement likely in matches and
    /// unlikely in non-matches, without being told which pairs are which.
    #[test]
    fn em_finds_sensible_weights_without_labels() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut records = Vec::new();
        for _ in 0..1500 {
            let id = Identity {
                family_name: FAMILY[rng.gen_range(0..FAMILY.len())].into(),
                given_name: GIVEN[rng.gen_range(0..GIVEN.len())].into(),
                birth_date: format!(
                    "{}{:02}{:02}",
                    rng.gen_range(1930..2010),
                    rng.gen_range(1..13),
                    rng.gen_range(1..29)
                ),
                sex: if rng.gen_bool(0.5) { "M" } else { "F" }.into(),
                postcode: format!("{}", rng.gen_range(1000..1100)),
                ..Identity::default()
            };
            records.push(Normalised::new(&id));
            for _ in 0..rng.gen_range(0..3) {
                let mut dup = id.clone();
                if rng.gen_bool(0.3) {
                    dup.family_name = typo(&mut rng, &dup.family_name);
                }
                if rng.gen_bool(0.1) {
                    dup.birth_date = format!(
                        "{}{}{}",
                        &id.birth_date[..4],
                        &id.birth_date[6..],
                        &id.birth_date[4..6]
                    );
                }
                records.push(Normalised::new(&dup));
            }
        }
        let model = Model::estimate(&records);
        assert!(model.pairs > 1000, "{model:?}");
        assert!(model.iterations > 1 && model.iterations < 3 * EM_MAX_ITERATIONS);
        let family = &model.fields[0];
        // Matches agree exactly on the family name in about 70 % + of pairs, non-matches seldom.
        assert!(family.m[0] > 0.6 && family.m[0] < 0.9, "{family:?}");
        assert!(family.u[0] < 0.5, "{family:?}");
        let date = &model.fields[3];
        assert!(date.m[0] > 0.8, "{date:?}");
        // Exact birth-date agreement is strong evidence; disagreement strong evidence against.
        assert!(model.field_weight(3, 0) > 2.0);
        assert!(model.field_weight(3, 5) < -3.0);
        assert!(
            model.field_weight(4, 1) < -2.0,
            "sex disagreeing: {model:?}"
        );
        // The link line is at most LINK_PROBABILITY's weight, lowered only as far as the
        // candidate pairs above it hold FALSE_LINK_SHARE of strangers by the model; the review
        // line is REVIEW_PROBABILITY's.
        assert!(Model::probability(model.upper) <= LINK_PROBABILITY + 1e-9);
        assert!((Model::probability(model.lower) - REVIEW_PROBABILITY).abs() < 1e-9);
        assert!(model.lower < model.upper);
        // A pair agreeing on everything links; a pair agreeing on nothing does not.
        let a = &records[0];
        assert!(model.score(a, a) > model.upper);
        let stranger = Normalised::new(&Identity {
            family_name: "ZZYZX".into(),
            given_name: "QUENTIN".into(),
            birth_date: "18990101".into(),
            sex: if a.sex == "M" { "F" } else { "M" }.into(),
            ..Identity::default()
        });
        assert!(model.score(a, &stranger) < model.lower);
    }

    /// The link line comes down to a weight only while the pairs at and above it hold at most
    /// FALSE_LINK_SHARE of strangers by the model, and never above LINK_PROBABILITY's.
    #[test]
    fn the_link_line_comes_down_as_far_as_the_false_link_share_allows() {
        let model = Model::default();
        let mut sure = [MISSING; FIELDS.len()];
        sure[..5].copy_from_slice(&[0, 0, 0, 0, 0]);
        // Family and birth date the same, the given name different, nothing else known.
        let mut doubtful = [MISSING; FIELDS.len()];
        doubtful[Field::Family as usize] = 0;
        doubtful[Field::Given as usize] = 5;
        doubtful[Field::BirthDate as usize] = 0;
        let w = model.weight(&doubtful);
        assert!(w > model.lower + 0.5 && w < model.upper - 0.5, "{w}");
        let wrong = 1.0 - Model::probability(w);
        let line = |doubtful_pairs: u64| {
            let mut c = Candidates::new();
            c.insert((sure, 0), 1000);
            if doubtful_pairs > 0 {
                c.insert((doubtful, 0), doubtful_pairs);
            }
            model.link_line([(&model, &c)])
        };
        // As many doubtful pairs as the share allows among 1,000 sure ones, and one more.
        let allowed = (FALSE_LINK_SHARE * 1000.0 / (wrong - FALSE_LINK_SHARE)).floor() as u64;
        assert!(allowed >= 1, "{wrong}");
        assert!((line(allowed) - w).abs() < 1e-9);
        assert_eq!(line(allowed + 1), model.upper);
        assert_eq!(line(0), model.upper);
    }

    #[test]
    fn value_frequencies_list_the_common_and_average_the_rest() {
        let people = |family: &str, n: usize| {
            let one = Normalised::new(&Identity {
                family_name: family.into(),
                ..Identity::default()
            });
            vec![one; n]
        };
        let mut records: Vec<Normalised> = people("SMITH", 500);
        // 1,500 names held by two records each, and one record without a name.
        for k in 0..1500 {
            records.extend(people(&format!("RARE{}", alphabetic(k)), 2));
        }
        records.push(Normalised::default());
        let u = 0.001;
        let f = ValueFrequencies::count(Field::Family, &records, u);
        assert_eq!(f.common.len(), LISTED_VALUES);
        // Of the 3,499 records besides one holding a name, how many hold it, drawn towards u.
        let drawn = |others: f64| {
            (others / 3499.0 * 3500.0 + FREQUENCY_PRIOR_RECORDS * u) / (3500.0 + 100.0)
        };
        assert!((f.of("SMITH") - drawn(499.0)).abs() < 1e-12);
        // Every unlisted name is held by 2 records of 3,500.
        assert!((f.rest - drawn(1.0)).abs() < 1e-12, "{}", f.rest);
        assert_eq!(f.of("NEVER SEEN"), f.rest);
        // A few records say little: one value in three of them is drawn most of the way to u.
        let few = ValueFrequencies::count(Field::Family, &people("SMITH", 3), u);
        assert!(few.of("SMITH") < 0.05, "{few:?}");
    }

    fn alphabetic(mut k: usize) -> String {
        let mut s = String::new();
        loop {
            s.push((b'A' + (k % 26) as u8) as char);
            k /= 26;
            if k == 0 {
                return s;
            }
        }
    }

    /// A rare family name agreeing weighs more than the field's average agreement, a common one
    /// less; the prior, without frequencies, weighs both alike; and the batch's way of scoring
    /// (vector weight plus the record's adjustments) gives `Model::score` exactly.
    #[test]
    fn rare_values_agreeing_weigh_more_than_common_ones() {
        let n = |f: &str, g: &str| person(f, g, "19650310");
        let mut records = Vec::new();
        for k in 0..3000 {
            let family = if k % 4 == 0 {
                "SMITH".to_string()
            } else {
                format!("ZED{}", alphabetic(k))
            };
            records.push(n(&family, &format!("GIV{}", alphabetic(k % 700))));
        }
        records.push(n("ZEDQUIST", "ANNA"));
        records.push(n("ZEDQUIST", "ANNA"));
        let model = Model::estimate(&records);
        let (smith, zed) = (n("SMITH", "ANNA"), n("ZEDQUIST", "ANNA"));
        let rare = model.value_adjustments(&zed)[0];
        let common = model.value_adjustments(&smith)[0];
        assert!(rare > 1.0, "{rare}");
        assert!(common < -1.0, "{common}");
        assert!(model.score(&zed, &zed) - model.score(&smith, &smith) > 2.0);
        let prior = Model::default();
        assert_eq!(prior.value_adjustments(&zed), [0.0; VALUE_FIELDS.len()]);
        assert_eq!(prior.score(&zed, &zed), prior.score(&smith, &smith));
        for (a, b) in [(&zed, &zed), (&smith, &zed), (&smith, &smith)] {
            let v = compare(a, b);
            let batch = model.weight_with(&v, model.weight_parts(&v), &model.value_adjustments(a));
            assert_eq!(batch, model.score(a, b));
        }
    }

    /// A stored model whose fields have other levels than today's comparison grades is not
    /// one to weigh with.
    #[test]
    fn a_model_with_other_levels_is_not_current() {
        let current = Model::default();
        assert!(current.has_current_levels());
        let mut fewer = current.clone();
        fewer.fields[0].m.pop();
        fewer.fields[0].u.pop();
        assert!(!fewer.has_current_levels());
        // From before relatives were weighed: none of them, and no relatives' probabilities.
        let mut older = current.clone();
        older.fields.iter_mut().for_each(|f| f.r.clear());
        assert!(older.has_current_levels());
        older.relative_proportion = 1e-4;
        assert!(!older.has_current_levels());
        let json = serde_json::to_string(&Model {
            relative_proportion: 0.0,
            ..older
        })
        .unwrap();
        let read: Model = serde_json::from_str(&json.replace(",\"r\":[]", "")).unwrap();
        assert!(read.has_current_levels());
    }

    #[test]
    fn the_prior_model_links_the_obvious_and_nothing_else() {
        let model = Model::default();
        let n = |f: &str, g: &str, d: &str| {
            Normalised::new(&Identity {
                family_name: f.into(),
                given_name: g.into(),
                birth_date: d.into(),
                sex: "F".into(),
                ..Identity::default()
            })
        };
        let a = n("Smith", "Mary", "19650310");
        assert!(model.score(&a, &n("SMITH", "MARY", "19650310")) >= model.upper);
        assert!(model.score(&a, &n("Smyth", "Mary", "19651003")) >= model.lower);
        assert!(model.score(&a, &n("Jones", "Mary", "19650310")) < model.upper);
        assert!(model.score(&a, &n("Jones", "Anne", "19650310")) < model.lower);
    }
}
