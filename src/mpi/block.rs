//! The in-memory blocking index of a batch: which earlier records share a blocking key with a
//! record. The archive keeps the same keys ([`Normalised::block_keys`]) in SQLite; a batch of
//! hundreds of thousands of records is linked faster from a sorted array of key hashes.

use super::Normalised;
use rayon::prelude::*;
use std::hash::{Hash, Hasher};

/// At most this many earlier records of one block are compared with a record: a block that
/// large is a very common name or date, where the other keys (each much smaller) find the
/// true matches. It bounds the work per record, so linking time stays linear in the records.
const BLOCK_WINDOW: usize = 48;

pub struct BlockIndex {
    /// (key hash, record), sorted: each block is one run, its records in input order.
    entries: Vec<(u64, u32)>,
    /// The key hashes of each record.
    keys: Vec<Vec<u64>>,
}

fn key_hash(key: &str) -> u64 {
    // SipHash with fixed keys: the same on every run. Two keys colliding would only add
    // candidates, which scoring then rejects.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl BlockIndex {
    pub fn new(records: &[Normalised]) -> BlockIndex {
        let keys: Vec<Vec<u64>> = records
            .par_iter()
            .map(|r| {
                let mut k: Vec<u64> = r.block_keys().iter().map(|k| key_hash(k)).collect();
                k.sort_unstable();
                k.dedup();
                k
            })
            .collect();
        let mut entries: Vec<(u64, u32)> = keys
            .iter()
            .enumerate()
            .flat_map(|(i, ks)| ks.iter().map(move |&k| (k, i as u32)))
            .collect();
        entries.par_sort_unstable();
        BlockIndex { entries, keys }
    }

    /// The records before `i` (in input order) that share a key with it, each once, ascending.
    pub fn earlier_candidates(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for &k in &self.keys[i] {
            let start = self.entries.partition_point(|&(h, _)| h < k);
            let here = self.entries.partition_point(|&e| e < (k, i as u32));
            let from = start.max(here.saturating_sub(BLOCK_WINDOW));
            out.extend(self.entries[from..here].iter().map(|&(_, j)| j as usize));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpi::Identity;

    #[test]
    fn candidates_are_earlier_records_sharing_a_key() {
        let n = |f: &str, g: &str, d: &str| {
            Normalised::new(&Identity {
                family_name: f.into(),
                given_name: g.into(),
                birth_date: d.into(),
                ..Identity::default()
            })
        };
        let records = vec![
            n("Smith", "John", "19650310"),
            n("Jones", "Mary", "19720101"),
            n("John", "Smith", "19650310"),
            n("Smyth", "Jon", "19650310"),
            n("Brown", "Ann", "19990909"),
        ];
        let index = BlockIndex::new(&records);
        assert_eq!(index.earlier_candidates(0), Vec::<usize>::new());
        assert_eq!(index.earlier_candidates(1), Vec::<usize>::new());
        assert_eq!(index.earlier_candidates(2), vec![0]);
        assert_eq!(index.earlier_candidates(3), vec![0, 2]);
        assert_eq!(index.earlier_candidates(4), Vec::<usize>::new());
    }
}
