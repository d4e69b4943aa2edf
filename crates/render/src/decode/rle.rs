//! RLE Lossless (PS3.5 Annex G) for one frame: a 64-byte header of segment offsets, then one
//! PackBits segment per byte plane, most significant byte of each sample first.
//!
//! Written here rather than taken from the transfer syntax registry because the registry's
//! decoder refuses 32-bit samples (RT Dose uses them) and unwraps on malformed segments.

use crate::RenderError;

/// Decodes `fragment` into `pixels` × `samples` samples of `bytes` bytes each, interleaved and
/// little-endian. The header is checked whole before anything is allocated, and the output is
/// `pixels` × `samples` × `bytes` (the dataset's size, bounded by `render.max_frame_samples`)
/// whatever the segments would expand to.
pub(super) fn decode(
    fragment: &[u8],
    pixels: usize,
    samples: usize,
    bytes: usize,
) -> Result<Vec<u8>, RenderError> {
    let offsets = header(fragment, samples * bytes)?;
    let expected = samples * bytes;
    let mut out = vec![0u8; pixels * expected];
    let mut plane = Vec::with_capacity(pixels);
    for (segment, &begin) in offsets.iter().enumerate() {
        let end = offsets.get(segment + 1).copied().unwrap_or(fragment.len());
        let data = &fragment[begin..end];
        unpack_bits(data, pixels, &mut plane).map_err(|got| {
            bad(format!(
                "RLE segment {segment} decodes to {got} bytes, the frame needs {pixels}"
            ))
        })?;
        // Segment order: sample 0 MSB … LSB, sample 1 MSB … LSB, …
        let sample = segment / bytes;
        let byte_in_sample = bytes - 1 - segment % bytes;
        let stride = expected;
        let first = sample * bytes + byte_in_sample;
        for (dst, &b) in out[first..].iter_mut().step_by(stride).zip(&plane) {
            *dst = b;
        }
    }
    Ok(out)
}

/// The segment offsets of the RLE header (PS3.5 G.5): 1 to 15 segments, as many as the image
/// has byte planes (`expected`), the first right after the 64-byte header, each after the one
/// before and inside the fragment.
fn header(fragment: &[u8], expected: usize) -> Result<Vec<usize>, RenderError> {
    let header = fragment
        .get(..64)
        .ok_or_else(|| bad("the fragment is shorter than the 64-byte RLE header".into()))?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[i * 4],
            header[i * 4 + 1],
            header[i * 4 + 2],
            header[i * 4 + 3],
        ])
    };
    let segments = word(0) as usize;
    if !(1..=15).contains(&segments) {
        return Err(bad(format!(
            "the RLE header lists {segments} segments (1 to 15 allowed)"
        )));
    }
    if segments != expected {
        return Err(bad(format!(
            "the RLE header lists {segments} segments, the image needs {expected}"
        )));
    }
    let offsets: Vec<usize> = (1..=segments).map(|i| word(i) as usize).collect();
    if offsets[0] != 64 {
        return Err(bad(format!(
            "the first RLE segment starts at byte {}, not right after the 64-byte header",
            offsets[0]
        )));
    }
    for (segment, pair) in offsets.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            return Err(bad(format!(
                "RLE segment {} starts at byte {}, not after segment {segment} at byte {}",
                segment + 1,
                pair[1],
                pair[0]
            )));
        }
    }
    let last = offsets[segments - 1];
    if last >= fragment.len() {
        return Err(bad(format!(
            "RLE segment {} starts at byte {last}, past the fragment's {} bytes",
            segments - 1,
            fragment.len()
        )));
    }
    Ok(offsets)
}

/// PackBits into `out`, stopping once `wanted` bytes are there (encoders may pad a segment).
/// Err carries how many bytes the segment gave when it is too short.
fn unpack_bits(data: &[u8], wanted: usize, out: &mut Vec<u8>) -> Result<(), usize> {
    out.clear();
    let mut i = 0;
    while out.len() < wanted && i < data.len() {
        let n = data[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let Some(run) = data.get(i..i + len) else {
                out.extend_from_slice(&data[i..]);
                break;
            };
            out.extend_from_slice(run);
            i += len;
        } else if n != -128 {
            let Some(&b) = data.get(i) else { break };
            out.resize(out.len() + (1 - n as isize) as usize, b);
            i += 1;
        }
    }
    if out.len() < wanted {
        return Err(out.len());
    }
    out.truncate(wanted);
    Ok(())
}

fn bad(reason: String) -> RenderError {
    RenderError::Decode(reason)
}
