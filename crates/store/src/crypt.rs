//! Encryption at rest. Each blob gets a random 256-bit data key, wrapped (AES-256-GCM) by a key
//! derived from the archive's master key, and its plaintext is sealed with AES-256-GCM in
//! fixed-size segments using the STREAM construction (nonce = 7-byte random prefix ‖ 32-bit
//! big-endian segment counter ‖ last-segment flag). A segment can be read and authenticated on its
//! own, so a byte range never needs the whole blob, while truncation, reordering and splicing of
//! segments are all detected. Every segment also authenticates the blob header and the blob's
//! address, so a ciphertext moved to another object key fails to open.
//!
//! Layout: `header (HEADER_LEN bytes) ‖ segment 0 ‖ segment 1 ‖ …`, each segment being its
//! ciphertext followed by a 16-byte tag.

use super::address::BlobId;
use hkdf::Hkdf;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use sha2::Sha256;
use std::ops::Range;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 8] = b"STRATA\0B";
pub const FORMAT_VERSION: u8 = 1;
/// magic 8, version 1, reserved 3, key id 8, wrap nonce 12, wrapped key 48, segment size 4,
/// plaintext length 8, nonce prefix 7, reserved 5.
pub const HEADER_LEN: usize = 104;
pub const TAG_LEN: usize = 16;
/// 64 KiB: small enough that a byte-range read decrypts little it does not need, large enough
/// that the 16-byte tag per segment costs 0.02% of space.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("not a Strata blob (bad magic or truncated header)")]
    NotABlob,
    #[error("unsupported blob format version {0}")]
    Version(u8),
    #[error(
        "blob was sealed under master key {found}, this archive's key is {ours}: wrong master key?"
    )]
    WrongKey { found: String, ours: String },
    #[error("blob header failed authentication (data key cannot be unwrapped)")]
    BadWrappedKey,
    #[error("segment {0} failed authentication: the copy is corrupt")]
    BadSegment(u64),
    #[error("segment {index} has {found} bytes, expected {expected}: the copy is truncated")]
    SegmentLength {
        index: u64,
        found: usize,
        expected: usize,
    },
    #[error("master key: {0}")]
    Key(String),
}

/// The archive's root secret and what is derived from it. Losing it loses every blob.
pub struct MasterKey {
    key_id: [u8; 8],
    wrap: LessSafeKey,
    address_key: Zeroizing<[u8; 32]>,
    audit_key: strata_core::audit::AuditKey,
    deidentify_root: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub fn from_secret(secret: &[u8; 32]) -> MasterKey {
        let hk = Hkdf::<Sha256>::new(Some(b"strata master key v1"), secret);
        let mut wrap = Zeroizing::new([0u8; 32]);
        let mut address_key = Zeroizing::new([0u8; 32]);
        let mut key_id = [0u8; 8];
        hk.expand(b"wrap", wrap.as_mut())
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"address", address_key.as_mut())
            .expect("valid length");
        hk.expand(b"key id", &mut key_id).expect("valid length");
        let mut audit_key = Zeroizing::new([0u8; 32]);
        hk.expand(b"audit chain", audit_key.as_mut())
            .expect("valid length");
        let mut deidentify_root = Zeroizing::new([0u8; 32]);
        hk.expand(b"deidentify projects", deidentify_root.as_mut())
            .expect("valid length");
        MasterKey {
            deidentify_root,
            key_id,
            wrap: aes_key(wrap.as_ref()),
            address_key,
            audit_key: strata_core::audit::AuditKey::from_bytes(*audit_key),
        }
    }

    /// The key the audit trail's hash chain is keyed with: its own expansion of the master
    /// key, so the chain's MAC and the blobs' encryption never share a key.
    pub fn audit_key(&self) -> &strata_core::audit::AuditKey {
        &self.audit_key
    }

    /// The key of a de-identification project: HKDF of the master key's own expansion for
    /// de-identification, with the project's name as info. Nothing is stored: the same archive
    /// and name give the same key again (so exports of one project link up), and without the
    /// master key nobody can link a project's pseudonyms and UIDs back to patients.
    pub fn project_key(&self, project: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"strata deidentify v1"), self.deidentify_root.as_ref());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(project.as_bytes(), key.as_mut())
            .expect("32 bytes is a valid HKDF length");
        key
    }

    pub fn address_key(&self) -> &[u8; 32] {
        &self.address_key
    }

    /// A public fingerprint of the key, written in every blob header, so a wrong key is named as
    /// such instead of looking like corruption.
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }

    /// Loads the master key: `STRATA_MASTER_KEY` (64 hex digits) when given, else
    /// `<data>/keys/master.key`, created (mode 0600) when missing. Returns the key and the path
    /// of a key file created just now, so the caller can tell the administrator to back it up.
    pub fn load_or_create(
        data_dir: &Path,
        from_env: Option<&str>,
    ) -> Result<(MasterKey, Option<PathBuf>), CryptError> {
        if let Some(hexkey) = from_env {
            return Ok((
                Self::from_secret(&parse_hex_key(hexkey, "STRATA_MASTER_KEY")?),
                None,
            ));
        }
        let path = data_dir.join("keys").join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((
                Self::from_secret(&parse_hex_key(&text, &path.display().to_string())?),
                None,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(secret.as_mut());
                write_key_file(&path, &hex::encode(secret.as_ref()))
                    .map_err(|e| CryptError::Key(format!("creating {}: {e}", path.display())))?;
                Ok((Self::from_secret(&secret), Some(path)))
            }
            Err(e) => Err(CryptError::Key(format!("reading {}: {e}", path.display()))),
        }
    }
}

fn parse_hex_key(text: &str, origin: &str) -> Result<[u8; 32], CryptError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
        CryptError::Key(format!("{origin} must hold exactly 64 hexadecimal digits"))
    })?;
    Ok(out)
}

fn write_key_file(path: &Path, hexkey: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().expect("key path has a parent");
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{hexkey}")?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// A parsed blob header: everything needed to locate and open any segment.
#[derive(Clone)]
pub struct BlobHeader {
    raw: [u8; HEADER_LEN],
    segment_size: u32,
    plaintext_len: u64,
}

impl BlobHeader {
    pub fn parse(bytes: &[u8]) -> Result<BlobHeader, CryptError> {
        if bytes.len() < HEADER_LEN || &bytes[0..8] != MAGIC {
            return Err(CryptError::NotABlob);
        }
        if bytes[8] != FORMAT_VERSION {
            return Err(CryptError::Version(bytes[8]));
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&bytes[..HEADER_LEN]);
        let segment_size = u32::from_le_bytes(raw[80..84].try_into().unwrap());
        let plaintext_len = u64::from_le_bytes(raw[84..92].try_into().unwrap());
        if segment_size == 0 {
            return Err(CryptError::NotABlob);
        }
        Ok(BlobHeader {
            raw,
            segment_size,
            plaintext_len,
        })
    }

    pub fn bytes(&self) -> &[u8; HEADER_LEN] {
        &self.raw
    }

    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// Number of segments; an empty plaintext still has one (empty, authenticated) segment.
    pub fn segment_count(&self) -> u64 {
        self.plaintext_len.div_ceil(self.segment_size as u64).max(1)
    }

    pub fn ciphertext_len(&self) -> u64 {
        sealed_len(self.plaintext_len, self.segment_size)
    }

    /// Plaintext bytes in segment `index`.
    pub fn segment_plain_len(&self, index: u64) -> usize {
        let start = index * self.segment_size as u64;
        (self.plaintext_len.saturating_sub(start)).min(self.segment_size as u64) as usize
    }

    /// Where segment `index` (ciphertext and tag) lies in the blob.
    pub fn segment_range(&self, index: u64) -> Range<u64> {
        let start = HEADER_LEN as u64 + index * (self.segment_size as u64 + TAG_LEN as u64);
        start..start + (self.segment_plain_len(index) + TAG_LEN) as u64
    }

    /// The segments holding plaintext bytes `range`.
    pub fn segments_for(&self, range: Range<u64>) -> Range<u64> {
        let seg = self.segment_size as u64;
        let first = range.start / seg;
        let last = range.end.max(range.start + 1).div_ceil(seg);
        first.min(self.segment_count())..last.min(self.segment_count())
    }

    fn key_id(&self) -> &[u8] {
        &self.raw[12..20]
    }

    fn nonce(&self, index: u64) -> Result<[u8; 12], CryptError> {
        let counter = u32::try_from(index).map_err(|_| CryptError::BadSegment(index))?;
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.raw[92..99]);
        nonce[7..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(index + 1 == self.segment_count());
        Ok(nonce)
    }
}

/// Seals one blob, segment by segment, so a large instance streams through in constant memory.
pub struct Sealer {
    header: BlobHeader,
    cipher: LessSafeKey,
    aad: Vec<u8>,
    next: u64,
}

impl Sealer {
    pub fn new(key: &MasterKey, blob: &BlobId, plaintext_len: u64, segment_size: u32) -> Sealer {
        let mut rng = rand::rngs::OsRng;
        let mut data_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(data_key.as_mut());
        let mut raw = [0u8; HEADER_LEN];
        raw[0..8].copy_from_slice(MAGIC);
        raw[8] = FORMAT_VERSION;
        raw[12..20].copy_from_slice(&key.key_id);
        rng.fill_bytes(&mut raw[20..32]); // wrap nonce
        let mut wrapped = data_key.to_vec();
        let tag = seal_detached(&key.wrap, &raw[20..32], &raw[0..20], &mut wrapped);
        raw[32..64].copy_from_slice(&wrapped);
        raw[64..80].copy_from_slice(&tag);
        raw[80..84].copy_from_slice(&segment_size.to_le_bytes());
        raw[84..92].copy_from_slice(&plaintext_len.to_le_bytes());
        rng.fill_bytes(&mut raw[92..99]); // STREAM nonce prefix
        let header = BlobHeader::parse(&raw).expect("a header we just built parses");
        Sealer {
            aad: segment_aad(&header, blob),
            cipher: aes_key(data_key.as_ref()),
            header,
            next: 0,
        }
    }

    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// Plaintext bytes the next segment must hold.
    pub fn next_segment_len(&self) -> usize {
        self.header.segment_plain_len(self.next)
    }

    /// Seals the next segment, appending ciphertext and tag to `out`. `plain` must be exactly
    /// [`Sealer::next_segment_len`] bytes: the segment boundaries are part of the format.
    pub fn seal_next(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        assert!(
            self.next < self.header.segment_count(),
            "sealed past the last segment"
        );
        assert_eq!(plain.len(), self.next_segment_len(), "segment length");
        let nonce = self
            .header
            .nonce(self.next)
            .expect("segment count fits in u32");
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = seal_detached(&self.cipher, &nonce, &self.aad, &mut out[start..]);
        out.extend_from_slice(&tag);
        self.next += 1;
    }

    pub fn is_done(&self) -> bool {
        self.next == self.header.segment_count()
    }
}

/// Opens the segments of one blob; built from its header.
pub struct Opener {
    header: BlobHeader,
    cipher: LessSafeKey,
    aad: Vec<u8>,
}

impl Opener {
    pub fn new(key: &MasterKey, blob: &BlobId, header_bytes: &[u8]) -> Result<Opener, CryptError> {
        let header = BlobHeader::parse(header_bytes)?;
        if header.key_id() != key.key_id {
            return Err(CryptError::WrongKey {
                found: hex::encode(header.key_id()),
                ours: key.key_id_hex(),
            });
        }
        let raw = header.bytes();
        let mut data_key = Zeroizing::new(raw[32..64].to_vec());
        open_detached(
            &key.wrap,
            &raw[20..32],
            &raw[0..20],
            &mut data_key,
            &raw[64..80],
        )
        .map_err(|_| CryptError::BadWrappedKey)?;
        Ok(Opener {
            aad: segment_aad(&header, blob),
            cipher: aes_key(&data_key),
            header,
        })
    }

    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// Authenticates and decrypts segment `index` (`sealed` is its ciphertext and tag), appending
    /// the plaintext to `out`.
    pub fn open_segment(
        &self,
        index: u64,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptError> {
        let expected = self.header.segment_plain_len(index) + TAG_LEN;
        if index >= self.header.segment_count() || sealed.len() != expected {
            return Err(CryptError::SegmentLength {
                index,
                found: sealed.len(),
                expected,
            });
        }
        let nonce = self.header.nonce(index)?;
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let start = out.len();
        out.extend_from_slice(ct);
        open_detached(&self.cipher, &nonce, &self.aad, &mut out[start..], tag).map_err(|_| {
            out.truncate(start);
            CryptError::BadSegment(index)
        })
    }
}

// AES-256-GCM through ring: the same construction as RustCrypto's aes-gcm, about three times
// faster here (VAES and VPCLMULQDQ), which matters when every byte served is decrypted.

fn aes_key(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

fn nonce(bytes: &[u8]) -> Nonce {
    Nonce::assume_unique_for_key(bytes.try_into().expect("a 12-byte nonce"))
}

/// Encrypts `buf` in place and returns the tag.
fn seal_detached(key: &LessSafeKey, n: &[u8], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let tag = key
        .seal_in_place_separate_tag(nonce(n), Aad::from(aad), buf)
        .expect("within AES-GCM's length limits");
    tag.as_ref().try_into().expect("a 16-byte tag")
}

/// Authenticates and decrypts `buf` in place.
fn open_detached(
    key: &LessSafeKey,
    n: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), ()> {
    let tag = Tag::try_from(tag).map_err(|_| ())?;
    key.open_in_place_separate_tag(nonce(n), Aad::from(aad), tag, buf, 0..)
        .map(|_| ())
        .map_err(|_| ())
}

fn segment_aad(header: &BlobHeader, blob: &BlobId) -> Vec<u8> {
    let mut aad = header.bytes().to_vec();
    aad.extend_from_slice(blob.as_bytes());
    aad
}

/// The length of a sealed blob of `plaintext_len` bytes: header, ciphertext and one tag per
/// segment (an empty plaintext still has one, empty, segment).
pub fn sealed_len(plaintext_len: u64, segment_size: u32) -> u64 {
    let segments = plaintext_len.div_ceil(segment_size as u64).max(1);
    HEADER_LEN as u64 + plaintext_len + segments * TAG_LEN as u64
}

/// Seals a whole in-memory plaintext into a blob of its own.
#[cfg(test)]
pub fn seal(key: &MasterKey, blob: &BlobId, plain: &[u8], segment_size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    seal_into(key, blob, plain, segment_size, &mut out);
    out
}

/// Seals a whole in-memory plaintext, appending the blob to `out`.
pub fn seal_into(
    key: &MasterKey,
    blob: &BlobId,
    plain: &[u8],
    segment_size: u32,
    out: &mut Vec<u8>,
) {
    let mut sealer = Sealer::new(key, blob, plain.len() as u64, segment_size);
    out.reserve(sealer.header().ciphertext_len() as usize);
    out.extend_from_slice(sealer.header().bytes());
    let mut pos = 0;
    while !sealer.is_done() {
        let n = sealer.next_segment_len();
        sealer.seal_next(&plain[pos..pos + n], out);
        pos += n;
    }
}

/// Opens a whole in-memory blob, verifying every segment and that nothing trails the last one.
pub fn open(key: &MasterKey, blob: &BlobId, sealed: &[u8]) -> Result<Vec<u8>, CryptError> {
    let opener = Opener::new(key, blob, sealed)?;
    let header = opener.header().clone();
    if sealed.len() as u64 != header.ciphertext_len() {
        return Err(CryptError::SegmentLength {
            index: header.segment_count().saturating_sub(1),
            found: sealed.len(),
            expected: header.ciphertext_len() as usize,
        });
    }
    let mut out = Vec::with_capacity(header.plaintext_len() as usize);
    for i in 0..header.segment_count() {
        let r = header.segment_range(i);
        opener.open_segment(i, &sealed[r.start as usize..r.end as usize], &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Addresser;

    fn key() -> MasterKey {
        MasterKey::from_secret(&[9; 32])
    }

    #[test]
    fn project_keys_are_stable_per_name_and_apart_from_other_keys() {
        let (k, other) = (key(), MasterKey::from_secret(&[8; 32]));
        assert_eq!(*k.project_key("trial-a"), *key().project_key("trial-a"));
        assert_ne!(*k.project_key("trial-a"), *k.project_key("trial-b"));
        assert_ne!(*k.project_key("trial-a"), *other.project_key("trial-a"));
        assert_ne!(*k.project_key("trial-a"), *k.address_key());
    }

    #[test]
    fn round_trip_at_segment_boundaries() {
        let k = key();
        for len in [0usize, 1, 15, 16, 17, 64, 100, 1000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let id = Addresser::of(k.address_key(), &plain);
            let sealed = seal(&k, &id, &plain, 16);
            assert_eq!(
                sealed.len() as u64,
                BlobHeader::parse(&sealed).unwrap().ciphertext_len()
            );
            assert_eq!(open(&k, &id, &sealed).unwrap(), plain, "len {len}");
        }
    }

    #[test]
    fn ciphertext_hides_plaintext_and_differs_each_time() {
        let k = key();
        let plain = b"DICM PATIENT^NAME 1.2.840.10008".repeat(10);
        let id = Addresser::of(k.address_key(), &plain);
        let a = seal(&k, &id, &plain, 64);
        let b = seal(&k, &id, &plain, 64);
        assert_ne!(a, b, "a fresh data key per seal");
        assert!(!a.windows(4).any(|w| w == b"DICM"));
        assert!(!a.windows(7).any(|w| w == b"PATIENT"));
    }

    #[test]
    fn tampering_is_detected() {
        let k = key();
        let plain = vec![5u8; 200];
        let id = Addresser::of(k.address_key(), &plain);
        let sealed = seal(&k, &id, &plain, 64);
        for pos in [3, 40, 90, HEADER_LEN + 1, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[pos] ^= 1;
            assert!(open(&k, &id, &bad).is_err(), "flip at {pos} undetected");
        }
        assert!(
            open(&k, &id, &sealed[..sealed.len() - 80]).is_err(),
            "truncation"
        );
        let other = Addresser::of(k.address_key(), b"other");
        assert!(
            open(&k, &other, &sealed).is_err(),
            "blob moved to another address"
        );
        let wrong = MasterKey::from_secret(&[1; 32]);
        assert!(matches!(
            open(&wrong, &id, &sealed),
            Err(CryptError::WrongKey { .. })
        ));
    }

    #[test]
    fn one_segment_opens_alone() {
        let k = key();
        let plain: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let id = Addresser::of(k.address_key(), &plain);
        let sealed = seal(&k, &id, &plain, 100);
        let opener = Opener::new(&k, &id, &sealed).unwrap();
        let h = opener.header().clone();
        assert_eq!(h.segments_for(250..420), 2..5);
        let r = h.segment_range(3);
        let mut out = Vec::new();
        opener
            .open_segment(3, &sealed[r.start as usize..r.end as usize], &mut out)
            .unwrap();
        assert_eq!(out, &plain[300..400]);
        // the last segment cannot be passed off as a middle one and vice versa
        let r9 = h.segment_range(9);
        assert!(opener
            .open_segment(8, &sealed[r9.start as usize..r9.end as usize], &mut out)
            .is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (k1, created) = MasterKey::load_or_create(dir.path(), None).unwrap();
        let path = created.expect("first start creates the key");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k2, again) = MasterKey::load_or_create(dir.path(), None).unwrap();
        assert!(again.is_none());
        assert_eq!(k1.key_id_hex(), k2.key_id_hex());
        assert!(MasterKey::load_or_create(dir.path(), Some("abc")).is_err());
    }
}
