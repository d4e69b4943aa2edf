//! DICOMweb rendered resources, thumbnails and WADO-URI pictures against the running binary:
//! what comes back decodes to exactly what the pipeline renders for the same view; window,
//! viewport and format are honoured; a radiologist may see pictures (and still no original
//! pixels); what cannot be rendered gets a reason; every access is audited.

mod common;

use common::{add_user, broken_jpeg, http, sop_uid, token, Answer, Server, TestArchive};
use std::path::{Path, PathBuf};
use strata_render::pipeline::Presentation;
use strata_render::{decode_frame, render, Rendered, View, VoiFunction, Window};
use strata_synth::{Modality, SynthOptions};

fn get(url: &str, token: &str, accept: Option<&str>) -> Answer {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(a) = accept {
        headers.push(("Accept", a));
    }
    http("GET", url, &headers, None)
}

fn uid(path: &Path, tag: dicom_core::Tag) -> String {
    dicom_object::open_file(path)
        .unwrap()
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

/// What the pipeline makes of frame 0 of a file, in this process.
fn local_render(path: &Path, view: &View) -> Rendered {
    let obj = dicom_object::open_file(path).unwrap();
    let decoded = decode_frame(&obj, 0).unwrap();
    render(&decoded, &Presentation::from_object(&obj, 0).unwrap(), view).unwrap()
}

fn decode_png(a: &Answer) -> image::GrayImage {
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "image/png");
    image::load_from_memory_with_format(&a.body, image::ImageFormat::Png)
        .expect("a PNG")
        .to_luma8()
}

/// A CT study of one series of three 64×48 slices.
fn ct_study(t: &TestArchive) -> Vec<PathBuf> {
    let mut files = t.generate(
        "in",
        &SynthOptions {
            seed: 6,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 3,
            rows: 48,
            cols: 64,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    files.sort();
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    files
}

fn audit_of(server: &Server, admin: &str, action: &str) -> String {
    get(
        &format!("http://{}/api/audit?action={action}", server.http),
        admin,
        None,
    )
    .text()
}

#[test]
fn rendered_instances_are_the_pipelines_pictures() {
    let t = TestArchive::new();
    let files = ct_study(&t);
    let server = t.serve();
    add_user(&t, "rad", "radiologist");
    let (rad, admin) = (token(&t, "rad"), token(&t, "admin"));
    let f = &files[1];
    let (st, se, sop) = (
        uid(f, dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
        uid(f, dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
        sop_uid(f),
    );
    let b = format!("http://{}/dicomweb/studies/{st}", server.http);
    let instance = format!("{b}/series/{se}/instances/{sop}");

    // PNG, the file's own window: exactly the pipeline's render
    let png = decode_png(&get(
        &format!("{instance}/rendered"),
        &rad,
        Some("image/png"),
    ));
    let want = local_render(f, &View::default());
    assert_eq!((png.width(), png.height()), (64, 48));
    assert_eq!(png.as_raw(), &want.pixels);

    // a window from the request changes the picture, and is the pipeline's for that window
    let lung = decode_png(&get(
        &format!("{instance}/rendered?window=-600,1500,linear-exact"),
        &rad,
        Some("image/png"),
    ));
    let want_lung = local_render(
        f,
        &View {
            window: Some(Window {
                center: -600.0,
                width: 1500.0,
                function: VoiFunction::LinearExact,
            }),
            ..View::default()
        },
    );
    assert_eq!(lung.as_raw(), &want_lung.pixels);
    assert_ne!(lung.as_raw(), png.as_raw(), "the window changed nothing");

    // viewport: scaled to fit, aspect kept
    let small = decode_png(&get(
        &format!("{instance}/rendered?viewport=32,32"),
        &rad,
        Some("image/png"),
    ));
    assert_eq!((small.width(), small.height()), (32, 24));
    let want_small = local_render(
        f,
        &View {
            viewport: Some((32, 24)),
            ..View::default()
        },
    );
    assert_eq!(small.as_raw(), &want_small.pixels);

    // JPEG by default and for */*; quality honoured (a lower one is smaller)
    for accept in [None, Some("*/*"), Some("image/jpeg")] {
        let j = get(&format!("{instance}/rendered"), &rad, accept);
        assert_eq!(j.status, 200, "{}", j.text());
        assert_eq!(j.content_type, "image/jpeg", "{accept:?}");
        let img = image::load_from_memory_with_format(&j.body, image::ImageFormat::Jpeg)
            .unwrap()
            .to_luma8();
        assert_eq!((img.width(), img.height()), (64, 48));
        // lossy, but close to the exact picture
        let err: f64 = img
            .as_raw()
            .iter()
            .zip(&want.pixels)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / want.pixels.len() as f64;
        assert!(err < 4.0, "mean JPEG error {err}");
    }
    let q10 = get(&format!("{instance}/rendered?quality=10"), &rad, None);
    let q95 = get(&format!("{instance}/rendered?quality=95"), &rad, None);
    assert!(q10.body.len() < q95.body.len());

    // frames, series and study
    let frame = decode_png(&get(
        &format!("{instance}/frames/1/rendered"),
        &rad,
        Some("image/png"),
    ));
    assert_eq!(frame.as_raw(), &want.pixels);
    let missing = get(&format!("{instance}/frames/2/rendered"), &rad, None);
    assert_eq!(missing.status, 404, "{}", missing.text());
    for url in [format!("{b}/rendered"), format!("{b}/series/{se}/rendered")] {
        let m = get(&url, &rad, Some("multipart/related; type=\"image/png\""));
        assert_eq!(m.status, 200, "{}", m.text());
        assert!(
            m.content_type
                .starts_with("multipart/related; type=\"image/png\""),
            "{}",
            m.content_type
        );
        let parts = m
            .body
            .windows(b"Content-Type: image/png".len())
            .filter(|w| w == b"Content-Type: image/png")
            .count();
        assert_eq!(parts, 3, "{url}: one picture per instance");
    }

    // thumbnails: the middle slice, fitting 128×128
    for url in [
        format!("{b}/thumbnail"),
        format!("{b}/series/{se}/thumbnail"),
        format!("{instance}/thumbnail"),
    ] {
        let th = decode_png(&get(&url, &rad, Some("image/png")));
        assert_eq!((th.width(), th.height()), (128, 96), "{url}");
        let want = local_render(
            f,
            &View {
                viewport: Some((128, 96)),
                ..View::default()
            },
        );
        assert_eq!(th.as_raw(), &want.pixels, "{url}: the middle slice");
        let j = get(&url, &rad, None);
        assert_eq!((j.status, j.content_type.as_str()), (200, "image/jpeg"));
    }

    // WADO-URI answers pictures through the same renderer
    let uri = format!(
        "http://{}/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}",
        server.http
    );
    let w = decode_png(&get(&format!("{uri}&contentType=image/png"), &rad, None));
    assert_eq!(w.as_raw(), &want.pixels);
    let w = decode_png(&get(
        &format!(
            "{uri}&contentType=image/png&windowCenter=-600&windowWidth=1500&columns=32&rows=32"
        ),
        &rad,
        None,
    ));
    assert_eq!((w.width(), w.height()), (32, 24));
    let j = get(&uri, &rad, None);
    assert_eq!((j.status, j.content_type.as_str()), (200, "image/jpeg"));
    assert_eq!(
        get(&format!("{uri}&contentType=application/dicom"), &rad, None).status,
        403,
        "still no original pixels for a radiologist"
    );
    assert_eq!(
        get(&format!("{uri}&windowCenter=40"), &rad, None).status,
        400
    );
    assert_eq!(get(&format!("{uri}&frameNumber=2"), &rad, None).status, 404);

    // bad requests
    for (url, accept, status) in [
        (format!("{instance}/rendered?window=40"), None, 400),
        (format!("{instance}/rendered?window=40,0"), None, 400),
        (format!("{instance}/rendered?window=a,b"), None, 400),
        (format!("{instance}/rendered?viewport=0,10"), None, 400),
        (format!("{instance}/rendered?quality=0"), None, 400),
        (format!("{instance}/rendered"), Some("image/gif"), 406),
        (format!("{instance}/frames/x/rendered"), None, 400),
    ] {
        let a = get(&url, &rad, accept);
        assert_eq!(a.status, status, "{url}: {}", a.text());
        assert_eq!(a.content_type, "application/problem+json");
    }

    // roles: pictures for radiologists and integrators, not for modalities
    add_user(&t, "ct1", "modality");
    assert_eq!(
        get(&format!("{instance}/rendered"), &token(&t, "ct1"), None).status,
        403
    );

    // audited: who saw which patient's pictures
    let audit = audit_of(&server, &admin, "http.wado.rendered");
    assert!(
        audit.contains("\"actor\":\"rad\"") && audit.contains(&st),
        "{audit}"
    );
    assert!(audit_of(&server, &admin, "http.wado.thumbnail").contains("\"actor\":\"rad\""));
    assert!(audit_of(&server, &admin, "http.wado_uri").contains("image/png"));
}

#[test]
fn what_cannot_be_decoded_gets_a_reason_and_an_audit_row() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.path("broken")).unwrap();
    let path = t.path("broken/broken.dcm");
    let study = "1.2.826.0.1.3680043.8.498.4242";
    let (se, sop) = broken_jpeg(&path, study);
    let (se, sop) = (se.as_str(), sop.as_str());
    t.ok(&["import", t.path("broken").to_str().unwrap()]);
    let server = t.serve();
    add_user(&t, "rad", "radiologist");
    let (rad, admin) = (token(&t, "rad"), token(&t, "admin"));
    let b = format!("http://{}/dicomweb/studies/{study}", server.http);
    for url in [
        format!("{b}/series/{se}/instances/{sop}/rendered"),
        format!("{b}/series/{se}/rendered"),
        format!("{b}/thumbnail"),
    ] {
        let a = get(&url, &rad, None);
        assert!(
            a.status == 415 || a.status == 422,
            "{url}: {} {}",
            a.status,
            a.text()
        );
        assert_eq!(a.content_type, "application/problem+json");
        let problem: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(
            problem["detail"].as_str().unwrap_or("").contains("decode"),
            "{url}: the reason is given: {problem}"
        );
    }
    let audit = audit_of(&server, &admin, "http.wado.rendered");
    assert!(
        audit.contains("\"outcome\":\"failure\"") && audit.contains("BROKEN1"),
        "{audit}"
    );
}
