//! 12-bit lossy JPEG (ISO 10918-1 extended sequential DCT, Huffman coded: DICOM's "JPEG
//! Extended (Process 2 & 4)", used for 12-bit CT and MR) for single-component frames.
//!
//! Written here because no maintained pure-Rust decoder handles 12-bit DCT (`jpeg-decoder` and
//! `zune-jpeg` stop at 8 bits) and the C route (libjpeg-turbo 3 through `turbojpeg-sys`, built
//! with cmake and nasm) brings a native build and unsafe bindings for one transfer syntax. The
//! scope is deliberately narrow: one component, sequential, Huffman; progressive and
//! arithmetic-coded 12-bit frames (retired in DICOM) are refused with a clear error.

use crate::RenderError;

/// Decodes a single-component 12-bit sequential DCT frame into 16-bit little-endian samples.
/// The frame header this decoder itself reads is checked against `image` before the output is
/// allocated.
pub(super) fn decode(
    stream: &[u8],
    image: &super::ImagePixel,
) -> Result<(Vec<u8>, u16, u16), RenderError> {
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut frame: Option<Frame> = None;

    let mut i = 2; // after SOI
    loop {
        while stream.get(i) == Some(&0xFF) && stream.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (stream.get(i), stream.get(i + 1)) else {
            return Err(bad("the stream ends before its scan"));
        };
        i += 2;
        let len = stream
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .filter(|&l| l >= 2)
            .ok_or_else(|| bad("a marker segment is cut short"))?;
        let payload = stream
            .get(i + 2..i + len)
            .ok_or_else(|| bad("a marker segment is cut short"))?;
        i += len;
        match marker {
            0xDB => read_quant(payload, &mut quant)?,
            0xC4 => read_huffman(payload, &mut dc_tables, &mut ac_tables)?,
            0xDD => {
                restart_interval = payload
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    .ok_or_else(|| bad("DRI is cut short"))?
            }
            0xC0 | 0xC1 => frame = Some(Frame::read(payload)?),
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(RenderError::Unsupported(format!(
                    "12-bit JPEG with frame type SOF{} (only sequential Huffman DCT)",
                    marker - 0xC0
                )))
            }
            0xDA => {
                let frame = frame.ok_or_else(|| bad("a scan comes before the frame header"))?;
                super::check_codestream_size(
                    "12-bit JPEG",
                    frame.width.into(),
                    frame.height.into(),
                    image,
                )?;
                let scan = Scan::read(payload, &frame)?;
                let q = quant[frame.quant_table]
                    .ok_or_else(|| bad("the quantisation table is missing"))?;
                let dc = dc_tables[scan.dc_table]
                    .as_ref()
                    .ok_or_else(|| bad("the DC Huffman table is missing"))?;
                let ac = ac_tables[scan.ac_table]
                    .as_ref()
                    .ok_or_else(|| bad("the AC Huffman table is missing"))?;
                let samples = decode_scan(&stream[i..], &frame, &q, dc, ac, restart_interval)?;
                return Ok((samples, frame.width, frame.height));
            }
            _ => {}
        }
    }
}

fn bad(why: &str) -> RenderError {
    RenderError::Decode(format!("12-bit JPEG: {why}"))
}

/// The frame header (B.2.2) of a one-component frame.
#[derive(Clone, Copy)]
struct Frame {
    width: u16,
    height: u16,
    component_id: u8,
    quant_table: usize,
}

impl Frame {
    fn read(p: &[u8]) -> Result<Frame, RenderError> {
        if p.len() < 9 {
            return Err(bad("the frame header is cut short"));
        }
        let precision = p[0];
        let height = u16::from_be_bytes([p[1], p[2]]);
        let width = u16::from_be_bytes([p[3], p[4]]);
        if precision != 12 {
            return Err(bad("the frame is not 12-bit"));
        }
        if p[5] != 1 {
            return Err(RenderError::Unsupported(format!(
                "12-bit JPEG with {} components",
                p[5]
            )));
        }
        if width == 0 || height == 0 {
            return Err(bad("the frame has no width or height"));
        }
        Ok(Frame {
            width,
            height,
            component_id: p[6],
            quant_table: (p[8] & 3) as usize,
        })
    }
}

struct Scan {
    dc_table: usize,
    ac_table: usize,
}

impl Scan {
    fn read(p: &[u8], frame: &Frame) -> Result<Scan, RenderError> {
        if p.len() < 6 || p[0] != 1 || p[1] != frame.component_id {
            return Err(bad(
                "the scan header does not name the frame's one component",
            ));
        }
        let (ss, se, a) = (p[3], p[4], p[5]);
        if ss != 0 || se != 63 || a != 0 {
            return Err(RenderError::Unsupported(
                "12-bit JPEG with a progressive scan".into(),
            ));
        }
        Ok(Scan {
            dc_table: (p[2] >> 4 & 3) as usize,
            ac_table: (p[2] & 3) as usize,
        })
    }
}

/// B.2.4.1: tables of 8-bit or 16-bit entries, in zigzag order.
fn read_quant(mut p: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), RenderError> {
    while !p.is_empty() {
        let (wide, id) = (p[0] >> 4 == 1, (p[0] & 3) as usize);
        let size = if wide { 128 } else { 64 };
        let body = p
            .get(1..1 + size)
            .ok_or_else(|| bad("a quantisation table is cut short"))?;
        let mut table = [0u16; 64];
        for (k, entry) in table.iter_mut().enumerate() {
            *entry = if wide {
                u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
            } else {
                body[k] as u16
            };
        }
        quant[id] = Some(table);
        p = &p[1 + size..];
    }
    Ok(())
}

/// A Huffman table in the form of F.2.2.3's decoding procedure: for each code length, the
/// largest code, and where its values start.
#[derive(Clone)]
struct Huffman {
    max_code: [i32; 17],
    val_offset: [i32; 17],
    values: Vec<u8>,
}

fn read_huffman(
    mut p: &[u8],
    dc: &mut [Option<Huffman>; 4],
    ac: &mut [Option<Huffman>; 4],
) -> Result<(), RenderError> {
    while !p.is_empty() {
        if p.len() < 17 {
            return Err(bad("a Huffman table is cut short"));
        }
        let (class, id) = (p[0] >> 4, (p[0] & 3) as usize);
        let counts = &p[1..17];
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = p
            .get(17..17 + total)
            .ok_or_else(|| bad("a Huffman table is cut short"))?
            .to_vec();
        let mut max_code = [-1i32; 17];
        let mut val_offset = [0i32; 17];
        let mut code = 0i32;
        let mut k = 0i32;
        for length in 1..=16 {
            let n = counts[length - 1] as i32;
            val_offset[length] = k - code;
            code += n;
            k += n;
            max_code[length] = if n > 0 { code - 1 } else { -1 };
            code <<= 1;
        }
        let table = Huffman {
            max_code,
            val_offset,
            values,
        };
        match class {
            0 => dc[id] = Some(table),
            1 => ac[id] = Some(table),
            _ => return Err(bad("a Huffman table of unknown class")),
        }
        p = &p[17 + total..];
    }
    Ok(())
}

/// Entropy-coded data with byte stuffing (F.1.2.3) undone; stops at any marker.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    count: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            pos: 0,
            acc: 0,
            count: 0,
        }
    }

    fn bit(&mut self) -> Result<u32, RenderError> {
        if self.count == 0 {
            let byte = *self
                .data
                .get(self.pos)
                .ok_or_else(|| bad("the entropy-coded data ends early"))?;
            if byte == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => self.pos += 1,
                    _ => return Err(bad("a marker interrupts the entropy-coded data")),
                }
            }
            self.pos += 1;
            self.acc = byte as u32;
            self.count = 8;
        }
        self.count -= 1;
        Ok((self.acc >> self.count) & 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, RenderError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8, RenderError> {
        let mut code = 0i32;
        for length in 1..=16 {
            code = (code << 1) | self.bit()? as i32;
            if code <= table.max_code[length] {
                let index = (code + table.val_offset[length]) as usize;
                return table
                    .values
                    .get(index)
                    .copied()
                    .ok_or_else(|| bad("a Huffman code points past its table"));
            }
        }
        Err(bad("an invalid Huffman code"))
    }

    /// F.2.2.1 RECEIVE and EXTEND.
    fn receive_extend(&mut self, size: u8) -> Result<i32, RenderError> {
        if size == 0 {
            return Ok(0);
        }
        if size > 16 {
            return Err(bad("a coefficient size above 16 bits"));
        }
        let v = self.bits(size as u32)? as i32;
        Ok(if v < 1 << (size - 1) {
            v - (1 << size) + 1
        } else {
            v
        })
    }

    /// Skips to the byte boundary and over the RSTn marker a restart interval ends with.
    fn restart(&mut self) -> Result<(), RenderError> {
        self.count = 0;
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                Ok(())
            }
            _ => Err(bad("a restart marker is missing")),
        }
    }
}

/// Zigzag position k → natural (row-major) index in the 8×8 block.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

fn decode_scan(
    data: &[u8],
    frame: &Frame,
    quant: &[u16; 64],
    dc: &Huffman,
    ac: &Huffman,
    restart_interval: usize,
) -> Result<Vec<u8>, RenderError> {
    let (width, height) = (frame.width as usize, frame.height as usize);
    let (blocks_x, blocks_y) = (width.div_ceil(8), height.div_ceil(8));
    let idct = Idct::new();
    let mut bits = Bits::new(data);
    let mut out = vec![0u8; width * height * 2];
    let mut predictor = 0i32;
    let mut coefficients = [0f32; 64];
    let mut pixels = [0f32; 64];
    for block in 0..blocks_x * blocks_y {
        if restart_interval > 0 && block > 0 && block.is_multiple_of(restart_interval) {
            bits.restart()?;
            predictor = 0;
        }
        coefficients.fill(0.0);
        let size = bits.decode(dc)?;
        predictor += bits.receive_extend(size)?;
        coefficients[0] = predictor as f32 * quant[0] as f32;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (run, size) = ((rs >> 4) as usize, rs & 15);
            if size == 0 {
                if run != 15 {
                    break; // end of block
                }
                k += 16;
                continue;
            }
            k += run;
            if k > 63 {
                return Err(bad("a coefficient run passes the end of the block"));
            }
            coefficients[ZIGZAG[k]] = bits.receive_extend(size)? as f32 * quant[k] as f32;
            k += 1;
        }
        idct.inverse(&coefficients, &mut pixels);
        let (bx, by) = (block % blocks_x * 8, block / blocks_x * 8);
        for y in 0..8.min(height - by) {
            for x in 0..8.min(width - bx) {
                // Level shift by 2^(P-1) and clamp to the 12-bit range (A.3.1, F.2.1.5).
                let v = (pixels[y * 8 + x] + 2048.0).round().clamp(0.0, 4095.0) as u16;
                let at = ((by + y) * width + bx + x) * 2;
                out[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// The 8×8 inverse DCT of A.3.3, computed separably in floating point (exact to rounding,
/// where libjpeg's integer IDCTs approximate).
struct Idct {
    /// basis[x][u] = C(u)/2 · cos((2x+1)uπ/16)
    basis: [[f32; 8]; 8],
}

impl Idct {
    fn new() -> Idct {
        let mut basis = [[0f32; 8]; 8];
        for (x, row) in basis.iter_mut().enumerate() {
            for (u, b) in row.iter_mut().enumerate() {
                let c = if u == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                };
                let angle = (2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0;
                *b = (c / 2.0 * angle.cos()) as f32;
            }
        }
        Idct { basis }
    }

    fn inverse(&self, coefficients: &[f32; 64], out: &mut [f32; 64]) {
        // Rows of coefficients (v fixed) to rows of x, then columns.
        let mut temp = [0f32; 64];
        for v in 0..8 {
            for x in 0..8 {
                let mut sum = 0.0;
                for u in 0..8 {
                    sum += self.basis[x][u] * coefficients[v * 8 + u];
                }
                temp[v * 8 + x] = sum;
            }
        }
        for y in 0..8 {
            for x in 0..8 {
                let mut sum = 0.0;
                for v in 0..8 {
                    sum += self.basis[y][v] * temp[v * 8 + x];
                }
                out[y * 8 + x] = sum;
            }
        }
    }
}
