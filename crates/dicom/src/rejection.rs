//! IHE IOCM rejection notes: a Key Object Selection document whose title (Concept Name Code
//! Sequence) is one of the rejection titles of CID 7011 names instances to take out of use.
//! Read from the header as the index keeps it (DICOM JSON, PS3.18 F).

use serde_json::Value;

/// Key Object Selection Document Storage.
pub const KEY_OBJECT_SELECTION: &str = "1.2.840.10008.5.1.4.1.1.88.59";

/// The rejection titles (CID 7011, coding scheme DCM), with their meanings.
pub const REJECTION_TITLES: [(&str, &str); 4] = [
    ("113001", "Rejected for Quality Reasons"),
    ("113037", "Rejected for Patient Safety Reasons"),
    ("113038", "Incorrect Modality Worklist Entry"),
    ("113039", "Data Retention Policy Expired"),
];

/// What a rejection note says: its title and the instances it names, each with the study and
/// series the note puts it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionNote {
    /// The title's code value (DCM).
    pub code: String,
    pub meaning: String,
    pub instances: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
}

fn items<'a>(v: &'a Value, tag: &str) -> impl Iterator<Item = &'a Value> {
    v.get(tag)
        .and_then(|e| e.get("Value"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn string<'a>(v: &'a Value, tag: &str) -> Option<&'a str> {
    items(v, tag)
        .next()
        .and_then(Value::as_str)
        .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
}

/// The rejection note a document is, if it is one: a Key Object Selection document titled
/// with a rejection title of scheme DCM. `metadata` is the header as DICOM JSON.
pub fn rejection_note(sop_class_uid: &str, metadata: &str) -> Option<RejectionNote> {
    if sop_class_uid != KEY_OBJECT_SELECTION {
        return None;
    }
    let v: Value = serde_json::from_str(metadata).ok()?;
    let title = items(&v, "0040A043").next()?;
    let (code, scheme) = (string(title, "00080100")?, string(title, "00080102")?);
    let &(code, meaning) = REJECTION_TITLES
        .iter()
        .find(|(c, _)| *c == code && scheme == "DCM")?;
    let mut instances = Vec::new();
    for study in items(&v, "0040A375") {
        let Some(study_uid) = string(study, "0020000D") else {
            continue;
        };
        for series in items(study, "00081115") {
            let Some(series_uid) = string(series, "0020000E") else {
                continue;
            };
            for sop in items(series, "00081199") {
                if let Some(sop_uid) = string(sop, "00081155") {
                    instances.push(Rejected {
                        study_uid: study_uid.to_string(),
                        series_uid: series_uid.to_string(),
                        sop_uid: sop_uid.to_string(),
                    });
                }
            }
        }
    }
    Some(RejectionNote {
        code: code.to_string(),
        meaning: meaning.to_string(),
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(code: &str, scheme: &str) -> String {
        serde_json::json!({
            "0040A043": {"vr": "SQ", "Value": [{
                "00080100": {"vr": "SH", "Value": [code]},
                "00080102": {"vr": "SH", "Value": [scheme]},
                "00080104": {"vr": "LO", "Value": ["Rejected for Quality Reasons"]}
            }]},
            "0040A375": {"vr": "SQ", "Value": [{
                "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
                "00081115": {"vr": "SQ", "Value": [{
                    "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
                    "00081199": {"vr": "SQ", "Value": [
                        {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                         "00081155": {"vr": "UI", "Value": ["1.2.3.4.5"]}},
                        {"00081155": {"vr": "UI", "Value": ["1.2.3.4.6"]}}
                    ]}
                }]}
            }]}
        })
        .to_string()
    }

    #[test]
    fn a_note_titled_for_quality_reasons_names_its_instances() {
        let n = rejection_note(KEY_OBJECT_SELECTION, &note("113001", "DCM")).unwrap();
        assert_eq!(n.code, "113001");
        assert_eq!(n.meaning, "Rejected for Quality Reasons");
        let sops: Vec<&str> = n.instances.iter().map(|i| i.sop_uid.as_str()).collect();
        assert_eq!(sops, ["1.2.3.4.5", "1.2.3.4.6"]);
        assert!(n
            .instances
            .iter()
            .all(|i| i.study_uid == "1.2.3" && i.series_uid == "1.2.3.4"));
    }

    #[test]
    fn other_titles_schemes_and_classes_are_not_rejections() {
        // "Of Interest" is a key object selection, not a rejection
        assert_eq!(
            rejection_note(KEY_OBJECT_SELECTION, &note("113000", "DCM")),
            None
        );
        assert_eq!(
            rejection_note(KEY_OBJECT_SELECTION, &note("113001", "99LOCAL")),
            None
        );
        assert_eq!(
            rejection_note("1.2.840.10008.5.1.4.1.1.88.22", &note("113001", "DCM")),
            None
        );
        assert_eq!(rejection_note(KEY_OBJECT_SELECTION, "not json"), None);
    }
}
