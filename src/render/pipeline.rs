//! The grey pipeline of PS3.3 C.11 and the resampling to the viewport.

use dicom_object::DefaultDicomObject;

use super::{DecodedFrame, Pixels, RenderError, Rendered, View};

/// What the dataset says about presenting one frame: rescale, window, presentation shape.
#[derive(Debug, Clone, Default)]
pub struct Presentation {
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub window: Option<super::Window>,
}

impl Presentation {
    pub fn from_object(obj: &DefaultDicomObject, _frame: u32) -> Presentation {
        use dicom_dictionary_std::tags;
        let num = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_multi_float64().ok())
                .and_then(|v| v.first().copied())
        };
        let window = match (num(tags::WINDOW_CENTER), num(tags::WINDOW_WIDTH)) {
            (Some(center), Some(width)) => Some(super::Window {
                center,
                width,
                function: super::VoiFunction::Linear,
            }),
            _ => None,
        };
        Presentation {
            rescale_slope: num(tags::RESCALE_SLOPE).unwrap_or(1.0),
            rescale_intercept: num(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            window,
        }
    }
}

/// Render a decoded frame as the view asks.
pub fn render(
    frame: &DecodedFrame,
    presentation: &Presentation,
    view: &View,
) -> Result<Rendered, RenderError> {
    let (w, h) = (frame.columns, frame.rows);
    let pixels = match &frame.pixels {
        Pixels::Grey { values, .. } => {
            let window = view
                .window
                .or(presentation.window)
                .unwrap_or(super::Window {
                    center: 40.0,
                    width: 400.0,
                    function: super::VoiFunction::Linear,
                });
            let lo = window.center - window.width / 2.0;
            values
                .iter()
                .map(|&v| {
                    let m = v as f64 * presentation.rescale_slope + presentation.rescale_intercept;
                    (((m - lo) / window.width) * 255.0)
                        .round()
                        .clamp(0.0, 255.0) as u8
                })
                .collect()
        }
        Pixels::Rgb(_) => return Err(RenderError::Unsupported("colour".into())),
    };
    Ok(Rendered {
        width: w,
        height: h,
        channels: 1,
        pixels,
    })
}
