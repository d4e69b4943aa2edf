//! One frame of a stored instance to stored values or RGB, with dicom-pixeldata's codecs.

use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder, VoiLutOption};

use super::{DecodedFrame, Pixels, RenderError};

/// Decode frame `frame` (0-based) of `obj`.
pub fn decode_frame(obj: &DefaultDicomObject, frame: u32) -> Result<DecodedFrame, RenderError> {
    if obj
        .element_opt(dicom_dictionary_std::tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return Err(RenderError::NoPixelData);
    }
    let decoded = obj
        .decode_pixel_data_frame(frame)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let rows = decoded.rows();
    let columns = decoded.columns();
    let pi = decoded.photometric_interpretation().to_string();
    let pixels = if decoded.samples_per_pixel() == 1 && pi.starts_with("MONOCHROME") {
        let options = ConvertOptions::new()
            .with_modality_lut(ModalityLutOption::None)
            .with_voi_lut(VoiLutOption::Identity);
        let values: Vec<i32> = decoded
            .to_vec_frame_with_options(0, &options)
            .map_err(|e| RenderError::Decode(e.to_string()))?;
        Pixels::Grey {
            values,
            bits_stored: decoded.bits_stored(),
            bits_allocated: decoded.bits_allocated(),
            signed: decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed,
            monochrome1: pi == "MONOCHROME1",
        }
    } else {
        let rgb: Vec<u8> = decoded
            .to_vec_frame(0)
            .map_err(|e| RenderError::Decode(e.to_string()))?;
        Pixels::Rgb(rgb)
    };
    Ok(DecodedFrame {
        rows,
        columns,
        pixels,
    })
}
