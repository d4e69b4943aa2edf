//! Times MPR's reformatting (`strata_render::volume`) on a synthetic 512×512×400 CT volume
//! (0.75 mm pixels, 1.25 mm slices, a noisy body-like ellipsoid): a coronal, a sagittal and an
//! oblique plane one voxel thick and as 20 mm MIP slabs, then the plane rendered into a
//! 1024×1024 viewport as the stream renders it. Prints the median and the 90th percentile of
//! each. The server's own figures, browser included, come from `benches/mpr_bench.sh`.
//!
//! ```text
//! cargo run --release --example reformat_speed -- [--runs N]
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use strata_render::pipeline::{ModalityLut, Presentation};
use strata_render::volume::{Geometry, Orientation, Plane, Slab, SlabMode, SliceGeometry, Volume};
use strata_render::{CachedFrame, DecodedFrame, Pixels, View};

#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Timed runs of each case.
    #[arg(long, default_value_t = 21)]
    runs: usize,
    #[arg(long, default_value_t = 400)]
    slices: u32,
}

fn main() {
    let args = Args::parse();
    let (side, pixel, gap) = (512u32, 0.75, 1.25);
    let slices: Vec<SliceGeometry> = (0..args.slices)
        .map(|k| SliceGeometry {
            position: [-192.0, -192.0, f64::from(k) * gap],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: (pixel, pixel),
            rows: side,
            columns: side,
        })
        .collect();
    let (geometry, _) = Geometry::new(&slices).expect("a stack");
    let mut volume = Volume::new(geometry);
    let started = Instant::now();
    let mut seed = 12345u32;
    for k in 0..args.slices {
        let mut values = Vec::with_capacity((side * side) as usize);
        for r in 0..side {
            for c in 0..side {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let (x, y) = (f64::from(c) / 256.0 - 1.0, f64::from(r) / 256.0 - 1.0);
                let z = f64::from(k) / f64::from(args.slices) * 2.0 - 1.0;
                let body = x * x / 0.8 + y * y / 0.5 + z * z < 1.0;
                values.push(if body { 1064 } else { 24 } + (seed >> 26) as i32);
            }
        }
        let frame = CachedFrame {
            frame: DecodedFrame {
                rows: side,
                columns: side,
                pixels: Pixels::Grey {
                    values,
                    bits_stored: 12,
                    bits_allocated: 16,
                    signed: false,
                    monochrome1: false,
                },
            },
            presentation: Presentation {
                modality_lut: ModalityLut::Rescale {
                    slope: 1.0,
                    intercept: -1024.0,
                },
                modality: "CT".into(),
                ..Presentation::default()
            },
        };
        volume.put(k as usize, &frame).expect("a slice");
    }
    println!(
        "volume {side}×{side}×{} ({} MiB) filled in {:.0} ms",
        args.slices,
        volume.geometry.bytes() >> 20,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let oblique = Plane::standard(Orientation::Coronal)
        .rotated([0.0, 0.0, 1.0], 30.0)
        .expect("a plane");
    let view = View {
        viewport: Some((1024, 1024)),
        ..View::default()
    };
    for (name, plane) in [
        ("coronal", Plane::standard(Orientation::Coronal)),
        ("sagittal", Plane::standard(Orientation::Sagittal)),
        ("axial", Plane::standard(Orientation::Axial)),
        ("oblique 30°", oblique),
    ] {
        let layout = volume.layout(plane, 1024);
        let middle = layout.depths.len() / 2;
        for slab in [
            None,
            Some(Slab {
                thickness_mm: 20.0,
                mode: SlabMode::Mip,
            }),
        ] {
            let mut reformat = Vec::new();
            let mut rendered = Vec::new();
            for i in 0..=args.runs {
                let t0 = Instant::now();
                let f = volume
                    .reformat(&layout, middle + i % 7, slab)
                    .expect("a plane");
                let t1 = Instant::now();
                strata_render::render(&f.frame, &f.presentation, &view).expect("a render");
                if i > 0 {
                    reformat.push(t1 - t0);
                    rendered.push(t1.elapsed());
                }
            }
            let pct = |v: &mut Vec<Duration>, p: f64| {
                v.sort();
                v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
            };
            println!(
                "{name:>12} {:>3}×{:<4} {:<9} reformat p50 {:6.1} ms p90 {:6.1} ms; render into 1024² p50 {:5.1} ms",
                layout.columns,
                layout.rows,
                if slab.is_some() { "MIP 20mm" } else { "one voxel" },
                pct(&mut reformat, 0.5),
                pct(&mut reformat, 0.9),
                pct(&mut rendered, 0.5),
            );
        }
    }
}
