//! A ZIP archive written as it is sent: entries come in as a stream of (path, bytes source),
//! each is written as it arrives and its bytes go out at once, so neither the archive nor any
//! stored instance is ever held whole. The zip crate writes in its streaming mode: a local
//! header, the bytes, then a data descriptor with the CRC and sizes (the header cannot be
//! rewritten on a stream), and the central directory at the end; ZIP64 records where an entry
//! or an offset passes 4 GiB. Entries are stored, not deflated: DICOM pixel data compresses
//! poorly and speed matters more.
//!
//! Nothing here knows DICOM: the media export feeds it, and so can any later export (a
//! de-identified one gives de-identified bytes; an encrypted one encrypts the stream this
//! returns).

use crate::reads::Windows;
use crate::ServiceError;
use futures::{Stream, StreamExt};
use std::io::Write;
use std::sync::{Arc, Mutex};
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

/// One file of the archive: where it goes and where its bytes come from.
pub struct Entry {
    /// The path inside the archive, `/`-separated.
    pub path: String,
    pub source: Source,
}

/// Where an entry's bytes come from.
pub enum Source {
    /// Bytes made for the archive (a DICOMDIR, a page, a picture, a de-identified instance).
    Bytes(Vec<u8>),
    /// A stored blob, read window by window as the archive is sent.
    Stored(Box<Windows>),
}

impl Entry {
    pub fn bytes(path: impl Into<String>, bytes: Vec<u8>) -> Entry {
        Entry {
            path: path.into(),
            source: Source::Bytes(bytes),
        }
    }

    fn len(&self) -> u64 {
        match &self.source {
            Source::Bytes(b) => b.len() as u64,
            Source::Stored(w) => w.len(),
        }
    }
}

/// Where the zip writer puts its output until the stream hands it on.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("the ZIP spool is poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The archive as it is being written.
struct Writer {
    zip: Option<ZipWriter<StreamWriter<Spool>>>,
    spool: Spool,
    options: SimpleFileOptions,
}

/// Where the writer is: between entries, inside a stored one, or done.
enum Step {
    Entries,
    Windows(Box<Windows>),
    Done,
}

fn zip_error(e: zip::result::ZipError) -> std::io::Error {
    std::io::Error::other(format!("writing the ZIP: {e}"))
}

impl Writer {
    fn new(modified: chrono::NaiveDateTime) -> Writer {
        use chrono::{Datelike, Timelike};
        let spool = Spool::default();
        // ZIP times start in 1980
        let time = zip::DateTime::from_date_and_time(
            modified.year().clamp(1980, 2107) as u16,
            modified.month() as u8,
            modified.day() as u8,
            modified.hour() as u8,
            modified.minute() as u8,
            modified.second().min(59) as u8,
        )
        .unwrap_or_default();
        Writer {
            zip: Some(ZipWriter::new_stream(spool.clone())),
            spool,
            options: SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .last_modified_time(time),
        }
    }

    fn zip(&mut self) -> std::io::Result<&mut ZipWriter<StreamWriter<Spool>>> {
        self.zip
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the ZIP is already finished"))
    }

    fn start(&mut self, entry: &Entry) -> std::io::Result<()> {
        let options = self.options.large_file(entry.len() >= u32::MAX as u64);
        self.zip()?
            .start_file(entry.path.as_str(), options)
            .map_err(zip_error)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.zip()?.write_all(bytes)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.zip.take() {
            Some(zip) => zip.finish().map(drop).map_err(zip_error),
            None => Ok(()),
        }
    }
}

/// The archive of `entries`, as chunks of bytes to send in order. An entry that cannot be
/// read ends the stream with that error (the receiver sees a truncated archive, never a
/// complete-looking one with a file missing). `modified` is every entry's time.
pub fn zip_stream<S>(
    entries: S,
    modified: chrono::NaiveDateTime,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static
where
    S: Stream<Item = Result<Entry, ServiceError>> + Send + Unpin + 'static,
{
    let state = (entries, Writer::new(modified), Step::Entries);
    futures::stream::unfold(state, |(mut entries, mut w, mut step)| async move {
        loop {
            let wrote = match step {
                Step::Done => return None,
                Step::Windows(mut windows) => match windows.next().await {
                    Ok(Some(bytes)) => {
                        step = Step::Windows(windows);
                        w.write(&bytes)
                    }
                    Ok(None) => {
                        step = Step::Entries;
                        continue;
                    }
                    Err(e) => {
                        step = Step::Done;
                        Err(std::io::Error::other(e.to_string()))
                    }
                },
                Step::Entries => match entries.next().await {
                    Some(Ok(entry)) => {
                        step = Step::Entries;
                        let started = w.start(&entry);
                        match (started, entry.source) {
                            (Err(e), _) => Err(e),
                            (Ok(()), Source::Bytes(b)) => w.write(&b),
                            (Ok(()), Source::Stored(windows)) => {
                                // its header goes out with its first window
                                step = Step::Windows(windows);
                                continue;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        step = Step::Done;
                        Err(std::io::Error::other(e.to_string()))
                    }
                    None => {
                        step = Step::Done;
                        w.finish()
                    }
                },
            };
            return match wrote {
                Ok(_) => {
                    let out = w.spool.take();
                    Some((Ok(out), (entries, w, step)))
                }
                Err(e) => Some((Err(e), (entries, w, Step::Done))),
            };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the stream gives is a ZIP the zip crate's reader opens, every entry as written.
    #[tokio::test]
    async fn entries_come_back_as_written() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let entries = vec![
            Ok(Entry::bytes("README.TXT", b"hello".to_vec())),
            Ok(Entry::bytes("DICOM/P0000001/I0000001", big.clone())),
            Ok(Entry::bytes("EMPTY", Vec::new())),
        ];
        let now = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 6)
            .unwrap();
        let chunks: Vec<_> = zip_stream(futures::stream::iter(entries), now)
            .collect()
            .await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 3);
        let mut read = |name: &str| {
            let mut f = archive.by_name(name).unwrap();
            assert_eq!(f.compression(), CompressionMethod::Stored);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        };
        assert_eq!(read("README.TXT"), b"hello");
        assert!(read("DICOM/P0000001/I0000001") == big);
        assert!(read("EMPTY").is_empty());
    }

    /// An entry that fails ends the stream with the error: no central directory follows.
    #[tokio::test]
    async fn a_failed_entry_ends_the_stream_with_its_error() {
        let entries = vec![
            Ok(Entry::bytes("A", b"a".to_vec())),
            Err(ServiceError::NotInScope),
            Ok(Entry::bytes("B", b"b".to_vec())),
        ];
        let chunks: Vec<_> = zip_stream(
            futures::stream::iter(entries),
            chrono::NaiveDateTime::default(),
        )
        .collect()
        .await;
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].is_ok());
        assert!(chunks[1].is_err());
    }
}
