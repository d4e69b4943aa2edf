//! [`BlobId`]: the address of one stored blob. The store computes it (a keyed hash of the
//! instance's bytes, `strata-store`'s `address`); everyone else only carries it, compares it and
//! names objects by it.

use std::fmt;
use std::str::FromStr;

/// The address of one stored blob: 32 bytes, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The address whose bytes these are (what the store's keyed hash produced).
    pub fn from_bytes(bytes: [u8; 32]) -> BlobId {
        BlobId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The object key under which every replica keeps this blob: `blobs/ab/cd/<hex>`.
    /// Two levels of fan-out keep any one directory of a local replica small.
    pub fn object_key(&self) -> String {
        let h = self.to_hex();
        format!("blobs/{}/{}/{}", &h[0..2], &h[2..4], h)
    }

    /// Parses the last component of an object key made by [`BlobId::object_key`].
    pub fn from_object_key(key: &str) -> Option<BlobId> {
        let last = key.rsplit('/').next()?;
        let id = last.parse::<BlobId>().ok()?;
        (id.object_key() == key.trim_start_matches('/')).then_some(id)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl FromStr for BlobId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(BlobId(out))
    }
}
