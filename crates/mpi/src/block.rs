//! The in-memory blocking index of a batch: which earlier records share a blocking key with a
//! record. The archive keeps the same keys ([`Normalised::block_keys`]) in SQLite; a batch of
//! hundreds of thousands of records is linked faster from a sorted array of key hashes.

use super::Normalised;
use rayon::prelude::*;
use std::hash::{Hash, Hasher};

/// At most this many earlier records of one block are compared with a record: a block that
/// large is a very common name or date, where the other keys (each much smaller) find the
/// true matches. It bounds the work per record, so linking time stays linear in the records.
const BLOCK_WINDOW: usize = 8;

pub struct BlockIndex {
    /// The record of each entry, entries sorted by (key hash, record): each block is one run,
    /// its records in input order.
    records: Vec<u32>,
    /// Where the run of each entry's block starts.
    run_start: Vec<u32>,
    /// Where each record's entries stand in `records`: `positions[offsets[i]..offsets[i + 1]]`.
    /// Looking a block up by position rather than by binary search over millions of entries
    /// was a third of a batch's time.
    positions: Vec<u32>,
    offsets: Vec<u32>,
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
        let mut run_start = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(records.len() + 1);
        offsets.push(0u32);
        for ks in &keys {
            offsets.push(offsets[offsets.len() - 1] + ks.len() as u32);
        }
        // Each record's entries in the order of its (sorted) keys, which is the order they
        // are met in when walking the sorted entries.
        let mut filled = offsets.clone();
        let mut positions = vec![0u32; entries.len()];
        let mut start = 0u32;
        for (p, &(k, i)) in entries.iter().enumerate() {
            if p > 0 && entries[p - 1].0 != k {
                start = p as u32;
            }
            run_start.push(start);
            let slot = &mut filled[i as usize];
            positions[*slot as usize] = p as u32;
            *slot += 1;
        }
        BlockIndex {
            records: entries.into_iter().map(|(_, i)| i).collect(),
            run_start,
            positions,
            offsets,
        }
    }

    /// The records before `i` (in input order) that share a key with it, each once, ascending.
    pub fn earlier_candidates(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mine = &self.positions[self.offsets[i] as usize..self.offsets[i + 1] as usize];
        for &here in mine {
            let here = here as usize;
            let from = (self.run_start[here] as usize).max(here.saturating_sub(BLOCK_WINDOW));
            out.extend(self.records[from..here].iter().map(|&j| j as usize));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::tests::person;

    #[test]
    fn candidates_are_earlier_records_sharing_a_key() {
        let records = vec![
            person("Smith", "John", "19650310"),
            person("Jones", "Mary", "19720101"),
            person("John", "Smith", "19650310"),
            person("Smyth", "Jon", "19650310"),
            person("Brown", "Ann", "19990909"),
        ];
        let index = BlockIndex::new(&records);
        assert_eq!(index.earlier_candidates(0), Vec::<usize>::new());
        assert_eq!(index.earlier_candidates(1), Vec::<usize>::new());
        assert_eq!(index.earlier_candidates(2), vec![0]);
        assert_eq!(index.earlier_candidates(3), vec![0, 2]);
        assert_eq!(index.earlier_candidates(4), Vec::<usize>::new());
    }
}
