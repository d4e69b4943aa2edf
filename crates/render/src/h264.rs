//! H.264 encoding of rendered images for the stream ([`super::stream`]), with openh264.
//!
//! One encoder per viewer and frame size. The settings are those of a viewer rather than of a
//! video call: rate control off and one constant QP, so every frame of a scroll has the same
//! quality whatever its content; no frame is ever skipped (a skipped frame would leave the
//! screen showing a slice the user has left); no periodic keyframes (the client asks for one
//! when it needs it); full-range VUI, so grey 0 and 255 are black and white rather than the
//! 16–235 of television. A grey image goes in the luma plane with both chroma planes at 128.
//!
//! This module knows nothing of DICOM or sockets: pixels in, Annex B bytes out.

use openh264::encoder::{
    Complexity, Encoder, EncoderConfig, IntraFramePeriod, RateControlMode, SpsPpsStrategy,
    UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

/// The largest frame openh264 encodes (level 5.2): 3840×2160, either way round.
pub const MAX_LONG_SIDE: u32 = 3840;
pub const MAX_SHORT_SIDE: u32 = 2160;
/// The smallest frame we encode: one macroblock.
pub const MIN_SIDE: u32 = 16;
/// QP while interacting: measured on CT (benches/RESULTS.md) to keep every frame above 42 dB
/// PSNR against the exact render.
pub const DEFAULT_QP: u8 = 20;

#[derive(Debug, thiserror::Error)]
pub enum H264Error {
    #[error("frame size {0}×{1} is not even or not within 16×16 to 3840×2160")]
    Size(u32, u32),
    #[error("QP {0} is not within 0 to 51")]
    Qp(u8),
    #[error("{got} bytes of pixels for a {width}×{height}×{channels} image")]
    Pixels {
        got: usize,
        width: u32,
        height: u32,
        channels: u8,
    },
    #[error("openh264: {0}")]
    Codec(String),
}

impl From<openh264::Error> for H264Error {
    fn from(e: openh264::Error) -> Self {
        H264Error::Codec(e.to_string())
    }
}

/// One encoded frame: Annex B NAL units (SPS and PPS come with every keyframe).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub annex_b: Vec<u8>,
    pub keyframe: bool,
}

/// An I420 picture we own and refill in place: no allocation per frame.
struct Picture {
    width: usize,
    height: usize,
    /// Y plane, then U, then V.
    planes: Vec<u8>,
}

impl Picture {
    fn new(width: usize, height: usize) -> Picture {
        let luma = width * height;
        let mut planes = vec![128u8; luma + luma / 2];
        planes[..luma].fill(0);
        Picture {
            width,
            height,
            planes,
        }
    }

    fn luma_len(&self) -> usize {
        self.width * self.height
    }
}

impl YUVSource for Picture {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.planes[..self.luma_len()]
    }

    fn u(&self) -> &[u8] {
        let l = self.luma_len();
        &self.planes[l..l + l / 4]
    }

    fn v(&self) -> &[u8] {
        let l = self.luma_len();
        &self.planes[l + l / 4..]
    }
}

/// A constant-QP H.264 encoder for frames of one size.
pub struct H264Encoder {
    encoder: Encoder,
    picture: Picture,
    qp: u8,
    /// The chroma planes hold colour from an RGB frame and must go back to 128 for grey.
    chroma_dirty: bool,
}

/// Whether a frame size is one we encode.
pub fn valid_size(width: u32, height: u32) -> bool {
    let (long, short) = (width.max(height), width.min(height));
    width.is_multiple_of(2)
        && height.is_multiple_of(2)
        && short >= MIN_SIDE
        && long <= MAX_LONG_SIDE
        && short <= MAX_SHORT_SIDE
}

impl H264Encoder {
    pub fn new(width: u32, height: u32, qp: u8) -> Result<H264Encoder, H264Error> {
        if !valid_size(width, height) {
            return Err(H264Error::Size(width, height));
        }
        if qp > 51 {
            return Err(H264Error::Qp(qp));
        }
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Off)
            .skip_frames(false)
            // no quantiser changes of its own: the QP is the one we set, everywhere
            .adaptive_quantization(false)
            .background_detection(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .complexity(Complexity::Low)
            // one slice per frame, so more threads would not help; the other core renders
            .num_threads(1)
            .vui(VuiConfig::bt709_full());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        let mut enc = H264Encoder {
            encoder,
            picture: Picture::new(width as usize, height as usize),
            qp,
            chroma_dirty: false,
        };
        // openh264 initialises on the first frame with its default QP, and the crate sets up
        // every parameter but that one: encode one black frame to initialise, then set the QP.
        // That frame is never sent; the first frame sent is a keyframe.
        enc.encoder.encode(&enc.picture)?;
        enc.apply_qp()?;
        Ok(enc)
    }

    pub fn width(&self) -> u32 {
        self.picture.width as u32
    }

    pub fn height(&self) -> u32 {
        self.picture.height as u32
    }

    pub fn qp(&self) -> u8 {
        self.qp
    }

    /// Changes the QP from the next frame on, which will be a keyframe.
    pub fn set_qp(&mut self, qp: u8) -> Result<(), H264Error> {
        if qp > 51 {
            return Err(H264Error::Qp(qp));
        }
        if qp != self.qp {
            self.qp = qp;
            self.apply_qp()?;
        }
        Ok(())
    }

    fn apply_qp(&mut self) -> Result<(), H264Error> {
        use openh264_sys2::{SEncParamExt, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT};
        let mut params = SEncParamExt::default();
        // SAFETY: the encoder is initialised (a frame was encoded); the option reads and writes
        // exactly one SEncParamExt, which `params` is.
        unsafe {
            let api = self.encoder.raw_api();
            let rc = api.get_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                std::ptr::from_mut(&mut params).cast(),
            );
            if rc != 0 {
                return Err(H264Error::Codec(format!("reading parameters: code {rc}")));
            }
            params.sSpatialLayers[0].iDLayerQp = i32::from(self.qp);
            params.iMinQp = i32::from(self.qp);
            params.iMaxQp = i32::from(self.qp);
            let rc = api.set_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                std::ptr::from_mut(&mut params).cast(),
            );
            if rc != 0 {
                return Err(H264Error::Codec(format!(
                    "setting QP {}: code {rc}",
                    self.qp
                )));
            }
        }
        self.encoder.force_intra_frame();
        Ok(())
    }

    /// The next frame will be a keyframe (IDR with SPS and PPS).
    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes a grey image of exactly the encoder's size (one byte a pixel, row by row).
    pub fn encode_grey(&mut self, luma: &[u8]) -> Result<EncodedFrame, H264Error> {
        self.check(luma.len(), 1)?;
        let l = self.picture.luma_len();
        self.picture.planes[..l].copy_from_slice(luma);
        if self.chroma_dirty {
            self.picture.planes[l..].fill(128);
            self.chroma_dirty = false;
        }
        self.encode()
    }

    /// Encodes an RGB image (interleaved) of exactly the encoder's size: BT.709 full range,
    /// chroma averaged over each 2×2 block.
    pub fn encode_rgb(&mut self, rgb: &[u8]) -> Result<EncodedFrame, H264Error> {
        self.check(rgb.len(), 3)?;
        let (w, h) = (self.picture.width, self.picture.height);
        let l = w * h;
        let (luma, chroma) = self.picture.planes.split_at_mut(l);
        let (u, v) = chroma.split_at_mut(l / 4);
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let (r, g, b) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
            luma[i] = (0.2126 * r + 0.7152 * g + 0.0722 * b).round() as u8;
        }
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                let (mut sb, mut sr) = (0.0f32, 0.0f32);
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = (2 * cy + dy) * w + 2 * cx + dx;
                    let px = &rgb[3 * i..3 * i + 3];
                    let y = f32::from(luma[i]);
                    sb += (f32::from(px[2]) - y) / 1.8556;
                    sr += (f32::from(px[0]) - y) / 1.5748;
                }
                let j = cy * (w / 2) + cx;
                u[j] = (sb / 4.0 + 128.0).round().clamp(0.0, 255.0) as u8;
                v[j] = (sr / 4.0 + 128.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        self.chroma_dirty = true;
        self.encode()
    }

    fn check(&self, len: usize, channels: u8) -> Result<(), H264Error> {
        if len != self.picture.luma_len() * usize::from(channels) {
            return Err(H264Error::Pixels {
                got: len,
                width: self.width(),
                height: self.height(),
                channels,
            });
        }
        Ok(())
    }

    fn encode(&mut self) -> Result<EncodedFrame, H264Error> {
        let bits = self.encoder.encode(&self.picture)?;
        let keyframe = matches!(
            bits.frame_type(),
            openh264::encoder::FrameType::IDR | openh264::encoder::FrameType::I
        );
        let mut annex_b = Vec::new();
        bits.write_vec(&mut annex_b);
        if annex_b.is_empty() {
            // with frame skipping off this does not happen; a frame must never vanish silently
            return Err(H264Error::Codec("the encoder produced no frame".into()));
        }
        Ok(EncodedFrame { annex_b, keyframe })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::decoder::Decoder;

    fn decode_luma(dec: &mut Decoder, frame: &[u8], w: usize, h: usize) -> Vec<u8> {
        let yuv = dec
            .decode(frame)
            .expect("decodes")
            .expect("a picture per frame");
        let (stride, _, _) = yuv.strides();
        (0..h)
            .flat_map(|y| yuv.y()[y * stride..y * stride + w].to_vec())
            .collect()
    }

    fn ramp(w: usize, h: usize) -> Vec<u8> {
        (0..h)
            .flat_map(|_| (0..w).map(move |x| (x * 255 / (w - 1)) as u8))
            .collect()
    }

    #[test]
    fn first_frame_is_a_keyframe_and_decodes_close_to_the_input() {
        let (w, h) = (256, 64);
        let mut enc = H264Encoder::new(w as u32, h as u32, 0).unwrap();
        let mut dec = Decoder::new().unwrap();
        let input = ramp(w, h);
        let f = enc.encode_grey(&input).unwrap();
        assert!(f.keyframe);
        assert!(f.annex_b.starts_with(&[0, 0, 0, 1]), "Annex B start code");
        let out = decode_luma(&mut dec, &f.annex_b, w, h);
        let worst = input
            .iter()
            .zip(&out)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "a ramp at QP 0 comes back within ±1, worst {worst}"
        );
        // the next frame is predicted, and a keyframe comes when asked for
        let f2 = enc.encode_grey(&input).unwrap();
        assert!(!f2.keyframe);
        enc.force_keyframe();
        assert!(enc.encode_grey(&input).unwrap().keyframe);
    }

    #[test]
    fn higher_qp_means_fewer_bytes() {
        let (w, h) = (128, 128);
        let noisy: Vec<u8> = (0..w * h)
            .map(|i| ((i * 7919) % 251) as u8 / 2 + 60)
            .collect();
        let mut enc = H264Encoder::new(w, h, 10).unwrap();
        let fine = enc.encode_grey(&noisy).unwrap().annex_b.len();
        enc.set_qp(40).unwrap();
        let coarse = enc.encode_grey(&noisy).unwrap();
        assert!(coarse.keyframe, "a QP change starts with a keyframe");
        assert!(
            coarse.annex_b.len() * 3 < fine,
            "QP 40: {} bytes, QP 10: {fine}",
            coarse.annex_b.len()
        );
    }

    #[test]
    fn sizes_and_qp_are_checked() {
        assert!(matches!(
            H264Encoder::new(101, 100, 20),
            Err(H264Error::Size(101, 100))
        ));
        assert!(H264Encoder::new(3842, 2160, 20).is_err());
        assert!(valid_size(3840, 2160) && valid_size(2160, 3840));
        assert!(matches!(
            H264Encoder::new(64, 64, 52),
            Err(H264Error::Qp(52))
        ));
        let mut enc = H264Encoder::new(64, 64, 20).unwrap();
        assert!(matches!(
            enc.encode_grey(&[0; 10]),
            Err(H264Error::Pixels { got: 10, .. })
        ));
    }
}
