//! Transcoding: a stored instance converted to another transfer syntax for a receiver that
//! cannot take the stored one (pixel data decoded and encoded by dicom-pixeldata's codecs).

/// Converts a Part-10 instance to another transfer syntax.
pub fn transcode(part10: &[u8], target: &str) -> Result<Vec<u8>, String> {
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_pixeldata::Transcode;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(target)
        .ok_or(format!("unknown transfer syntax {target}"))?;
    let mut obj = crate::part10::open(part10)?;
    obj.transcode(ts).map_err(|e| format!("to {target}: {e}"))?;
    let mut out = Vec::with_capacity(part10.len());
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
