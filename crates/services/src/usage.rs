//! What the archive's storage holds and costs, and how reads decay with a study's age.
//!
//! - [`storage`]: bytes per tier and per store — every replica holds the hot data whole, every
//!   cold store one shard in `k` of the cold data — and, from the prices the configuration
//!   gives (`tiers.replica_price_per_gib_month`, `tiers.cold_price_per_gib_month`), the
//!   projected monthly cost of each.
//! - [`decay`]: reads per study against the study's age, from the archive's own audit trail: a
//!   read is a day on which a study was retrieved or viewed (every door's read events), counted
//!   once per study and day; the reads at an age are divided by the studies that have reached
//!   that age. With a half-life fitted to the ages past a year, where reads decay
//!   exponentially.

use crate::ServiceError;
use serde::Serialize;
use strata_core::config::TiersConfig;
use strata_index::Index;
use strata_store::shards::Shards;

/// The audit actions that read a study: retrievals and views, by every door (a thumbnail in a
/// study list is not a read of the study).
pub const READ_ACTIONS: [&str; 13] = [
    "http.wado.retrieve",
    "http.wado.metadata",
    "http.wado.rendered",
    "http.wado.frames",
    "http.wado.bulkdata",
    "http.wado_uri",
    "http.stream.open",
    "http.export",
    "http.reports.read",
    "dimse.get",
    "dimse.move",
    "letter.open",
    "letter.download",
];

const GIB: f64 = (1u64 << 30) as f64;
/// The decay's buckets: a quarter of a year each, for ten years.
const BUCKET_MONTHS: i64 = 3;
const BUCKETS: usize = 40;
/// The average month in days.
const MONTH_DAYS: f64 = 365.2425 / 12.0;

/// One store's share of the data and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreUse {
    /// The store's URL, without credentials.
    pub url: String,
    pub bytes: u64,
    pub price_per_gib_month: Option<f64>,
    pub monthly_cost: Option<f64>,
}

/// Bytes and projected monthly cost per tier and per store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageUse {
    /// The data the replicas hold (each a whole copy).
    pub hot_bytes: u64,
    /// The data the cold stores hold, as shards only.
    pub cold_bytes: u64,
    pub cold_studies: u64,
    pub data_shards: usize,
    pub parity_shards: usize,
    pub replicas: Vec<StoreUse>,
    pub cold_stores: Vec<StoreUse>,
    /// Monthly cost of each tier, when every store of it has a price.
    pub hot_monthly_cost: Option<f64>,
    pub cold_monthly_cost: Option<f64>,
}

fn priced(url: String, bytes: u64, prices: &[f64], i: usize) -> StoreUse {
    let price = match prices {
        [one] => Some(*one),
        many => many.get(i).copied(),
    };
    StoreUse {
        url,
        bytes,
        price_per_gib_month: price,
        monthly_cost: price.map(|p| p * bytes as f64 / GIB),
    }
}

fn total(stores: &[StoreUse]) -> Option<f64> {
    stores.iter().map(|s| s.monthly_cost).sum()
}

/// What the tiers hold and cost: `replica_urls` the replicas' URLs (without credentials),
/// `shards` the cold stores if there are any.
pub async fn storage(
    index: &Index,
    replica_urls: Vec<String>,
    shards: Option<&Shards>,
    config: &TiersConfig,
) -> Result<StorageUse, ServiceError> {
    let totals = index.tier_totals().await?;
    let hot_bytes = totals.all_bytes.saturating_sub(totals.cold_bytes);
    let replicas: Vec<StoreUse> = replica_urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| priced(url, hot_bytes, &config.replica_price_per_gib_month, i))
        .collect();
    let (k, m) = (config.data_shards, config.parity_shards);
    let cold_stores: Vec<StoreUse> = shards
        .map(|s| {
            let per_store = totals.cold_bytes.div_ceil(s.data_shards().max(1) as u64);
            s.shown_urls()
                .into_iter()
                .enumerate()
                .map(|(i, url)| priced(url, per_store, &config.cold_price_per_gib_month, i))
                .collect()
        })
        .unwrap_or_default();
    Ok(StorageUse {
        hot_bytes,
        cold_bytes: totals.cold_bytes,
        cold_studies: totals.cold_studies,
        data_shards: k,
        parity_shards: m,
        hot_monthly_cost: total(&replicas),
        cold_monthly_cost: if cold_stores.is_empty() {
            None
        } else {
            total(&cold_stores)
        },
        replicas,
        cold_stores,
    })
}

/// Reads at one age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecayBucket {
    /// The age, in months since the study: from (inclusive) and to (exclusive).
    pub from_months: i64,
    pub to_months: i64,
    /// Study-days read at this age.
    pub reads: u64,
    /// Studies that have reached this age.
    pub studies: u64,
    pub reads_per_study: f64,
}

/// Reads per study against the study's age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decay {
    pub buckets: Vec<DecayBucket>,
    /// Studies read, and study-days read, in all (at any age; the buckets end at ten years).
    pub studies_read: u64,
    pub reads: u64,
    /// Months in which reads per study halve, fitted (least squares on the logarithm) to the
    /// ages past a year with reads; None without two such ages.
    pub half_life_months: Option<f64>,
}

/// Days since the Unix epoch of a DICOM date (YYYYMMDD).
fn epoch_day(date: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(date.get(0..8)?, "%Y%m%d").ok()?;
    Some(
        d.signed_duration_since(chrono::NaiveDate::default())
            .num_days(),
    )
}

fn bucket_of(age_days: i64) -> Option<usize> {
    if age_days < 0 {
        return None;
    }
    let months = (age_days as f64 / MONTH_DAYS) as i64;
    let b = (months / BUCKET_MONTHS) as usize;
    (b < BUCKETS).then_some(b)
}

/// Reads per study against study age, from the audit trail, as of `now_ms`.
pub async fn decay(index: &Index, now_ms: i64) -> Result<Decay, ServiceError> {
    let actions = READ_ACTIONS.iter().map(|a| a.to_string()).collect();
    let (days, studies_read) = index.read_days(actions).await?;
    let today = now_ms.div_euclid(86_400_000);
    let mut reads = [0u64; BUCKETS];
    let mut all_reads = 0;
    for d in &days {
        let Some(start) = d.study_date.as_deref().and_then(epoch_day) else {
            continue;
        };
        all_reads += d.studies;
        if let Some(b) = bucket_of(d.day - start) {
            reads[b] += d.studies;
        }
    }
    // a study of age A has reached every bucket up to A's
    let mut reached = [0u64; BUCKETS];
    for date in index.study_dates().await? {
        let Some(start) = epoch_day(&date) else {
            continue;
        };
        let age = today - start;
        if age < 0 {
            continue;
        }
        let last = bucket_of(age).unwrap_or(BUCKETS - 1);
        for r in reached.iter_mut().take(last + 1) {
            *r += 1;
        }
    }
    let buckets: Vec<DecayBucket> = (0..BUCKETS)
        .map(|b| DecayBucket {
            from_months: b as i64 * BUCKET_MONTHS,
            to_months: (b as i64 + 1) * BUCKET_MONTHS,
            reads: reads[b],
            studies: reached[b],
            reads_per_study: if reached[b] > 0 {
                reads[b] as f64 / reached[b] as f64
            } else {
                0.0
            },
        })
        .collect();
    Ok(Decay {
        half_life_months: half_life(&buckets),
        studies_read,
        reads: all_reads,
        buckets,
    })
}

/// The half-life of reads per study past the first year: ln 2 over the slope of the least
/// squares line through (age, ln reads per study), when reads fall.
fn half_life(buckets: &[DecayBucket]) -> Option<f64> {
    let points: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|b| b.from_months >= 12 && b.reads_per_study > 0.0)
        .map(|b| {
            let mid = (b.from_months + b.to_months) as f64 / 2.0;
            (mid, b.reads_per_study.ln())
        })
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in &points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    let slope = sxy / sxx;
    (slope < 0.0).then(|| std::f64::consts::LN_2 / -slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(from: i64, per_study: f64) -> DecayBucket {
        DecayBucket {
            from_months: from,
            to_months: from + 3,
            reads: 1,
            studies: 1,
            reads_per_study: per_study,
        }
    }

    #[test]
    fn an_exponential_decay_gives_its_half_life() {
        // halving every 6 months from the first year on
        let buckets: Vec<DecayBucket> = (0..20)
            .map(|b| bucket(b * 3, 8.0 * 0.5f64.powf(b as f64 * 3.0 / 6.0)))
            .collect();
        let h = half_life(&buckets).unwrap();
        assert!((h - 6.0).abs() < 1e-9, "{h}");
        // flat reads have none
        let flat: Vec<DecayBucket> = (0..20).map(|b| bucket(b * 3, 1.0)).collect();
        assert_eq!(half_life(&flat), None);
    }

    #[test]
    fn ages_fall_in_quarters_for_ten_years() {
        assert_eq!(bucket_of(0), Some(0));
        assert_eq!(bucket_of(92), Some(1));
        assert_eq!(bucket_of(366), Some(4));
        assert_eq!(bucket_of(-1), None);
        assert_eq!(bucket_of(11 * 365), None);
        assert_eq!(epoch_day("19700102"), Some(1));
        assert_eq!(epoch_day("2010"), None);
    }

    #[test]
    fn one_price_serves_every_store_and_a_missing_one_leaves_the_total_unknown() {
        let a = priced("a".into(), 2 << 30, &[0.5], 3);
        assert_eq!(a.monthly_cost, Some(1.0));
        let b = priced("b".into(), 1 << 30, &[0.5, 0.25], 1);
        assert_eq!(b.monthly_cost, Some(0.25));
        let c = priced("c".into(), 1 << 30, &[0.5, 0.25], 2);
        assert_eq!(c.monthly_cost, None);
        assert_eq!(total(&[a.clone(), b.clone()]), Some(1.25));
        assert_eq!(total(&[a, c]), None);
    }
}
