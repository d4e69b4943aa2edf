//! Pictures of stored instances: the one way anything shows pixels (`/rendered`, thumbnails,
//! WADO-URI pictures, the stream). A frame is read through [`Reads`] (verified, decrypted,
//! repaired), decoded on the render pool and cached there; each view of it is rendered from the
//! cached frame.

use crate::reads::Reads;
use std::sync::Arc;
use strata_index::InstanceRef;
use strata_render::picture::{self, PictureFormat};
use strata_render::stream::{OpenedSeries, SeriesInstance};
use strata_render::{CachedFrame, DecodeLimits, Priority, RenderError, RenderPool, Rendered, View};

#[derive(Clone)]
pub struct Pictures {
    reads: Reads,
    pool: Arc<RenderPool>,
    /// The configured bounds every decode runs within (`render.max_frame_samples`, ...).
    limits: DecodeLimits,
}

impl Pictures {
    pub fn new(reads: Reads, pool: Arc<RenderPool>, limits: DecodeLimits) -> Pictures {
        Pictures {
            reads,
            pool,
            limits,
        }
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
        let stored = self.reads.stored(sop_uid).await?;
        let limits = self.limits.clone();
        // a large instance: the header and this frame's bytes alone, when they can be located
        let located = match stored.size > LOCATE_FRAMES_ABOVE {
            true => self.reads.frame_object(&stored, frame).await.ok(),
            false => None,
        };
        let decoded = match located {
            Some((obj, held)) => {
                self.pool
                    .run(priority, "decode", move || {
                        let decoded = strata_render::decode_one_frame(&obj, frame, &limits);
                        drop(held);
                        decoded
                    })
                    .await
            }
            None => {
                let bytes = self.reads.instance_whole(&stored).await?;
                self.pool
                    .run(priority, "decode", move || {
                        strata_render::decode_part10(&bytes, frame, &limits)
                    })
                    .await
            }
        }
        .map_err(|e| RenderError::Decode(e.to_string()))??;
        let decoded = Arc::new(decoded);
        self.pool.remember(sop_uid, frame, decoded.clone());
        Ok(decoded)
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

/// Instances larger than this are rendered from their header and the frame's own bytes (see
/// [`Reads::frame_object`]) rather than read whole.
const LOCATE_FRAMES_ABOVE: u64 = 32 << 20;

/// A series' instances, as the catalog lists them, ordered into slices (the render crate's
/// geometry, fed from the index's rows).
pub fn open_series(refs: &[InstanceRef]) -> Result<OpenedSeries, String> {
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
