//! Pictures of stored instances: the one way anything shows pixels (`/rendered`, thumbnails,
//! WADO-URI pictures, the stream). A frame is read through [`Reads`] (verified, decrypted,
//! repaired), decoded on the render pool and cached there; each view of it is rendered from the
//! cached frame. Volumes for MPR are built from a series' decoded slices and kept within
//! `render.volume_bytes` ([`Pictures::volume`]).

use crate::reads::Reads;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use strata_index::InstanceRef;
use strata_render::picture::{self, PictureFormat};
use strata_render::stream::{OpenedSeries, SeriesInstance};
use strata_render::volume::{Geometry, Layout, Slab, SliceShape, TiledSlice, Volume};
use strata_render::{CachedFrame, DecodeLimits, Priority, RenderError, RenderPool, Rendered, View};

#[derive(Clone)]
pub struct Pictures {
    reads: Reads,
    pool: Arc<RenderPool>,
    /// The configured bounds every decode runs within (`render.max_frame_samples`, ...).
    limits: DecodeLimits,
    volumes: Arc<Volumes>,
    /// Series opened lately, newest last: see [`Pictures::open_series`].
    opened: Arc<Mutex<Vec<OpenedEntry>>>,
}

/// An opened series, with its series UID and the fingerprint of the instances it was made from.
type OpenedEntry = (String, u64, Arc<OpenedSeries>);

/// How many opened series are kept (each a few hundred KB for a series of hundreds of slices).
const OPENED_KEPT: usize = 16;

/// The volumes built for MPR, by series and the slices they are built from ([`volume_key`]),
/// least recently used first, and the bytes they may take.
struct Volumes {
    budget: u64,
    held: Mutex<Vec<(String, Arc<Volume>)>>,
    /// Volumes whose coarse copy is shown while the rest of their slices are placed, with the
    /// bytes both take.
    partial: Mutex<Vec<(String, MprVolume, u64)>>,
    /// One volume is begun at a time: its bytes are made room for before it is allocated.
    building: tokio::sync::Mutex<()>,
}

/// A series' volume for MPR as it can be shown now.
#[derive(Clone)]
pub struct MprVolume {
    /// The whole series' geometry: planes are laid out by it, and the viewer told of it.
    pub geometry: Arc<Geometry>,
    /// What to sample now: the whole volume, or, while that is built, a coarse one of about
    /// [`COARSE_SLICES`] of its slices.
    pub volume: Arc<Volume>,
    /// While the whole volume is built: it, when done, or why it could not be.
    pub whole: Option<WholeVolume>,
}

/// The whole volume being built, once it is (or why it could not be).
pub type WholeVolume = tokio::sync::watch::Receiver<Option<Result<Arc<Volume>, String>>>;

impl MprVolume {
    fn whole(volume: Arc<Volume>) -> MprVolume {
        MprVolume {
            geometry: Arc::new(volume.geometry.clone()),
            volume,
            whole: None,
        }
    }

    /// The whole volume, waited for when it is still being built.
    pub async fn complete(self) -> Result<Arc<Volume>, RenderInstanceError> {
        let Some(mut rx) = self.whole else {
            return Ok(self.volume);
        };
        let done = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match done {
            Ok(Some(Ok(v))) => Ok(v),
            Ok(Some(Err(e))) => Err(RenderInstanceError::Render(RenderError::Unsupported(e))),
            _ => Err(RenderInstanceError::Render(RenderError::Decode(
                "the volume's build stopped".into(),
            ))),
        }
    }
}

impl Volumes {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<Volume>)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series' volume when it is held (now the most recently used).
    fn get(&self, series: &str) -> Option<Arc<Volume>> {
        let mut held = self.held();
        let i = held.iter().position(|(s, _)| s == series)?;
        let entry = held.remove(i);
        let v = entry.1.clone();
        held.push(entry);
        Some(v)
    }

    /// Makes room for `bytes` more: evicts the least recently used volumes no view holds.
    fn make_room(&self, bytes: u64) -> Result<(), String> {
        let mb = |b: u64| b.div_ceil(1 << 20);
        if bytes > self.budget {
            return Err(format!(
                "the series' volume (with its coarse copy while it is built) takes {} MiB, more than render.volume_bytes allows ({} MiB)",
                mb(bytes),
                mb(self.budget)
            ));
        }
        let partial: u64 = self.partial().iter().map(|(_, _, b)| b).sum();
        let bytes = bytes + partial;
        let mut held = self.held();
        let total =
            |h: &[(String, Arc<Volume>)]| h.iter().map(|(_, v)| v.geometry.bytes()).sum::<u64>();
        while total(&held) + bytes > self.budget {
            // the cache's own reference is the only one: no view shows it
            let Some(i) = held.iter().position(|(_, v)| Arc::strong_count(v) == 1) else {
                return Err(format!(
                    "the volumes being viewed take {} of the {} MiB of render.volume_bytes: close an MPR view first",
                    mb(total(&held)),
                    mb(self.budget)
                ));
            };
            let (series, _) = held.remove(i);
            tracing::debug!(series, "volume evicted");
        }
        Ok(())
    }

    /// Bytes of the volumes held now, and of those being built.
    fn bytes(&self) -> u64 {
        let partial: u64 = self.partial().iter().map(|(_, _, b)| b).sum();
        partial
            + self
                .held()
                .iter()
                .map(|(_, v)| v.geometry.bytes())
                .sum::<u64>()
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, Vec<(String, MprVolume, u64)>> {
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series' volume as it can be shown now: held whole, or being built.
    fn find(&self, series: &str) -> Option<MprVolume> {
        if let Some(v) = self.get(series) {
            return Some(MprVolume::whole(v));
        }
        let partial = self.partial();
        partial
            .iter()
            .find(|(s, _, _)| s == series)
            .map(|(_, v, _)| v.clone())
    }

    /// The whole volume is built: held, no longer partial. The volumes of the series' earlier
    /// instances that no view shows go.
    fn finish(&self, key: &str, whole: Option<Arc<Volume>>) {
        self.partial().retain(|(s, _, _)| s != key);
        if let Some(v) = whole {
            let series = |k: &str| k.split('/').next().unwrap_or_default().to_string();
            let mut held = self.held();
            held.retain(|(k, v)| series(k) != series(key) || Arc::strong_count(v) > 1);
            held.push((key.to_string(), v));
        }
    }
}

impl Pictures {
    pub fn new(
        reads: Reads,
        pool: Arc<RenderPool>,
        limits: DecodeLimits,
        volume_bytes: u64,
    ) -> Pictures {
        Pictures {
            reads,
            pool,
            limits,
            volumes: Arc::new(Volumes {
                budget: volume_bytes,
                held: Mutex::new(Vec::new()),
                partial: Mutex::new(Vec::new()),
                building: tokio::sync::Mutex::new(()),
            }),
            opened: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A series' instances (as the catalog lists them, already within the caller's scope)
    /// ordered into slices, with the `series` message of the stream. Made off the runtime's
    /// threads, and kept for the last [`OPENED_KEPT`] series while their instances' metadata
    /// stays the same: the views of one series (its stack, then three MPR planes) read the
    /// metadata of its hundreds of instances once.
    pub async fn open_series(&self, refs: &[InstanceRef]) -> Result<OpenedSeries, String> {
        let first = refs.first().ok_or("the series has no instances")?;
        let series = first.series_uid.clone();
        let print = fingerprint(refs);
        let lock = || self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, o)) = lock().iter().find(|(s, f, _)| *s == series && *f == print) {
            return Ok(OpenedSeries::clone(o));
        }
        let refs = refs.to_vec();
        let opened = tokio::task::spawn_blocking(move || open_series(&refs))
            .await
            .map_err(|e| format!("the series could not be opened: {e}"))??;
        let mut kept = lock();
        kept.retain(|(s, _, _)| *s != series);
        kept.push((series, print, Arc::new(opened.clone())));
        if kept.len() > OPENED_KEPT {
            kept.remove(0);
        }
        Ok(opened)
    }

    /// The volume of an opened series ([`Pictures::open_series`]) for MPR: held, else built
    /// from its decoded slices within `render.volume_bytes`. A series that is not one
    /// stack of parallel single-frame slices is refused with the reason.
    ///
    /// A series of [`COARSE_FROM`] slices or more is shown first from a coarse volume of about
    /// [`COARSE_SLICES`] of them (and the last), built before this returns; the rest of the
    /// slices are then placed in the background, and [`MprVolume::whole`] says when the whole
    /// volume is there. Both count against the budget while it is built.
    pub async fn volume(&self, opened: &OpenedSeries) -> Result<MprVolume, RenderInstanceError> {
        let unsupported = |e: String| RenderInstanceError::Render(RenderError::Unsupported(e));
        let series = volume_key(opened);
        if let Some(v) = self.volumes.find(&series) {
            return Ok(v);
        }
        let _building = self.volumes.building.lock().await;
        if let Some(v) = self.volumes.find(&series) {
            return Ok(v);
        }
        let started = Instant::now();
        let mut slices = Vec::new();
        let mut sops = Vec::new();
        for s in &opened.slices {
            let g = s.geometry.clone().ok_or_else(|| {
                unsupported(format!(
                    "instance {} is not a single-frame slice with Image Position, Image Orientation and Pixel Spacing: MPR needs a stack of them",
                    s.sop_uid
                ))
            })?;
            slices.push(g);
            sops.push(s.sop_uid.clone());
        }
        let (geometry, order) = Geometry::new(&slices).map_err(unsupported)?;
        // in order of depth: the slice's place, its instance
        let wanted: Vec<(usize, String)> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| (k, sops[i].clone()))
            .collect();
        let n = wanted.len();
        let every = n.div_ceil(COARSE_SLICES).max(2);
        let coarse: Vec<usize> = match n >= COARSE_FROM {
            true => (0..n).filter(|k| k % every == 0 || *k == n - 1).collect(),
            false => Vec::new(),
        };
        let coarse_geometry = match coarse.is_empty() {
            true => None,
            false => {
                let picked: Vec<_> = coarse.iter().map(|&k| slices[order[k]].clone()).collect();
                Some(Geometry::new(&picked).map_err(unsupported)?.0)
            }
        };
        let bytes = geometry.bytes() + coarse_geometry.as_ref().map_or(0, Geometry::bytes);
        self.volumes.make_room(bytes).map_err(unsupported)?;
        let whole_geometry = Arc::new(geometry.clone());
        let mut volume = Volume::new(geometry);
        let Some(coarse_geometry) = coarse_geometry else {
            self.place_slices(&mut volume, wanted, Priority::Interactive, |_, _| Ok(()))
                .await?;
            let volume = Arc::new(volume);
            self.volumes.finish(&series, Some(volume.clone()));
            tracing::debug!(
                series,
                slices = n,
                ms = started.elapsed().as_millis() as u64,
                held_bytes = self.volumes.bytes(),
                "volume built"
            );
            return Ok(MprVolume::whole(volume));
        };
        // the coarse volume first: its slices go into the whole one too
        let mut small = Volume::new(coarse_geometry);
        let first: Vec<(usize, String)> = coarse.iter().map(|&k| wanted[k].clone()).collect();
        self.place_slices(&mut volume, first, Priority::Interactive, |k, slice| {
            let j = coarse.binary_search(&k).unwrap_or_default();
            small.place(j, slice)
        })
        .await?;
        let (tx, rx) = tokio::sync::watch::channel(None);
        let shown = MprVolume {
            geometry: whole_geometry,
            volume: Arc::new(small),
            whole: Some(rx),
        };
        self.volumes
            .partial()
            .push((series.clone(), shown.clone(), bytes));
        tracing::debug!(
            series,
            slices = coarse.len(),
            ms = started.elapsed().as_millis() as u64,
            "coarse volume built"
        );
        let rest: Vec<(usize, String)> = wanted
            .into_iter()
            .filter(|(k, _)| coarse.binary_search(k).is_err())
            .collect();
        let pictures = self.clone();
        tokio::spawn(async move {
            // below the streams' own renders: the coarse volume answers them meanwhile
            let built = pictures
                .place_slices(&mut volume, rest, Priority::Http, |_, _| Ok(()))
                .await
                .map(|()| Arc::new(volume));
            let (whole, told) = match built {
                Ok(v) => (Some(v.clone()), Ok(v)),
                Err(e) => (None, Err(e.to_string())),
            };
            pictures.volumes.finish(&series, whole);
            tracing::debug!(
                series,
                slices = n,
                ms = started.elapsed().as_millis() as u64,
                held_bytes = pictures.volumes.bytes(),
                ok = told.is_ok(),
                "volume built"
            );
            let _ = tx.send(Some(told));
        });
        Ok(shown)
    }

    /// Reads, decodes and tiles slices `wanted` (place in depth order, instance) on the pool at
    /// `priority`, several at a time, and places each in `volume`, and gives it to `also`.
    async fn place_slices(
        &self,
        volume: &mut Volume,
        wanted: Vec<(usize, String)>,
        priority: Priority,
        mut also: impl FnMut(usize, &TiledSlice) -> Result<(), RenderError>,
    ) -> Result<(), RenderInstanceError> {
        let shape = volume.shape();
        let pictures = self.clone();
        let mut tiled = futures::stream::iter(wanted)
            .map(move |(k, sop)| {
                let pictures = pictures.clone();
                async move { (k, pictures.volume_slice(&sop, shape, priority).await) }
            })
            .buffer_unordered(VOLUME_DECODES);
        while let Some((k, slice)) = tiled.next().await {
            let slice = slice?;
            volume.place(k, &slice)?;
            also(k, &slice)?;
        }
        Ok(())
    }

    /// The largest modality value over frames `frames` (instance, 0-based frame): an RT Dose
    /// grid's highest dose, for a dose map's scale and legend that hold across its frames.
    pub async fn largest_value(
        &self,
        frames: &[(String, u32)],
    ) -> Result<Option<f64>, RenderInstanceError> {
        let mut top: Option<f64> = None;
        for (sop, frame) in frames {
            let f = self
                .decoded_frame(sop, *frame, Priority::Interactive)
                .await?;
            if let Some(v) = strata_render::pipeline::largest_value(&f.frame, &f.presentation) {
                top = Some(top.map_or(v, |t| t.max(v)));
            }
        }
        Ok(top)
    }

    /// Slice `index` of `layout` through `volume` (a slab when asked), on the pool: a large
    /// image in one band of rows per worker, so one view's input is answered by every core.
    pub async fn reformat(
        &self,
        volume: Arc<Volume>,
        layout: Arc<Layout>,
        index: usize,
        slab: Option<Slab>,
        priority: Priority,
    ) -> Result<CachedFrame, RenderInstanceError> {
        let rows = layout.rows;
        let pixels = u64::from(rows) * u64::from(layout.columns);
        let bands = if pixels >= BAND_PIXELS {
            (self.pool.workers() as u32).clamp(1, rows.max(1))
        } else {
            1
        };
        let per = rows.div_ceil(bands);
        let jobs = (0..bands).map(|b| {
            let (volume, layout) = (volume.clone(), layout.clone());
            let band = (b * per).min(rows)..((b + 1) * per).min(rows);
            self.pool.run(priority, "reformat", move || {
                volume.reformat_rows(&layout, index, slab, band)
            })
        });
        let mut values = Vec::with_capacity(pixels as usize);
        for band in futures::future::join_all(jobs).await {
            values.extend(
                band.map_err(|e| RenderError::Decode(e.to_string()))?
                    .map_err(RenderInstanceError::Render)?,
            );
        }
        Ok(volume.frame(&layout, values))
    }

    /// [`Pictures::reformat`], rendered as `view` asks.
    pub async fn render_plane(
        &self,
        volume: Arc<Volume>,
        layout: Arc<Layout>,
        index: usize,
        slab: Option<Slab>,
        view: View,
        priority: Priority,
    ) -> Result<Rendered, RenderInstanceError> {
        let f = self.reformat(volume, layout, index, slab, priority).await?;
        self.pool
            .run(priority, "render", move || {
                strata_render::render(&f.frame, &f.presentation, &view)
            })
            .await
            .map_err(|e| RenderError::Decode(e.to_string()))?
            .map_err(RenderInstanceError::Render)
    }

    /// Renders frame `frame` (0-based) of the stored instance `sop_uid` as `view` asks. The one entry
    /// point for everything that shows pixels (`/rendered`, thumbnails, the stream). The decoded
    /// frame comes from the pool's cache when it is there; otherwise the instance is read (verified
    /// and decrypted by the archive), parsed and decoded on a render worker, and cached.
    pub async fn render(
        &self,
        sop_uid: &str,
        frame: u32,
        view: View,
        priority: Priority,
    ) -> Result<Rendered, RenderInstanceError> {
        let decoded = self.decoded_frame(sop_uid, frame, priority).await?;
        self.pool
            .run(priority, "render", move || {
                strata_render::render(&decoded.frame, &decoded.presentation, &view)
            })
            .await
            .map_err(|e| RenderError::Decode(e.to_string()))?
            .map_err(RenderInstanceError::Render)
    }

    /// [`Pictures::render`], then the render encoded as a picture file: on the pool too, at the
    /// same priority, since encoding is CPU work as well.
    pub async fn picture(
        &self,
        sop_uid: &str,
        frame: u32,
        view: View,
        priority: Priority,
        format: PictureFormat,
    ) -> Result<Vec<u8>, RenderInstanceError> {
        let rendered = self.render(sop_uid, frame, view, priority).await?;
        self.pool
            .run(priority, "encode", move || {
                picture::encode(&rendered, format)
            })
            .await
            .map_err(|e| RenderInstanceError::Encode(e.to_string()))?
            .map_err(RenderInstanceError::Encode)
    }

    /// Frame `frame` of `sop_uid`, decoded, with its presentation: from the cache, else read and
    /// decoded on a worker at `priority` and cached.
    pub async fn decoded_frame(
        &self,
        sop_uid: &str,
        frame: u32,
        priority: Priority,
    ) -> Result<Arc<CachedFrame>, RenderInstanceError> {
        if let Some(hit) = self.pool.cached(sop_uid, frame) {
            return Ok(hit);
        }
        let turn = self.pool.decode_turn(sop_uid, frame).await;
        let decoded = self.decode_missing(sop_uid, frame, priority).await;
        self.pool.end_turn(turn);
        decoded
    }

    /// The frame from the cache (another caller may have decoded it while this one waited for its
    /// turn), else read and decoded, and cached.
    async fn decode_missing(
        &self,
        sop_uid: &str,
        frame: u32,
        priority: Priority,
    ) -> Result<Arc<CachedFrame>, RenderInstanceError> {
        if let Some(hit) = self.pool.cached(sop_uid, frame) {
            return Ok(hit);
        }
        let decoded = Arc::new(self.decode_then(sop_uid, frame, priority, Ok).await?);
        self.pool.remember(sop_uid, frame, decoded.clone());
        Ok(decoded)
    }

    /// Frame `frame` of `sop_uid` read and decoded on a worker at `priority`, and `then` done
    /// with it there: not cached.
    async fn decode_then<T: Send + 'static>(
        &self,
        sop_uid: &str,
        frame: u32,
        priority: Priority,
        then: impl FnOnce(CachedFrame) -> Result<T, RenderError> + Send + 'static,
    ) -> Result<T, RenderInstanceError> {
        let stored = self.reads.stored(sop_uid).await?;
        let limits = self.limits.clone();
        // a large instance: the header and this frame's bytes alone, when they can be located
        let located = match stored.size > LOCATE_FRAMES_ABOVE {
            true => self.reads.frame_object(&stored, frame).await.ok(),
            false => None,
        };
        let done = match located {
            Some((obj, held)) => {
                self.pool
                    .run(priority, "decode", move || {
                        let decoded = strata_render::decode_one_frame(&obj, frame, &limits);
                        drop(held);
                        decoded.and_then(then)
                    })
                    .await
            }
            None => {
                let bytes = self.reads.instance_whole(&stored).await?;
                self.pool
                    .run(priority, "decode", move || {
                        strata_render::decode_part10(&bytes, frame, &limits).and_then(then)
                    })
                    .await
            }
        };
        Ok(done.map_err(|e| RenderError::Decode(e.to_string()))??)
    }

    /// A volume's slice: tiled from the decoded frame when it is cached (a stack reading has
    /// shown it), else read, decoded and tiled on a worker without caching the decoded frame:
    /// the volume holds the values, and a series' worth of decoded frames would push out what
    /// the cache holds for reading.
    async fn volume_slice(
        &self,
        sop_uid: &str,
        shape: SliceShape,
        priority: Priority,
    ) -> Result<TiledSlice, RenderInstanceError> {
        let tile = move |f: &CachedFrame| shape.tile(f);
        match self.pool.cached(sop_uid, 0) {
            Some(hit) => Ok(self
                .pool
                .run(priority, "tile", move || tile(&hit))
                .await
                .map_err(|e| RenderError::Decode(e.to_string()))??),
            None => {
                self.decode_then(sop_uid, 0, priority, move |f| tile(&f))
                    .await
            }
        }
    }

    /// Decodes frame 0 of each instance into the cache ahead of need, at the lowest priority: the
    /// stream calls this with the slices next to the one shown, so scrolling finds them decoded.
    /// Instances already cached cost nothing; failures are only logged (the real request will
    /// report them).
    pub fn prefetch(&self, sop_uids: &[String]) {
        for sop in sop_uids {
            if self.pool.cached(sop, 0).is_some() {
                continue;
            }
            let (pictures, sop) = (self.clone(), sop.clone());
            tokio::spawn(async move {
                if let Err(e) = pictures.decoded_frame(&sop, 0, Priority::Thumbnail).await {
                    tracing::debug!(sop, "prefetch: {e}");
                }
            });
        }
    }
}

/// Reformatted images of at least this many pixels are made in bands, one per render worker.
const BAND_PIXELS: u64 = 1 << 16;

/// Slices of a volume decoded at once while it is built.
const VOLUME_DECODES: usize = 8;

/// A series of this many slices or more is shown first from a coarse volume while the whole
/// one is built.
pub const COARSE_FROM: usize = 64;
/// The coarse volume holds about this many of the slices, evenly chosen (every second at
/// least), and the last.
pub const COARSE_SLICES: usize = 64;

/// Instances larger than this are rendered from their header and the frame's own bytes (see
/// [`Reads::frame_object`]) rather than read whole.
const LOCATE_FRAMES_ABOVE: u64 = 32 << 20;

/// What a series' volume is held under: the series, and the slices it is built from (a series
/// still arriving is built again once it has more; one whose slices moved, too).
fn volume_key(opened: &OpenedSeries) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in &opened.slices {
        let at = s.geometry.as_ref().map(|g| g.position.map(f64::to_bits));
        (&s.sop_uid, s.frame, at).hash(&mut h);
    }
    format!("{}/{:016x}", opened.series, h.finish())
}

/// What tells one version of a series' instances from another: their UIDs and metadata.
fn fingerprint(refs: &[InstanceRef]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in refs {
        (&r.study_uid, &r.sop_uid, &r.metadata).hash(&mut h);
    }
    h.finish()
}

/// A series' instances, as the catalog lists them, ordered into slices (the render crate's
/// geometry, fed from the index's rows).
fn open_series(refs: &[InstanceRef]) -> Result<OpenedSeries, String> {
    let first = refs.first().ok_or("the series has no instances")?;
    let instances: Vec<SeriesInstance> = refs
        .iter()
        .map(|r| SeriesInstance {
            sop_uid: &r.sop_uid,
            metadata: &r.metadata,
        })
        .collect();
    strata_render::stream::open_series(&first.study_uid, &first.series_uid, &instances)
}

/// Why [`Pictures::render`] gave no image: the instance could not be read, or not rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderInstanceError {
    #[error(transparent)]
    Archive(#[from] crate::ServiceError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("cannot encode the picture: {0}")]
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_render::volume::SliceGeometry;

    /// A volume of two `side`² slices (whole 8×8 tiles): 4·side² bytes.
    fn volume(side: u32) -> Arc<Volume> {
        let slice = |z: f64| SliceGeometry {
            position: [0.0, 0.0, z],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: (1.0, 1.0),
            rows: side,
            columns: side,
        };
        let (g, _) = Geometry::new(&[slice(0.0), slice(1.0)]).unwrap();
        Arc::new(Volume::new(g))
    }

    #[test]
    fn volumes_no_view_holds_are_evicted_oldest_first_and_never_past_the_budget() {
        let v = Volumes {
            budget: 600,
            held: Mutex::new(Vec::new()),
            partial: Mutex::new(Vec::new()),
            building: tokio::sync::Mutex::new(()),
        };
        let series = |v: &Volumes| v.held().iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        assert_eq!(volume(8).geometry.bytes(), 256);
        for name in ["a", "b"] {
            v.make_room(256).unwrap();
            v.held().push((name.into(), volume(8)));
        }
        // a view shows a: it is now the most recently used, and held
        let shown_a = v.get("a").unwrap();
        assert_eq!(series(&v), ["b", "a"]);
        v.make_room(256).unwrap();
        assert_eq!(series(&v), ["a"], "b, shown by no view, made room");
        v.held().push(("c".into(), volume(8)));
        let shown_c = v.get("c").unwrap();
        let e = v.make_room(256).unwrap_err();
        assert!(e.contains("being viewed"), "{e}");
        assert_eq!(v.bytes(), 512);
        drop(shown_a);
        v.make_room(256).unwrap();
        assert_eq!(series(&v), ["c"]);
        let e = v.make_room(1000).unwrap_err();
        assert!(e.contains("render.volume_bytes"), "{e}");
        assert!(v.bytes() <= 600);
        drop(shown_c);
    }

    #[test]
    fn a_series_built_again_lets_its_earlier_volumes_go_unless_shown() {
        let v = Volumes {
            budget: 1 << 20,
            held: Mutex::new(Vec::new()),
            partial: Mutex::new(Vec::new()),
            building: tokio::sync::Mutex::new(()),
        };
        let keys = |v: &Volumes| v.held().iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        v.finish("1.2/aa", Some(volume(8)));
        v.finish("1.3/aa", Some(volume(8)));
        let shown = v.get("1.2/aa").unwrap();
        v.finish("1.2/bb", Some(volume(8)));
        assert_eq!(
            keys(&v),
            ["1.3/aa", "1.2/aa", "1.2/bb"],
            "a view shows 1.2/aa"
        );
        drop(shown);
        v.finish("1.2/cc", Some(volume(8)));
        assert_eq!(keys(&v), ["1.3/aa", "1.2/cc"]);
    }
}
