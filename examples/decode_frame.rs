//! Times `strata_render::decode_frame` on DICOM files: for each file, frame 0 is decoded once
//! to warm up, then `--runs` more times; prints the median and the 90th percentile per frame.
//! Used by `benches/decode_frame.sh`. With `--isolated`, JPEG-LS and JPEG 2000 frames are
//! decoded as the server decodes them, in a worker process (this program, re-executed), so the
//! two runs give what isolation costs a frame.
//!
//! ```text
//! cargo run --release --example decode_frame -- [--runs N] [--isolated] FILE...
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use strata_render::{decode_frame_within, CodecWorkers, DecodeLimits, Pixels};

#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Timed decodes per file.
    #[arg(long, default_value_t = 500)]
    runs: usize,
    /// Decode JPEG-LS and JPEG 2000 in a worker process, as the server does.
    #[arg(long)]
    isolated: bool,
    /// DICOM Part-10 files.
    files: Vec<PathBuf>,
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some(strata_render::decode::worker::SUBCOMMAND) {
        let memory = argv.nth(1).context("--memory-bytes N")?.parse()?;
        return Ok(strata_render::decode::worker::serve(memory)?);
    }
    let args = Args::parse();
    let mut limits = DecodeLimits::default();
    if args.isolated {
        limits.codec_workers = Some(std::sync::Arc::new(CodecWorkers::new(
            std::env::current_exe()?,
            1 << 30,
            std::time::Duration::from_secs(30),
        )));
    }
    let decode_frame = |obj: &dicom_object::DefaultDicomObject, frame: u32| {
        decode_frame_within(obj, frame, &limits)
    };
    for path in &args.files {
        let obj = dicom_object::open_file(path).with_context(|| format!("{}", path.display()))?;
        let first = decode_frame(&obj, 0).with_context(|| format!("{}", path.display()))?;
        let kind = match &first.pixels {
            Pixels::Grey { bits_allocated, .. } => format!("grey {bits_allocated}-bit"),
            Pixels::Rgb(_) => "RGB".to_string(),
        };
        let mut micros = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let start = Instant::now();
            let frame = decode_frame(&obj, 0)?;
            micros.push(start.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(frame);
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
        println!(
            "{}{}: {}x{} {kind}, {} runs: median {:.0} µs, p90 {:.0} µs",
            path.file_name().unwrap_or_default().to_string_lossy(),
            if args.isolated { " (isolated)" } else { "" },
            first.columns,
            first.rows,
            micros.len(),
            at(0.5),
            at(0.9)
        );
    }
    Ok(())
}
