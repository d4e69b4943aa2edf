//! Writing a large blob to a local replica with direct I/O (`O_DIRECT`): the data goes from our
//! buffer to the disk without a copy into the page cache. Three local copies of a 512 KB blob
//! otherwise mean 1.5 MB of fresh page-cache pages per instance, and on a virtual machine whose
//! host backs guest memory lazily, filling fresh pages costs more than writing them to disk
//! (`benches/RESULTS.md`: about 200 against 600 instances/s for three copies made durable).
//! Small blobs still go through object_store's buffered writes, which are faster for them.
//!
//! The file is written under object_store's staging name (`<key>#<digits>`, which its listing
//! skips), padded to the block size, cut back to its length, and renamed into place; the
//! replica's syncer then makes the rename and the file's blocks durable like any other write.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Blobs at least this large are written with direct I/O (below it buffered writes are faster).
pub const DIRECT_MIN: usize = 128 * 1024;
/// Alignment of the buffer, the offsets and the lengths of a direct write (a page, which is at
/// least any disk's logical block size).
const ALIGN: usize = 4096;
/// Largest buffer a thread keeps between writes; a larger blob gets a buffer of its own, so idle
/// blocking threads do not each hold the largest blob they ever wrote.
const KEEP_MAX: usize = 4 << 20;

/// What happened to a direct write.
pub enum Written {
    Done,
    /// The filesystem refuses `O_DIRECT` (tmpfs, some network filesystems): nothing was written,
    /// write the blob the ordinary way.
    Unsupported,
}

/// Writes `data` to `root/key` (the key's folders created as needed), replacing any file there.
pub fn write(root: &Path, key: &str, data: &[u8]) -> std::io::Result<Written> {
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
        let padded = data.len().div_ceil(ALIGN) * ALIGN;
        let write = |buf: &mut AlignedBuf| {
            let buf = buf.take(padded);
            buf[..data.len()].copy_from_slice(data);
            buf[data.len()..].fill(0);
            file.write_all_at(buf, 0)
        };
        if padded <= KEEP_MAX {
            ALIGNED.with_borrow_mut(write)?;
        } else {
            write(&mut AlignedBuf(Vec::new()))?;
        }
        file.set_len(data.len() as u64)?;
        drop(file);
        std::fs::rename(&staging, &dest)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    Ok(Written::Done)
}

thread_local! {
    /// Each writing thread keeps its buffer: its pages stay mapped from one blob to the next.
    static ALIGNED: std::cell::RefCell<AlignedBuf> = const { std::cell::RefCell::new(AlignedBuf(Vec::new())) };
}

/// A byte buffer with an [`ALIGN`]-aligned window, grown as needed.
struct AlignedBuf(Vec<u8>);

impl AlignedBuf {
    /// `len` bytes starting at an aligned address.
    fn take(&mut self, len: usize) -> &mut [u8] {
        if self.0.len() < len + ALIGN {
            self.0 = vec![0; len + ALIGN];
        }
        let start = self.0.as_ptr().align_offset(ALIGN);
        &mut self.0[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_exact_bytes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        for len in [DIRECT_MIN, DIRECT_MIN + 1, KEEP_MAX + 1, 3 * ALIGN - 7, 1] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            match write(dir.path(), "blobs/ab/cd/x", &data).unwrap() {
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
