//! Colour photometric interpretations to 8-bit RGB: RGB itself, YBR_FULL and YBR_FULL_422
//! (PS3.3 C.7.6.3.1.2) and PALETTE COLOR (PS3.3 C.7.6.3.1.5, C.7.9).

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::Interpretation;
use crate::RenderError;

/// Three-sample stored values (interleaved, or planar when `planar`) to interleaved 8-bit RGB.
/// Samples wider than 8 bits are scaled so that the full stored range maps onto 0–255.
pub(super) fn to_rgb8(
    values: &[i32],
    pixels: usize,
    planar: bool,
    interpretation: Interpretation,
    bits_stored: u16,
    signed: bool,
) -> Result<Vec<u8>, RenderError> {
    let bits = bits_stored.min(32) as u32;
    let max = ((1u64 << bits) - 1) as f64;
    let to8 = move |v: f64| -> u8 {
        let v = v.clamp(0.0, max);
        if bits == 8 {
            v.round() as u8
        } else {
            (v * 255.0 / max).round() as u8
        }
    };
    // An unsigned 32-bit sample is carried as its bit pattern.
    let number = move |v: i32| -> f64 {
        if signed {
            v as f64
        } else {
            v as u32 as f64
        }
    };
    let sample = |p: usize, s: usize| -> f64 {
        number(if planar {
            values[s * pixels + p]
        } else {
            values[p * 3 + s]
        })
    };
    let mut out = Vec::with_capacity(pixels * 3);
    match interpretation {
        Interpretation::Rgb => {
            check_len(values, pixels * 3)?;
            if bits == 8 && !planar {
                out.extend(values.iter().map(|&v| v.clamp(0, 255) as u8));
            } else {
                for p in 0..pixels {
                    for s in 0..3 {
                        out.push(to8(sample(p, s)));
                    }
                }
            }
        }
        Interpretation::YbrFull => {
            check_len(values, pixels * 3)?;
            let half = (1u64 << (bits - 1)) as f64;
            for p in 0..pixels {
                let rgb = ybr_full_to_rgb(sample(p, 0), sample(p, 1), sample(p, 2), half);
                out.extend(rgb.map(to8));
            }
        }
        Interpretation::YbrFull422 => {
            // Native 4:2:2 stores Y1 Y2 Cb Cr for each horizontal pair of pixels; each pixel
            // of the pair takes the pair's chroma (the upsampling DICOM implies: no filter).
            if !pixels.is_multiple_of(2) {
                return Err(RenderError::Unsupported(
                    "YBR_FULL_422 with an odd number of pixels".into(),
                ));
            }
            check_len(values, pixels * 2)?;
            let half = (1u64 << (bits - 1)) as f64;
            for pair in values[..pixels * 2].chunks_exact(4) {
                let (cb, cr) = (number(pair[2]), number(pair[3]));
                for &y in &pair[..2] {
                    out.extend(ybr_full_to_rgb(number(y), cb, cr, half).map(to8));
                }
            }
        }
        _ => {
            return Err(RenderError::Unsupported(
                "a colour conversion for this photometric interpretation".into(),
            ))
        }
    }
    Ok(out)
}

fn check_len(values: &[i32], needed: usize) -> Result<(), RenderError> {
    if values.len() < needed {
        return Err(RenderError::Decode(format!(
            "the frame has {} samples, the image needs {needed}",
            values.len()
        )));
    }
    Ok(())
}

/// PS3.3 C.7.6.3.1.2: the inverse of the YBR_FULL equations (ITU-R BT.601 full range), with
/// `half` the chroma offset (128 for 8-bit samples).
fn ybr_full_to_rgb(y: f64, cb: f64, cr: f64, half: f64) -> [f64; 3] {
    let (cb, cr) = (cb - half, cr - half);
    [
        y + 1.402 * cr,
        y - 0.344136 * cb - 0.714136 * cr,
        y + 1.772 * cb,
    ]
}

/// PALETTE COLOR: each stored value indexes the red, green and blue Palette Color Lookup
/// Tables (PS3.3 C.7.6.3.1.5). Values below the first mapped value take the first entry, values
/// past the end the last (C.7.6.3.1.5 says they map to the first and last entries).
///
/// Read and checked from the dataset before the frame is decoded, so a file whose descriptors
/// do not match their data is refused before anything is allocated for its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// The stored value `table[0]` is for.
    first: i64,
    /// RGB for each stored value from `first` on.
    table: Vec<[u8; 3]>,
}

impl Palette {
    pub fn read(obj: &InMemDicomObject) -> Result<Palette, RenderError> {
        let channels = [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                "Red",
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                "Green",
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                "Blue",
            ),
        ];
        let mut luts = Vec::with_capacity(3);
        for (descriptor, data, segmented, name) in channels {
            luts.push(Lut::read(obj, descriptor, data, segmented, name)?);
        }
        // One table of RGB triplets over every index any channel maps, so each pixel costs one
        // lookup (the three channels normally share their first value and length). Each
        // channel has at most 65536 entries from a first value in -32768..=65535, so the
        // table has fewer than 2^18.
        let first = luts
            .iter()
            .map(|l| l.first_mapped as i64)
            .min()
            .unwrap_or(0);
        let end = luts
            .iter()
            .map(|l| l.first_mapped as i64 + l.entries.len() as i64)
            .max()
            .unwrap_or(1);
        let table = (first..end)
            .map(|i| {
                let i = i as i32;
                [luts[0].map(i), luts[1].map(i), luts[2].map(i)]
            })
            .collect();
        Ok(Palette { first, table })
    }

    /// The colour of stored value `v` when the palette maps it (a Supplemental Palette Color
    /// LUT maps only its own range, PS3.3 C.7.6.19: the rest is grey).
    pub fn colour(&self, v: i32) -> Option<[u8; 3]> {
        let i = i64::from(v) - self.first;
        (0..self.table.len() as i64)
            .contains(&i)
            .then(|| self.table[i as usize])
    }

    /// Stored values to interleaved 8-bit RGB.
    pub(super) fn apply(&self, values: &[i32]) -> Vec<u8> {
        let (first, table) = (self.first, &self.table);
        let last = table.len() as i64 - 1;
        let mut out = Vec::with_capacity(values.len() * 3);
        for &v in values {
            out.extend_from_slice(&table[(v as i64 - first).clamp(0, last) as usize]);
        }
        out
    }
}

/// Palette entries reduced to 8 bits.
fn reduce(raw: &[u16], bits: i64) -> Vec<u8> {
    raw.iter()
        .map(|&v| {
            if bits == 16 {
                // The high byte: 16-bit palettes are nearly always 8-bit colours times
                // 256 (0xFF00 is full intensity), which rounding v/257 would dim by one.
                (v >> 8) as u8
            } else {
                v.min(255) as u8
            }
        })
        .collect()
}

/// The most entries a segmented table may expand to (a palette indexes 16-bit values).
const SEGMENTED_MAX: usize = 1 << 16;
/// The most segments one table may be expanded from, indirect repeats counted.
const SEGMENTS_MAX: usize = 1 << 17;

/// Expands segmented palette data (PS3.3 C.7.9.2) into `out`: discrete segments (0, n, n
/// values), linear ones (1, n, y1: n values from the last one to y1, rounded to nearest, ties
/// to even) and indirect ones (2, n, offset as two words, low first: n segments again from
/// that word). `segments` bounds an indirect run; `depth` its nesting; `budget` the segments
/// still allowed in all (indirect ones can repeat a run many times).
fn expand_segments(
    words: &[u16],
    segments: Option<usize>,
    last: Option<u16>,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<u16>,
) -> Result<(), String> {
    if depth > 4 {
        return Err("indirect segments nest too deep".into());
    }
    let (mut at, mut read) = (0usize, 0usize);
    // a trailing pad word is not a segment: every segment is at least three words
    while at + 2 < words.len() && segments.is_none_or(|n| read < n) {
        let (op, n) = (words[at], usize::from(words[at + 1]));
        at += 2;
        *budget = budget.checked_sub(1).ok_or("too many segments")?;
        if out.len() + n > SEGMENTED_MAX {
            return Err(format!("expands past {SEGMENTED_MAX} entries"));
        }
        match op {
            0 => {
                let values = words
                    .get(at..at + n)
                    .ok_or("a discrete segment runs past the data")?;
                out.extend_from_slice(values);
                at += n;
            }
            1 => {
                let y0 = out
                    .last()
                    .copied()
                    .or(last)
                    .ok_or("the first segment is linear")?;
                let y1 = words[at];
                at += 1;
                let (a, b) = (f64::from(y0), f64::from(y1));
                out.extend(
                    (1..=n).map(|i| (a + (b - a) * i as f64 / n as f64).round_ties_even() as u16),
                );
            }
            2 => {
                if out.is_empty() {
                    return Err("the first segment is indirect".into());
                }
                let (lo, hi) = (
                    *words
                        .get(at)
                        .ok_or("an indirect segment runs past the data")?,
                    *words
                        .get(at + 1)
                        .ok_or("an indirect segment runs past the data")?,
                );
                at += 2;
                let offset = usize::from(lo) | usize::from(hi) << 16;
                let from = words
                    .get(offset..)
                    .ok_or("an indirect segment points past the data")?;
                let y = out.last().copied();
                expand_segments(from, Some(n), y, depth + 1, budget, out)?;
            }
            op => return Err(format!("unknown segment type {op}")),
        }
        read += 1;
    }
    Ok(())
}

/// One channel's palette, already reduced to 8 bits.
struct Lut {
    first_mapped: i32,
    entries: Vec<u8>,
}

impl Lut {
    fn read(
        obj: &InMemDicomObject,
        descriptor: Tag,
        data: Tag,
        segmented: Tag,
        name: &str,
    ) -> Result<Lut, RenderError> {
        let desc: Vec<i64> = obj
            .get(descriptor)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or_else(|| {
                RenderError::Decode(format!(
                    "{name} Palette Color Lookup Table Descriptor is missing or not 3 numbers"
                ))
            })?;
        // The descriptor is US or SS: an entry count of 0 (or -32768 read as SS) means 65536,
        // and a first mapped value above 32767 may come back negative from SS.
        if !(-32768..=65535).contains(&desc[0]) || !(-32768..=65535).contains(&desc[1]) {
            return Err(RenderError::Decode(format!(
                "{name} Palette Color Lookup Table Descriptor {desc:?} is out of range (16-bit \
                 entry count and first mapped value)"
            )));
        }
        let count = match desc[0] & 0xffff {
            0 => 65536,
            n => n as usize,
        };
        let first_mapped = desc[1] as i32;
        let bits = desc[2];
        if bits != 8 && bits != 16 {
            return Err(RenderError::Decode(format!(
                "{name} Palette Color Lookup Table has {bits} bits per entry (8 or 16 allowed)"
            )));
        }
        let Some(element) = obj.get(data) else {
            let Some(seg) = obj.get(segmented) else {
                return Err(RenderError::Decode(format!(
                    "{name} Palette Color Lookup Table Data is missing"
                )));
            };
            let words: Vec<u16> = match seg.value() {
                Value::Primitive(PrimitiveValue::U16(w)) => w.to_vec(),
                Value::Primitive(p) if bits == 8 => {
                    p.to_bytes().iter().map(|&b| u16::from(b)).collect()
                }
                Value::Primitive(p) => p
                    .to_bytes()
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                _ => {
                    return Err(RenderError::Decode(format!(
                        "Segmented {name} Palette Color Lookup Table Data is not a list of numbers"
                    )))
                }
            };
            let mut raw = Vec::new();
            expand_segments(&words, None, None, 0, &mut { SEGMENTS_MAX }, &mut raw).map_err(
                |e| {
                    RenderError::Decode(format!(
                        "Segmented {name} Palette Color Lookup Table Data: {e}"
                    ))
                },
            )?;
            if raw.is_empty() {
                return Err(RenderError::Decode(format!(
                    "Segmented {name} Palette Color Lookup Table Data holds no entries"
                )));
            }
            // as many entries as the descriptor says: a short table goes on with its last
            raw.truncate(count);
            let last = raw[raw.len() - 1];
            raw.resize(count, last);
            return Ok(Lut {
                first_mapped,
                entries: reduce(&raw, bits),
            });
        };
        let raw: Vec<u16> = match element.value() {
            Value::Primitive(PrimitiveValue::U16(words)) => {
                if bits == 8 && words.len() == count.div_ceil(2) && words.len() != count {
                    // 8-bit entries packed two to an OW word, first entry in the low byte.
                    words
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .map(u16::from)
                        .collect()
                } else {
                    words.to_vec()
                }
            }
            Value::Primitive(p) => {
                let bytes = p.to_bytes();
                if bits == 8 && (bytes.len() == count || bytes.len() == count + 1) {
                    bytes.iter().map(|&b| u16::from(b)).collect()
                } else {
                    bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect()
                }
            }
            _ => {
                return Err(RenderError::Decode(format!(
                    "{name} Palette Color Lookup Table Data is not a list of numbers"
                )))
            }
        };
        // The data must be what the descriptor says: 8-bit entries packed two to a word may
        // end with one byte of padding (an odd count), nothing else may differ.
        let padded = bits == 8 && count % 2 == 1 && raw.len() == count + 1;
        if raw.len() != count && !padded {
            return Err(RenderError::Decode(format!(
                "{name} Palette Color Lookup Table Data has {} entries, the descriptor says {count}",
                raw.len()
            )));
        }
        Ok(Lut {
            first_mapped,
            entries: reduce(&raw[..count], bits),
        })
    }

    fn map(&self, value: i32) -> u8 {
        let index =
            (value as i64 - self.first_mapped as i64).clamp(0, self.entries.len() as i64 - 1);
        self.entries[index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(words: &[u16]) -> Result<Vec<u16>, String> {
        let mut out = Vec::new();
        expand_segments(words, None, None, 0, &mut { SEGMENTS_MAX }, &mut out)?;
        Ok(out)
    }

    #[test]
    fn segmented_palettes_expand_discrete_linear_and_indirect_segments() {
        // discrete 0, 10; linear to 50 in four steps; then the first two segments again
        let table = [0, 2, 0, 10, 1, 4, 50, 2, 2, 0, 0, 0];
        assert_eq!(
            expand(&table).unwrap(),
            [0, 10, 20, 30, 40, 50, 0, 10, 20, 30, 40, 50]
        );
        // a trailing pad word is not a segment
        assert_eq!(expand(&[0, 1, 7, 0]).unwrap(), [7]);
        // halves round to even, as pydicom's numpy does
        assert_eq!(expand(&[0, 1, 0, 1, 4, 2]).unwrap(), [0, 0, 1, 2, 2]);
        for (bad, why) in [
            (&[1u16, 2, 9][..], "first segment is linear"),
            (&[2, 1, 0, 0][..], "first segment is indirect"),
            (&[0, 9, 1, 2][..], "past the data"),
            (&[0, 1, 5, 2, 1, 99, 0][..], "past the data"),
            (&[0, 1, 5, 7, 1, 0][..], "unknown segment type 7"),
            // an indirect segment that runs itself again and again
            (&[0, 1, 5, 2, 60000, 0, 0][..], "too"),
        ] {
            let e = expand(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
