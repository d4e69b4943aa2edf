//! The newest view state of a viewing session, and how a client's change applies to it.

use super::protocol::{frame_size, preset_window, ViewChange, PRESETS};
use crate::volume::{Slab, MAX_SLAB_MM};
use crate::{h264, View, VoiFunction, Window};

/// Which window the viewer asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowChoice {
    /// The instance's own window (else automatic).
    Default,
    Explicit(Window),
}

/// The newest view state of a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewState {
    pub slice: u32,
    pub window: WindowChoice,
    pub zoom: f64,
    pub pan: (f64, f64),
    /// Frame size: the viewport rounded down to even and capped.
    pub frame: Option<(u32, u32)>,
    pub qp: u8,
    /// The slab of an MPR view (None: one voxel thick).
    pub slab: Option<Slab>,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            slice: 0,
            window: WindowChoice::Default,
            zoom: 1.0,
            pan: (0.0, 0.0),
            frame: None,
            qp: h264::DEFAULT_QP,
            slab: None,
        }
    }
}

impl ViewState {
    /// Applies a change; a bad value is refused whole, leaving the state as it was.
    pub fn apply(&self, c: &ViewChange, slices: u32) -> Result<ViewState, String> {
        let mut s = *self;
        if let Some(i) = c.slice {
            if i >= slices {
                return Err(format!(
                    "slice {i} does not exist (the series has {slices})"
                ));
            }
            s.slice = i;
        }
        match (&c.window, &c.preset) {
            (Some(_), Some(_)) => return Err("give a window or a preset, not both".into()),
            (Some(w), None) => {
                if !(w.width >= 1.0 && w.width.is_finite() && w.center.is_finite()) {
                    return Err(format!("window width must be at least 1 (got {})", w.width));
                }
                s.window = WindowChoice::Explicit(Window {
                    center: w.center,
                    width: w.width,
                    function: VoiFunction::Linear,
                });
            }
            (None, Some(p)) if p == "default" => s.window = WindowChoice::Default,
            (None, Some(p)) => {
                let w = preset_window(p).ok_or_else(|| {
                    format!(
                        "unknown preset {p:?}: one of default, {}",
                        PRESETS.join(", ")
                    )
                })?;
                s.window = WindowChoice::Explicit(w);
            }
            (None, None) => {}
        }
        if let Some(z) = c.zoom {
            if !(z.is_finite() && (0.01..=100.0).contains(&z)) {
                return Err(format!("zoom must be within 0.01 to 100 (got {z})"));
            }
            s.zoom = z;
        }
        if let Some([x, y]) = c.pan {
            if !(x.is_finite() && y.is_finite()) {
                return Err("pan must be two finite numbers".into());
            }
            s.pan = (x, y);
        }
        if let Some([w, h]) = c.viewport {
            if w == 0 || h == 0 {
                return Err("the viewport must be at least 1×1".into());
            }
            s.frame = Some(frame_size(w, h));
        }
        if let Some(q) = c.qp {
            if q > 51 {
                return Err(format!("qp must be within 0 to 51 (got {q})"));
            }
            s.qp = q;
        }
        if let Some(slab) = c.slab {
            let t = slab.thickness;
            if !(t.is_finite() && (0.0..=MAX_SLAB_MM).contains(&t)) {
                return Err(format!(
                    "slab thickness must be within 0 to {MAX_SLAB_MM} mm (got {t})"
                ));
            }
            s.slab = (t > 0.0).then_some(Slab {
                thickness_mm: t,
                mode: slab.mode,
            });
        }
        Ok(s)
    }

    pub fn view(&self) -> View {
        View {
            window: match self.window {
                WindowChoice::Default => None,
                WindowChoice::Explicit(w) => Some(w),
            },
            viewport: self.frame,
            zoom: self.zoom,
            pan: self.pan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::protocol::ClientMessage;

    #[test]
    fn view_changes_are_checked_and_presets_map_to_windows() {
        let s = ViewState::default();
        let parse = |j: &str| match serde_json::from_str::<ClientMessage>(j).unwrap() {
            ClientMessage::View(c) => c,
            m => panic!("{m:?}"),
        };
        let c = parse(r#"{"type":"view","seq":3,"slice":2,"preset":"lung","viewport":[1023,769]}"#);
        let n = s.apply(&c, 5).unwrap();
        assert_eq!(n.slice, 2);
        assert_eq!(n.frame, Some((1022, 768)));
        assert_eq!(n.view().window.unwrap().center, -600.0);
        for bad in [
            r#"{"type":"view","seq":1,"slice":5}"#,
            r#"{"type":"view","seq":1,"preset":"spleen"}"#,
            r#"{"type":"view","seq":1,"window":{"center":1,"width":0}}"#,
            r#"{"type":"view","seq":1,"zoom":0}"#,
            r#"{"type":"view","seq":1,"qp":60}"#,
            r#"{"type":"view","seq":1,"slab":{"thickness":-1,"mode":"mip"}}"#,
            r#"{"type":"view","seq":1,"slab":{"thickness":900,"mode":"mip"}}"#,
        ] {
            assert!(s.apply(&parse(bad), 5).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"view","seq":1,"x":2}"#).is_err());
        let slab = s
            .apply(
                &parse(r#"{"type":"view","seq":4,"slab":{"thickness":10,"mode":"minip"}}"#),
                5,
            )
            .unwrap();
        assert_eq!(
            slab.slab,
            Some(Slab {
                thickness_mm: 10.0,
                mode: crate::volume::SlabMode::Minip
            })
        );
        let thin = slab
            .apply(
                &parse(r#"{"type":"view","seq":5,"slab":{"thickness":0,"mode":"mip"}}"#),
                5,
            )
            .unwrap();
        assert_eq!(thin.slab, None, "zero thickness is one voxel");
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"view","seq":1,"slab":{"thickness":3,"mode":"max"}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shell"}"#).is_err());
        let pipeline: Vec<&str> = crate::pipeline::presets("CT").iter().map(|p| p.0).collect();
        assert_eq!(
            PRESETS.to_vec(),
            pipeline,
            "the stream offers the pipeline's presets"
        );
        assert_eq!(frame_size(5000, 3000), (3840, 2160));
        assert_eq!(frame_size(3000, 5000), (2160, 3840));
        assert_eq!(frame_size(1, 1), (16, 16));
    }
}
