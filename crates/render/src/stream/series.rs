//! A series' geometry: its instances ordered into slices, and what a viewer shows about it.

use super::protocol::{CINE_DEFAULT_FPS, CINE_MAX_FPS, CINE_MIN_FPS, PRESETS};
use serde::Deserialize;
use serde_json::{json, Value};

/// One instance of a series as the catalog describes it: its SOP Instance UID and its
/// metadata (DICOM JSON, PS3.18 F.2).
#[derive(Debug, Clone, Copy)]
pub struct SeriesInstance<'a> {
    pub sop_uid: &'a str,
    pub metadata: &'a str,
}

/// One image of a series: frame `frame` of instance `sop_uid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub sop_uid: String,
    pub frame: u32,
    /// Position along the slice normal, in mm, when the instance says where it is.
    pub position: Option<f64>,
    /// Where it lies, for a single-frame image that says so (what MPR builds a volume from).
    pub geometry: Option<crate::volume::SliceGeometry>,
}

/// An opened series: its slices in order, and what the viewer shows about it.
#[derive(Debug, Clone)]
pub struct OpenedSeries {
    pub study: String,
    pub series: String,
    pub slices: Vec<Slice>,
    /// The rate cine plays at unless the client asks for another, in frames per second.
    pub cine_fps: f64,
    /// The `series` message sent to the client.
    pub metadata: Value,
}

/// The values of one attribute in DICOM JSON (PS3.18 F.2).
fn values<'a>(attrs: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    attrs.get(tag)?.get("Value")?.as_array()
}

/// Numbers of an attribute; DS and IS may come as numbers or as strings.
fn numbers(attrs: &Value, tag: &str) -> Option<Vec<f64>> {
    as_numbers(values(attrs, tag)?)
}

fn text(attrs: &Value, tag: &str) -> Option<String> {
    let v = values(attrs, tag)?.first()?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(pn) => pn
            .get("Alphabetic")
            .and_then(Value::as_str)
            .map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One attribute in DICOM JSON; its VR and anything else are skipped.
#[derive(Deserialize)]
struct Attr {
    #[serde(rename = "Value", default)]
    value: Vec<Value>,
}

/// What ordering a series and placing its slices needs of each instance: read alone, without
/// building the rest of its metadata (a series of hundreds is opened in a few ms).
#[derive(Deserialize)]
struct SliceAttrs {
    #[serde(rename = "00280008")]
    frames: Option<Attr>,
    #[serde(rename = "00200013")]
    number: Option<Attr>,
    #[serde(rename = "00200032")]
    position: Option<Attr>,
    #[serde(rename = "00200037")]
    orientation: Option<Attr>,
    #[serde(rename = "00280030")]
    spacing: Option<Attr>,
    #[serde(rename = "00280010")]
    rows: Option<Attr>,
    #[serde(rename = "00280011")]
    columns: Option<Attr>,
}

/// Numbers of an attribute's values; DS and IS may come as numbers or as strings.
fn as_numbers(values: &[Value]) -> Option<Vec<f64>> {
    values
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .collect()
}

impl SliceAttrs {
    fn numbers(a: &Option<Attr>) -> Option<Vec<f64>> {
        as_numbers(&a.as_ref()?.value)
    }

    fn first(a: &Option<Attr>) -> Option<f64> {
        SliceAttrs::numbers(a)?.first().copied()
    }

    fn frames(&self) -> u32 {
        SliceAttrs::first(&self.frames).unwrap_or(1.0).max(1.0) as u32
    }

    /// Where a single-frame image lies (Image Position and Orientation (Patient), Pixel
    /// Spacing, Rows, Columns): None when any is missing or it holds several frames.
    fn geometry(&self) -> Option<crate::volume::SliceGeometry> {
        let p = SliceAttrs::numbers(&self.position)?;
        let o = SliceAttrs::numbers(&self.orientation)?;
        let s = SliceAttrs::numbers(&self.spacing)?;
        if self.frames() > 1 || p.len() != 3 || o.len() != 6 || s.len() != 2 {
            return None;
        }
        Some(crate::volume::SliceGeometry {
            position: [p[0], p[1], p[2]],
            orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
            pixel_spacing: (s[0], s[1]),
            rows: SliceAttrs::first(&self.rows)? as u32,
            columns: SliceAttrs::first(&self.columns)? as u32,
        })
    }

    /// Position along the normal of the image's orientation, when it says both.
    fn depth(&self) -> Option<f64> {
        let p = SliceAttrs::numbers(&self.position)?;
        let o = SliceAttrs::numbers(&self.orientation)?;
        if p.len() != 3 || o.len() != 6 {
            return None;
        }
        let n = [
            o[1] * o[5] - o[2] * o[4],
            o[2] * o[3] - o[0] * o[5],
            o[0] * o[4] - o[1] * o[3],
        ];
        Some(p[0] * n[0] + p[1] * n[1] + p[2] * n[2])
    }
}

/// The rate an instance asks to be played at: 1000 / Frame Time (0018,1063, ms) for a clip,
/// else its Cine Rate (0018,0040) or Recommended Display Frame Rate (0008,2144); else
/// [`CINE_DEFAULT_FPS`]. Kept within what the stream plays.
pub fn cine_rate(attrs: &Value) -> f64 {
    let first = |tag: &str| {
        numbers(attrs, tag)
            .and_then(|v| v.first().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let fps = first("00181063")
        .map(|ms| 1000.0 / ms)
        .or_else(|| first("00180040"))
        .or_else(|| first("00082144"))
        .unwrap_or(CINE_DEFAULT_FPS);
    // whole frames per second: 33.3 ms is 30 fps, not 30.03
    (fps.round()).clamp(CINE_MIN_FPS, CINE_MAX_FPS)
}

/// Orders a series' instances into slices: along the normal of ImageOrientationPatient by
/// ImagePositionPatient when every instance has both, else by InstanceNumber (the index's
/// order); the frames of a multi-frame instance follow each other.
pub fn open_series(
    study: &str,
    series: &str,
    refs: &[SeriesInstance<'_>],
) -> Result<OpenedSeries, String> {
    if refs.is_empty() {
        return Err("the series has no instances".into());
    }
    // a structured report or a presentation state in an image series has no Rows
    let parsed: Vec<Option<SliceAttrs>> = refs
        .iter()
        .map(|r| {
            serde_json::from_str::<SliceAttrs>(r.metadata)
                .ok()
                .filter(|a| a.rows.is_some())
        })
        .collect();
    let mut items: Vec<(usize, &SliceAttrs, Option<f64>, Option<f64>)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let a = a.as_ref()?;
            Some((i, a, a.depth(), SliceAttrs::first(&a.number)))
        })
        .collect();
    if items.is_empty() {
        return Err("the series has no images".into());
    }
    if items.iter().all(|(_, _, p, _)| p.is_some()) {
        items.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
    } else {
        items.sort_by(|a, b| a.3.partial_cmp(&b.3).unwrap_or(std::cmp::Ordering::Equal));
    }
    let mut slices = Vec::new();
    // where each slice lies, for reference lines: [position (3), across (3), down (3), row
    // spacing, column spacing, rows, columns], or null (a frame of a multi-frame instance)
    let mut planes = Vec::new();
    for &(i, a, position, _) in &items {
        let frames = a.frames();
        let geometry = a.geometry();
        let plane = geometry.as_ref().map(|g| {
            let (p, o) = (g.position, g.orientation);
            json!([
                p[0],
                p[1],
                p[2],
                o[0],
                o[1],
                o[2],
                o[3],
                o[4],
                o[5],
                g.pixel_spacing.0,
                g.pixel_spacing.1,
                g.rows,
                g.columns
            ])
        });
        for frame in 0..frames {
            planes.push(plane.clone().unwrap_or(Value::Null));
            slices.push(Slice {
                sop_uid: refs[i].sop_uid.to_string(),
                frame,
                position: if frames == 1 { position } else { None },
                geometry: geometry.clone(),
            });
        }
    }
    // what the viewer shows of the series is read from its first image, in full
    let a: Value = serde_json::from_str(refs[items[0].0].metadata).unwrap_or(Value::Null);
    let a = &a;
    let cine_fps = cine_rate(a);
    let window = match (numbers(a, "00281050"), numbers(a, "00281051")) {
        (Some(c), Some(w)) if !c.is_empty() && !w.is_empty() => {
            json!({ "center": c[0], "width": w[0] })
        }
        _ => Value::Null,
    };
    let metadata = json!({
        "type": "series",
        "study": study,
        "series": series,
        "slices": slices.len(),
        "positions": slices.iter().map(|s| s.position).collect::<Vec<_>>(),
        "planes": planes,
        // what each slice is, so a viewer can name the frame it measures on
        "instances": slices.iter().map(|s| json!([s.sop_uid, s.frame + 1])).collect::<Vec<_>>(),
        "default_window": window,
        "presets": PRESETS,
        "cine_fps": cine_fps,
        "modality": text(a, "00080060"),
        "rows": numbers(a, "00280010").and_then(|v| v.first().copied()),
        "columns": numbers(a, "00280011").and_then(|v| v.first().copied()),
        "pixel_spacing": numbers(a, "00280030"),
        "series_description": text(a, "0008103E"),
        // slices of two series with the same frame of reference are compared by position
        "frame_of_reference": text(a, "00200052"),
        "dose_units": text(a, "30040002"),
        "series_number": text(a, "00200011"),
        "patient": {
            "name": text(a, "00100010"),
            "id": text(a, "00100020"),
            "birth_date": text(a, "00100030"),
            "sex": text(a, "00100040"),
        },
        "study_info": {
            "date": text(a, "00080020"),
            "time": text(a, "00080030"),
            "description": text(a, "00081030"),
            "accession": text(a, "00080050"),
        },
    });
    Ok(OpenedSeries {
        study: study.to_string(),
        series: series.to_string(),
        slices,
        cine_fps,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(sop: &str, number: i32, z: f64, frames: Option<u32>) -> (String, String) {
        let mut meta = json!({
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00200013": {"vr": "IS", "Value": [number]},
            "00200032": {"vr": "DS", "Value": [-100.0, -100.0, z]},
            "00200037": {"vr": "DS", "Value": [1, 0, 0, 0, 1, 0]},
            "00280010": {"vr": "US", "Value": [64]},
            "00280011": {"vr": "US", "Value": [64]},
            "00280030": {"vr": "DS", "Value": [0.5, 0.7]},
            "00281050": {"vr": "DS", "Value": ["40"]},
            "00281051": {"vr": "DS", "Value": ["400"]},
        });
        if let Some(f) = frames {
            meta["00280008"] = json!({"vr": "IS", "Value": [f]});
        }
        (sop.to_string(), meta.to_string())
    }

    fn open(refs: &[(String, String)]) -> Result<OpenedSeries, String> {
        let instances: Vec<SeriesInstance> = refs
            .iter()
            .map(|(sop, metadata)| SeriesInstance {
                sop_uid: sop,
                metadata,
            })
            .collect();
        open_series("1.2.3", "1.2.3.4", &instances)
    }

    #[test]
    fn slices_follow_the_normal_not_the_instance_number() {
        let refs = [
            instance("1.1", 1, 30.0, None),
            instance("1.2", 2, 10.0, None),
            instance("1.3", 3, 20.0, None),
        ];
        let s = open(&refs).unwrap();
        let order: Vec<_> = s.slices.iter().map(|s| s.sop_uid.as_str()).collect();
        assert_eq!(order, ["1.2", "1.3", "1.1"]);
        assert_eq!(s.metadata["positions"], json!([10.0, 20.0, 30.0]));
        assert_eq!(s.metadata["instances"][0], json!(["1.2", 1]));
        // where each slice lies, for reference lines
        assert_eq!(
            s.metadata["planes"][0],
            json!([-100.0, -100.0, 10.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.7, 64, 64])
        );
        // what MPR builds its volume from
        let g = s.slices[0].geometry.as_ref().unwrap();
        assert_eq!(
            (g.position, g.pixel_spacing),
            ([-100.0, -100.0, 10.0], (0.5, 0.7))
        );
        assert_eq!((g.rows, g.columns), (64, 64));
        assert_eq!(
            s.metadata["default_window"],
            json!({"center": 40.0, "width": 400.0})
        );
        assert_eq!(s.metadata["patient"]["name"], "Doe^Jane");
        // without positions, the instance number decides; frames follow each other
        let mut a = instance("2.1", 2, 0.0, Some(2));
        let mut b = instance("2.2", 1, 0.0, None);
        for r in [&mut a, &mut b] {
            let mut v: Value = serde_json::from_str(&r.1).unwrap();
            v.as_object_mut().unwrap().remove("00200032");
            r.1 = v.to_string();
        }
        let s = open(&[a, b]).unwrap();
        let order: Vec<_> = s
            .slices
            .iter()
            .map(|s| (s.sop_uid.as_str(), s.frame))
            .collect();
        assert_eq!(order, [("2.2", 0), ("2.1", 0), ("2.1", 1)]);
        // no position, no plane
        assert_eq!(s.metadata["planes"], json!([null, null, null]));
        assert!(s.slices.iter().all(|s| s.geometry.is_none()));
        assert!(open(&[]).is_err());
        // a report among the images has no Rows: it is no slice
        let report = r#"{"00080060":{"vr":"CS","Value":["SR"]}}"#.to_string();
        let s = open(&[instance("4.1", 1, 0.0, None), ("4.2".into(), report)]).unwrap();
        assert_eq!(s.slices.len(), 1);
    }

    #[test]
    fn cine_plays_at_the_frame_time_else_the_cine_rate_else_ten() {
        let (_, meta) = instance("3.1", 1, 0.0, Some(40));
        let mut clip: Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(cine_rate(&clip), 10.0);
        clip["00180040"] = json!({"vr": "IS", "Value": [25]});
        assert_eq!(cine_rate(&clip), 25.0);
        clip["00181063"] = json!({"vr": "DS", "Value": ["33.3"]});
        assert_eq!(cine_rate(&clip), 30.0);
        clip["00181063"] = json!({"vr": "DS", "Value": [2.0]});
        assert_eq!(cine_rate(&clip), 60.0, "faster than the stream plays");
        clip["00181063"] = json!({"vr": "DS", "Value": [0]});
        assert_eq!(cine_rate(&clip), 25.0, "a zero frame time says nothing");
        let s = open(&[("3.1".to_string(), clip.to_string())]).unwrap();
        assert_eq!((s.cine_fps, s.slices.len()), (25.0, 40));
        assert_eq!(s.metadata["cine_fps"], json!(25.0));
    }
}
