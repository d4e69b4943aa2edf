//! Content addresses: a `BlobId` is HMAC-SHA256 of an instance's plaintext under the archive's
//! address key. Equal instances share one address (so one blob), and because the hash is keyed, an
//! object key reveals nothing about the content to whoever can list a bucket.

use hmac::{Hmac, Mac};
use sha2::Sha256;
pub use strata_core::BlobId;

type HmacSha256 = Hmac<Sha256>;

/// Computes a `BlobId` incrementally, so a spooled instance is hashed as it streams by.
pub struct Addresser(HmacSha256);

impl Addresser {
    pub fn new(address_key: &[u8; 32]) -> Self {
        Addresser(HmacSha256::new_from_slice(address_key).expect("HMAC accepts any key length"))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> BlobId {
        BlobId::from_bytes(self.0.finalize().into_bytes().into())
    }

    pub fn of(address_key: &[u8; 32], bytes: &[u8]) -> BlobId {
        let mut a = Addresser::new(address_key);
        a.update(bytes);
        a.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_deterministic() {
        let a = Addresser::of(&[1; 32], b"instance");
        assert_eq!(a, Addresser::of(&[1; 32], b"instance"));
        assert_ne!(
            a,
            Addresser::of(&[2; 32], b"instance"),
            "another key gives another address"
        );
        assert_ne!(a, Addresser::of(&[1; 32], b"instancf"));
        let mut inc = Addresser::new(&[1; 32]);
        inc.update(b"inst");
        inc.update(b"ance");
        assert_eq!(inc.finish(), a);
    }

    #[test]
    fn object_key_round_trip() {
        let id = Addresser::of(&[7; 32], b"x");
        let key = id.object_key();
        assert!(key.starts_with("blobs/"));
        assert_eq!(key.len(), "blobs/ab/cd/".len() + 64);
        assert_eq!(BlobId::from_object_key(&key), Some(id));
        assert_eq!(BlobId::from_object_key("blobs/00/00/zz"), None);
        assert_eq!(
            BlobId::from_object_key(&format!("blobs/ff/ff/{}", id.to_hex())),
            None
        );
    }
}
