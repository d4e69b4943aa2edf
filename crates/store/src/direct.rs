//! Writing a large blob to a local replica with direct I/O (`O_DIRECT`): the data goes from our
//! buffer to the disk without a copy into the page cache. Three local copies of a 512 KB blob
//! otherwise mean 1.5 MB of fresh page-cache pages per instance, and on a virtual machine whose
//! host backs guest memory lazily, filling fresh pages costs more than writing them to disk
//! (`benches/RESULTS.md`: about 200 against 600 instances/s for three copies made durable).
//! Small blobs still go through object_store's buffered writes, which are faster for them.
//!
//! Direct I/O wants whole blocks from an aligned buffer: a blob to be written is [`Pages`], which
//! the store seals into directly, so each copy is one write straight from that buffer. The file
//! is written under object_store's staging name (`<key>#<digits>`, which its listing skips),
//! padded to whole pages, cut back to its length, and renamed into place; the replica's syncer
//! then makes the rename and the file's blocks durable like any other write.

use bytes::Bytes;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Blobs at least this large are written with direct I/O (below it buffered writes are faster).
pub const DIRECT_MIN: usize = 128 * 1024;
/// Alignment of the buffer, the offsets and the lengths of a direct write (a page, which is at
/// least any disk's logical block size).
const ALIGN: usize = 4096;

/// Bytes that start at a page-aligned address and are followed by zeros up to a whole number of
/// pages: what a direct write takes without a copy. Cheap to clone (the buffer is shared).
#[derive(Clone)]
pub struct Pages {
    padded: Bytes,
    len: usize,
}

impl Pages {
    /// The bytes `fill` appends to an empty buffer that has room for `len` of them. (Empty
    /// pages hold no page, so they need no address.)
    pub fn build(len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Pages {
        let mut buf = Vec::<u8>::with_capacity(len.div_ceil(ALIGN) * ALIGN + ALIGN);
        let pad = buf.as_ptr().align_offset(ALIGN);
        buf.resize(pad, 0);
        fill(&mut buf);
        let len = buf.len() - pad;
        buf.resize(pad + len.div_ceil(ALIGN) * ALIGN, 0);
        if buf[pad..].as_ptr().align_offset(ALIGN) != 0 {
            // `fill` appended more than `len` and the buffer moved: place the bytes again, in a
            // buffer with room for exactly them
            return Pages::copy_of(&buf[pad..pad + len]);
        }
        Pages {
            padded: Bytes::from(buf).slice(pad..),
            len,
        }
    }

    pub fn copy_of(bytes: &[u8]) -> Pages {
        Pages::build(bytes.len(), |b| b.extend_from_slice(bytes))
    }

    /// The bytes themselves, without the padding.
    pub fn bytes(&self) -> Bytes {
        self.padded.slice(..self.len)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What happened to a direct write.
pub enum Written {
    Done,
    /// The filesystem refuses `O_DIRECT` (tmpfs, some network filesystems): nothing was written,
    /// write the blob the ordinary way.
    Unsupported,
}

/// Writes `data` to `root/key` (the key's folders created as needed), replacing any file there.
pub fn write(root: &Path, key: &str, data: &Pages) -> std::io::Result<Written> {
    let dest = root.join(key);
    let mut staging;
    let mut n: u64 = rand::random::<u32>().into();
    let mut folders_made = false;
    let file = loop {
        staging = dest.clone().into_os_string();
        staging.push(format!("#{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&staging)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound && !folders_made => {
                std::fs::create_dir_all(dest.parent().expect("an object key has a folder"))?;
                folders_made = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Written::Unsupported),
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        file.write_all_at(&data.padded, 0)?;
        file.set_len(data.len as u64)?;
        drop(file);
        std::fs::rename(&staging, &dest)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    Ok(Written::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_aligned_and_padded_however_they_are_filled() {
        let sizes = [0, 1, 100, ALIGN - 1, ALIGN, ALIGN + 1, 9000, DIRECT_MIN + 1];
        for (room, len) in sizes.iter().flat_map(|&r| sizes.map(|l| (r, l))) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            // a `fill` that appends more than the room it was given still gives aligned pages
            let p = Pages::build(room, |b| b.extend_from_slice(&data));
            assert_eq!((p.len(), p.bytes()), (len, Bytes::from(data)));
            if len > 0 {
                assert_eq!(p.padded.as_ptr().align_offset(ALIGN), 0, "{room} {len}");
            }
            assert_eq!(p.padded.len() % ALIGN, 0);
            assert!(p.padded.len() - len < ALIGN && p.padded[len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn writes_exact_bytes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            DIRECT_MIN,
            DIRECT_MIN + 1,
            4 << 20,
            3 * ALIGN - 7,
            1,
            2 * ALIGN,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            match write(dir.path(), "blobs/ab/cd/x", &Pages::copy_of(&data)).unwrap() {
                Written::Done => {
                    assert_eq!(
                        std::fs::read(dir.path().join("blobs/ab/cd/x")).unwrap(),
                        data
                    )
                }
                // a test folder on tmpfs: the caller falls back, nothing may be left behind
                Written::Unsupported => assert!(!dir.path().join("blobs/ab/cd/x").exists()),
            }
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs/ab/cd"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.len() <= 1, "staging files left behind: {names:?}");
    }
}
