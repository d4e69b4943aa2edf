//! Reading what is stored: an instance or a byte range of it, verified and decrypted by the
//! store, with read-repair (copies found missing or corrupt on the way are queued for repair);
//! conversion to another transfer syntax; and which instances a request names within the
//! caller's scope. Every door reads through here.

use crate::ServiceError;
use std::sync::Arc;
use strata_core::{BlobId, Metrics};
use strata_dicom::inspect::{Layout, PixelLayout};
use strata_index::{Index, InstanceRef, Scope, StoredInstance};
use strata_render::CodecWorkers;
use strata_store::{BadCopy, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes read per step when a stored instance is streamed: what one transfer holds in memory
/// whatever the instance's size.
pub const READ_WINDOW: u64 = 1 << 20;

/// Layouts kept between requests, and the most fragments one may list to be kept (16 bytes a
/// fragment).
const CACHED_LAYOUTS: usize = 32;
const MAX_CACHED_FRAGMENTS: usize = 1 << 16;

/// Layouts lately read, by blob, oldest first.
type Layouts = Vec<(BlobId, Arc<Layout>)>;

/// Bytes a [`BlobFile`] reads at a time: a header's elements are small and many.
const FILE_WINDOW: u64 = 64 << 10;

/// The unit of the whole-instance memory budget: permits are counted in KiB.
const BUDGET_UNIT: u64 = 1 << 10;

#[derive(Clone)]
pub struct Reads {
    store: Arc<Store>,
    index: Index,
    metrics: Arc<Metrics>,
    whole: WholeBudget,
    /// Layouts of large instances lately read, so each of their frames does not read the
    /// header (and every fragment's item header) again.
    layouts: Arc<std::sync::Mutex<Layouts>>,
    /// Where conversions run: the codec worker processes (None: this process).
    converter: Option<Arc<CodecWorkers>>,
    /// The tiers: a blob no replica has may be cold, restored on read; reads are noted.
    tiers: Option<Arc<crate::tiers::Tiers>>,
}

/// The memory that reads needing a whole instance at once (conversion, frames, bulk data,
/// rendering) may hold together: `render.instance_memory_bytes`. Streaming reads take none.
#[derive(Clone)]
struct WholeBudget {
    bytes: u64,
    permits: Arc<Semaphore>,
}

/// What the caller of [`Reads::part10`] does with the bytes: sends them on, or parses them into
/// an object (which takes about as much again, and is counted so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Send,
    Parse,
}

/// Bytes of a stored instance held whole in memory, with their share of the budget: the share
/// is given back when these are dropped.
pub struct Held {
    pub bytes: Vec<u8>,
    _share: Vec<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Held {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl WholeBudget {
    fn new(bytes: u64) -> WholeBudget {
        let units = (bytes / BUDGET_UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        WholeBudget {
            bytes,
            permits: Arc::new(Semaphore::new(units as usize)),
        }
    }

    fn units(&self, bytes: u64) -> Result<u32, ServiceError> {
        if bytes > self.bytes {
            return Err(ServiceError::TooLarge(format!(
                "the instance would take {} MiB in memory for this, more than \
                 render.instance_memory_bytes ({} MiB) allows; it can be retrieved as stored",
                bytes.div_ceil(1 << 20),
                self.bytes >> 20
            )));
        }
        Ok(bytes.div_ceil(BUDGET_UNIT).max(1) as u32)
    }

    /// A share of `bytes`, waiting for other whole reads to end when the budget is taken.
    async fn share(&self, bytes: u64) -> Result<OwnedSemaphorePermit, ServiceError> {
        let units = self.units(bytes)?;
        self.permits
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|_| ServiceError::Setup("the read budget is closed".into()))
    }

    /// A share of `bytes` more than the `held` bytes already shared, only if the budget has it
    /// now (waiting while holding a share could deadlock against another holder).
    fn more(&self, held: u64, bytes: u64) -> Result<OwnedSemaphorePermit, ServiceError> {
        self.units(held + bytes)?;
        let units = self.units(bytes)?;
        self.permits
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| {
                ServiceError::Busy(format!(
                    "converting this instance needs {} MiB more than render.instance_memory_bytes \
                     has free now; try again later or retrieve it as stored",
                    bytes.div_ceil(1 << 20)
                ))
            })
    }
}

impl Reads {
    /// `instance_memory_bytes`: the budget of whole-instance reads; `converter`: the codec
    /// worker processes conversions run in (None: in this process).
    pub fn new(
        store: Arc<Store>,
        index: Index,
        metrics: Arc<Metrics>,
        instance_memory_bytes: u64,
        converter: Option<Arc<CodecWorkers>>,
    ) -> Reads {
        Reads {
            store,
            index,
            metrics,
            whole: WholeBudget::new(instance_memory_bytes),
            layouts: Default::default(),
            converter,
            tiers: None,
        }
    }

    /// These reads, restoring cold blobs through `tiers` and noting reads there.
    pub fn with_tiers(mut self, tiers: Arc<crate::tiers::Tiers>) -> Reads {
        self.tiers = Some(tiers);
        self
    }

    /// Notes that `studies` are being read (what the tier policy's "unread for" sees). A
    /// failure to note is logged, never the reader's problem.
    pub async fn note_reads(&self, studies: &[String]) {
        if let Some(t) = &self.tiers {
            if let Err(e) = t.note_reads(studies).await {
                tracing::warn!("noting reads: {e}");
            }
        }
    }

    /// When no replica has `blob` at all (`error`), whether it was cold and is now restored
    /// to the replicas, so the read can be tried again.
    async fn restored(&self, blob: &BlobId, error: &strata_store::StoreError) -> bool {
        let Some(t) = self
            .tiers
            .as_ref()
            .filter(|_| crate::tiers::Tiers::all_missing(error))
        else {
            return false;
        };
        match t.restore_blob(blob).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(%blob, "restoring from the cold tier: {e}");
                false
            }
        }
    }

    /// Where a stored instance's pixel data lies (see [`Layout`]), read by ranges: its header
    /// and its fragments' item headers, never its pixels.
    pub async fn layout(&self, blob: &BlobId, size: u64) -> Result<Arc<Layout>, ServiceError> {
        let cached = |layouts: &Layouts| {
            layouts
                .iter()
                .find(|(b, _)| b == blob)
                .map(|(_, l)| l.clone())
        };
        if let Some(hit) = self.layouts.lock().ok().as_deref().and_then(cached) {
            return Ok(hit);
        }
        let file = self.blob_file(blob, size);
        let found = tokio::task::spawn_blocking(move || strata_dicom::inspect::layout(file, size))
            .await
            .map_err(|e| ServiceError::Convert(e.to_string()))?
            .map_err(|e| ServiceError::Convert(format!("the stored instance: {e}")))?;
        let slim = Arc::new(found.slim());
        let fragments = match &slim.pixels {
            Some(PixelLayout::Encapsulated { fragments, .. }) => fragments.len(),
            _ => 0,
        };
        if fragments <= MAX_CACHED_FRAGMENTS {
            if let Ok(mut layouts) = self.layouts.lock() {
                if layouts.len() >= CACHED_LAYOUTS {
                    layouts.remove(0);
                }
                layouts.push((*blob, slim.clone()));
            }
        }
        Ok(slim)
    }

    /// An object holding a stored instance's header and the pixel data of frame `frame` alone
    /// (as Number of Frames 1), read by its layout: what rendering one frame of a large instance
    /// needs, without the rest of its pixels. An error when the frame cannot be located so
    /// (a deflated or big-endian data set, bits not byte-aligned, a header value too large to be
    /// held): the caller reads the instance whole instead.
    pub async fn frame_object(
        &self,
        stored: &StoredInstance,
        frame: u32,
    ) -> Result<(dicom_object::DefaultDicomObject, Held), ServiceError> {
        use dicom_core::value::{PixelFragmentSequence, PrimitiveValue};
        use dicom_core::{DataElement, VR};
        use dicom_dictionary_std::tags;
        let unlocated = |why: String| ServiceError::Convert(format!("frame {}: {why}", frame + 1));
        if stored.transfer_syntax == strata_dicom::syntax::EXPLICIT_VR_BIG_ENDIAN {
            return Err(unlocated("big-endian pixel data".into()));
        }
        let file = self.blob_file(&stored.blob_id, stored.size);
        let size = stored.size;
        let layout = tokio::task::spawn_blocking(move || strata_dicom::inspect::layout(file, size))
            .await
            .map_err(|e| unlocated(e.to_string()))?
            .map_err(|e| unlocated(e.to_string()))?;
        let ranges = layout.frame_ranges(frame).map_err(unlocated)?;
        let mut held = self.read_ranges(&stored.blob_id, &ranges).await?;
        let Layout {
            meta,
            mut header,
            pixels,
            ..
        } = layout;
        let value: dicom_core::value::Value<dicom_object::InMemDicomObject, Vec<u8>> = match pixels
        {
            // the bytes move into the object; the share stays with `held`
            Some(PixelLayout::Native { .. }) => {
                PrimitiveValue::from(std::mem::take(&mut held.bytes)).into()
            }
            _ => {
                let mut fragments = Vec::with_capacity(ranges.len());
                let mut at = 0usize;
                for r in &ranges {
                    let n = (r.end - r.start) as usize;
                    fragments.push(held.bytes[at..at + n].to_vec());
                    at += n;
                }
                held.bytes = Vec::new();
                PixelFragmentSequence::new(Vec::<u32>::new(), fragments).into()
            }
        };
        let bits = strata_dicom::attr::int(&header, tags::BITS_ALLOCATED).unwrap_or(16);
        let vr = if bits > 8 { VR::OW } else { VR::OB };
        header.put(DataElement::new(tags::PIXEL_DATA, vr, value));
        header.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("1"),
        ));
        Ok((header.with_exact_meta(meta), held))
    }

    fn blob_file(&self, blob: &BlobId, size: u64) -> BlobFile {
        BlobFile {
            reads: self.clone(),
            blob: *blob,
            len: size,
            pos: 0,
            window: (0, Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Byte ranges of a stored blob, read and joined (a frame's fragments), within the budget
    /// of whole reads.
    pub async fn read_ranges(
        &self,
        blob: &BlobId,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Held, ServiceError> {
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let share = self.whole.share(total).await?;
        let mut bytes = Vec::with_capacity(total as usize);
        for r in ranges {
            bytes.extend_from_slice(&self.read_blob_range(blob, r.clone()).await?);
        }
        Ok(Held {
            bytes,
            _share: vec![share],
        })
    }

    /// The instances under a study (and series, and instance) within `scope`, in series and
    /// instance order; [`ServiceError::NotInScope`] when there are none the scope may see, the
    /// same answer as for nothing there.
    pub async fn resolve(
        &self,
        study: &str,
        series: Option<&str>,
        sop: Option<&str>,
        scope: Scope,
    ) -> Result<Vec<InstanceRef>, ServiceError> {
        let found = self
            .index
            .instances_under(
                study.to_string(),
                series.map(String::from),
                sop.map(String::from),
                scope,
            )
            .await?;
        if found.is_empty() {
            return Err(ServiceError::NotInScope);
        }
        self.note_reads(&[study.to_string()]).await;
        Ok(found)
    }

    /// How many replicas hold a durable copy of `blob`, and how many must (the write quorum):
    /// what a storage commitment reports.
    pub async fn copies(&self, blob: &BlobId) -> (usize, usize) {
        let replicas = self.store.replicas();
        (replicas.copies_present(blob).await, replicas.write_quorum())
    }

    /// Streams the stored instance `sop_uid` into `sink`, byte for byte as received. Copies found
    /// missing or corrupt on the way are queued for repair.
    pub async fn read_instance<S>(
        &self,
        sop_uid: &str,
        sink: S,
    ) -> Result<StoredInstance, ServiceError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let stored = self
            .index
            .instance(sop_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound(sop_uid.to_string()))?;
        self.read_blob(&stored.blob_id, sink).await?;
        Ok(stored)
    }

    /// What the index keeps of the stored instance `sop_uid` to read it.
    pub async fn stored(&self, sop_uid: &str) -> Result<StoredInstance, ServiceError> {
        self.index
            .instance(sop_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound(sop_uid.to_string()))
    }

    /// The stored instance, whole, as received, within the budget of whole reads.
    pub async fn instance_whole(&self, stored: &StoredInstance) -> Result<Held, ServiceError> {
        self.part10(
            &stored.blob_id,
            stored.size,
            &stored.transfer_syntax,
            None,
            Then::Parse,
        )
        .await
    }

    /// Streams a blob's verified plaintext into `sink`, queueing repairs for bad copies.
    pub async fn read_blob<S>(&self, blob: &BlobId, sink: S) -> Result<(), ServiceError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let mut sink = sink;
        let bad = match self.store.read_to(blob, &mut sink).await {
            Err(e) if self.restored(blob, &e).await => self.store.read_to(blob, sink).await?,
            read => read?,
        };
        self.queue_repairs(blob, bad).await
    }

    /// Bytes `range` of a stored blob's plaintext, verified; bad copies are queued for repair.
    pub async fn read_blob_range(
        &self,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, ServiceError> {
        let (bytes, bad) = match self.store.read_range(blob, range.clone()).await {
            Err(e) if self.restored(blob, &e).await => self.store.read_range(blob, range).await?,
            read => read?,
        };
        self.queue_repairs(blob, bad).await?;
        Ok(bytes)
    }

    /// A stored instance as Part-10 bytes, whole, within the budget of whole reads: as received
    /// when `target` is None or the stored syntax, else converted to `target` (pixel data
    /// decoded and encoded by dicom-pixeldata's codecs, in a codec worker process when there
    /// are some). `size` is the stored size; what is converted counts against the budget too,
    /// and so does the object the caller parses from them when it says it will.
    pub async fn part10(
        &self,
        blob: &BlobId,
        size: u64,
        stored_syntax: &str,
        target: Option<&str>,
        then: Then,
    ) -> Result<Held, ServiceError> {
        let shared = match then {
            Then::Send => size,
            Then::Parse => size.saturating_mul(2),
        };
        let share = self.whole.share(shared).await?;
        let mut bytes = Vec::with_capacity(size.min(READ_WINDOW) as usize);
        self.read_blob(blob, |c| {
            bytes.extend_from_slice(c);
            Ok(())
        })
        .await?;
        let Some(target) = target.filter(|t| *t != stored_syntax) else {
            return Ok(Held {
                bytes,
                _share: vec![share],
            });
        };
        // the converted bytes must fit beside the stored ones
        let limit = self.whole.bytes.saturating_sub(shared);
        let converted = match self.converter.clone() {
            Some(workers) => tokio::task::spawn_blocking({
                let target = target.to_string();
                move || workers.convert(&bytes, &target, limit)
            })
            .await
            .map_err(|e| ServiceError::Convert(e.to_string()))?
            .map_err(|e| ServiceError::Convert(e.to_string()))?,
            None => {
                tokio::task::block_in_place(|| strata_dicom::transcode::transcode(&bytes, target))
                    .map_err(ServiceError::Convert)?
            }
        };
        let more = self.whole.more(shared, converted.len() as u64)?;
        Ok(Held {
            bytes: converted,
            _share: vec![share, more],
        })
    }

    /// A stored instance as Part-10 bytes in `target` syntax (None: as stored), window by
    /// window: as stored, it streams; converted, it is held whole within the budget.
    pub async fn part10_windows(
        &self,
        blob: &BlobId,
        size: u64,
        stored_syntax: &str,
        target: Option<&str>,
    ) -> Result<Windows, ServiceError> {
        match target.filter(|t| *t != stored_syntax) {
            None => self.windows(blob, 0..size).await,
            Some(t) => {
                let held = self
                    .part10(blob, size, stored_syntax, Some(t), Then::Send)
                    .await?;
                Ok(self.held_windows(held))
            }
        }
    }

    /// A stored instance's data set (what follows its Part-10 header) in `target` syntax, window
    /// by window: what a C-STORE sub-operation sends. As stored, it streams; converted, it is
    /// held whole within the budget.
    pub async fn data_set(
        &self,
        blob: &BlobId,
        size: u64,
        stored_syntax: &str,
        target: &str,
    ) -> Result<Windows, ServiceError> {
        if target == stored_syntax {
            return self.data_set_windows(blob, size).await;
        }
        let mut held = self
            .part10(blob, size, stored_syntax, Some(target), Then::Send)
            .await?;
        let start = strata_dicom::part10::data_set_start(&held.bytes)
            .map_err(|e| ServiceError::Convert(format!("the converted file meta: {e}")))?;
        held.bytes.drain(..start);
        Ok(self.held_windows(held))
    }

    /// A stored instance's data set as stored, in memory one window at a time.
    async fn data_set_windows(&self, blob: &BlobId, size: u64) -> Result<Windows, ServiceError> {
        let mut windows = self.windows(blob, 0..size).await?;
        let first = windows.pending.take().unwrap_or_default();
        let start = strata_dicom::part10::data_set_start(&first).map_err(|e| {
            ServiceError::Convert(format!(
                "the stored instance's file meta is unreadable: {e}"
            ))
        })?;
        windows.len -= start as u64;
        windows.pending = Some(first[start..].to_vec());
        Ok(windows)
    }

    /// Bytes `range` of a stored blob, window by window; the first window is read before this
    /// returns, so a blob no replica can give is an error here rather than mid-transfer.
    pub async fn windows(
        &self,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Windows, ServiceError> {
        let end = (range.start + READ_WINDOW).min(range.end);
        let first = self.read_blob_range(blob, range.start..end).await?;
        Ok(Windows {
            reads: self.clone(),
            blob: Some(*blob),
            next: end,
            end: range.end,
            len: range.end - range.start,
            pending: Some(first),
            _share: Vec::new(),
        })
    }

    /// A data set held whole (a converted one) given out as windows like a stored one.
    fn held_windows(&self, held: Held) -> Windows {
        let Held { bytes, _share } = held;
        Windows {
            reads: self.clone(),
            blob: None,
            next: 0,
            end: 0,
            len: bytes.len() as u64,
            pending: Some(bytes),
            _share,
        }
    }

    async fn queue_repairs(&self, blob: &BlobId, bad: Vec<BadCopy>) -> Result<(), ServiceError> {
        if bad.is_empty() {
            return Ok(());
        }
        let items = bad
            .into_iter()
            .map(|b| {
                self.metrics.replica_error(b.replica, "read");
                tracing::warn!(%blob, replica = b.replica + 1, "bad copy on read: {}; repair queued", b.error);
                (*blob, b.replica, format!("read: {}", b.error))
            })
            .collect();
        self.index.enqueue_repairs(items).await?;
        Ok(())
    }
}

/// A stored blob read window by window ([`READ_WINDOW`] bytes at a time).
pub struct Windows {
    reads: Reads,
    /// None for bytes held whole (a converted data set), given out in one window.
    blob: Option<BlobId>,
    next: u64,
    end: u64,
    /// Bytes in all, every window together.
    len: u64,
    pending: Option<Vec<u8>>,
    _share: Vec<OwnedSemaphorePermit>,
}

impl Windows {
    /// The next window, None after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ServiceError> {
        if let Some(first) = self.pending.take() {
            return Ok(Some(first));
        }
        let Some(blob) = self.blob.filter(|_| self.next < self.end) else {
            return Ok(None);
        };
        let end = (self.next + READ_WINDOW).min(self.end);
        let bytes = self.reads.read_blob_range(&blob, self.next..end).await?;
        if bytes.len() as u64 != end - self.next {
            return Err(ServiceError::Convert(format!(
                "the stored blob ended at byte {} of {}",
                self.next + bytes.len() as u64,
                self.end
            )));
        }
        self.next = end;
        Ok(Some(bytes))
    }

    /// Bytes in all, every window together.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the window last returned was the last.
    pub fn done(&self) -> bool {
        self.pending.is_none() && self.next >= self.end
    }
}

/// A stored blob as a file a parser can read and seek on a blocking thread, read by ranges of
/// [`FILE_WINDOW`] bytes through [`Reads::read_blob_range`] (verified, repairs queued).
struct BlobFile {
    reads: Reads,
    blob: BlobId,
    len: u64,
    pos: u64,
    /// The window last read: its offset and bytes.
    window: (u64, Vec<u8>),
    runtime: tokio::runtime::Handle,
}

impl std::io::Read for BlobFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let (start, bytes) = &self.window;
        let inside = self.pos >= *start && self.pos < start + bytes.len() as u64;
        if !inside {
            let end = (self.pos + FILE_WINDOW).min(self.len);
            let read = self
                .runtime
                .block_on(self.reads.read_blob_range(&self.blob, self.pos..end))
                .map_err(std::io::Error::other)?;
            if read.is_empty() {
                return Ok(0);
            }
            self.window = (self.pos, read);
        }
        let (start, bytes) = &self.window;
        let from = (self.pos - start) as usize;
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for BlobFile {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}
