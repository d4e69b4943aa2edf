//! The DICOMDIR of a file-set (PS3.10 8, PS3.3 F: the Basic Directory IOD): a tree of
//! PATIENT, STUDY, SERIES and IMAGE records, each IMAGE record naming its file (Referenced File
//! ID) and the instance in it. Written here by hand in Explicit VR Little Endian, because every
//! record links to its next sibling and its first child by byte offset from the start of the
//! file, and those offsets can only be right when the writer knows each record's length, which
//! a general-purpose object writer does not tell. Readers such as dcmtk follow the offsets.

use crate::InspectError;

/// The Media Storage Directory Storage SOP class (PS3.4 Annex F): what a DICOMDIR is.
pub const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// A patient of the file-set and their studies.
#[derive(Debug, Clone, Default)]
pub struct DirPatient {
    pub id: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub studies: Vec<DirStudy>,
}

#[derive(Debug, Clone, Default)]
pub struct DirStudy {
    pub uid: String,
    pub date: String,
    pub time: String,
    pub description: String,
    pub id: String,
    pub accession_number: String,
    pub series: Vec<DirSeries>,
}

#[derive(Debug, Clone, Default)]
pub struct DirSeries {
    pub uid: String,
    pub modality: String,
    pub number: String,
    pub instances: Vec<DirInstance>,
}

/// One instance and the file holding it.
#[derive(Debug, Clone, Default)]
pub struct DirInstance {
    /// The file's path components from the file-set's root (`DICOM`, `P0000001`, ...): each at
    /// most 8 characters of upper-case letters, digits and `_` (PS3.10 8.2).
    pub file_id: Vec<String>,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub number: String,
}

/// The DICOMDIR bytes of a file-set: preamble, file meta (with `instance_uid` as its Media
/// Storage SOP Instance UID) and the directory records, patients first, each record followed
/// by its children (the order dcmtk writes).
pub fn write(
    file_set_id: &str,
    instance_uid: &str,
    patients: &[DirPatient],
) -> Result<Vec<u8>, InspectError> {
    for i in patients
        .iter()
        .flat_map(|p| &p.studies)
        .flat_map(|s| &s.series)
        .flat_map(|s| &s.instances)
    {
        check_file_id(&i.file_id)?;
    }
    let records = flatten(patients);
    let mut out = crate::part10::part10_header(
        MEDIA_STORAGE_DIRECTORY,
        instance_uid,
        EXPLICIT_VR_LITTLE_ENDIAN,
        "STRATA",
    )?;
    // the data set's head: file-set id, the two root offsets, the consistency flag, the
    // sequence's own header; the records follow
    let head_len = 8 + even(file_set_id.len()) + 12 + 12 + 10 + 12;
    let first = (out.len() + head_len) as u64;
    let mut offsets = Vec::with_capacity(records.len());
    let mut at = first;
    for r in &records {
        offsets.push(at);
        at += 8 + r.body_len() as u64;
    }
    if at > u32::MAX as u64 {
        return Err(crate::invalid(
            "the DICOMDIR would be larger than 4 GiB; export fewer studies at once",
        ));
    }
    let offset_of = |i: Option<usize>| i.map_or(0, |i| offsets[i] as u32);
    let roots: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].level == 0)
        .collect();
    short(&mut out, 0x0004, 0x1130, b"CS", &text(file_set_id, b' '));
    short(
        &mut out,
        0x0004,
        0x1200,
        b"UL",
        &offset_of(roots.first().copied()).to_le_bytes(),
    );
    short(
        &mut out,
        0x0004,
        0x1202,
        b"UL",
        &offset_of(roots.last().copied()).to_le_bytes(),
    );
    short(&mut out, 0x0004, 0x1212, b"US", &0u16.to_le_bytes());
    // Directory Record Sequence, undefined length, closed by a delimitation item
    out.extend_from_slice(&tag(0x0004, 0x1220));
    out.extend_from_slice(b"SQ\0\0");
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    debug_assert_eq!(out.len() as u64, first);
    for r in &records {
        out.extend_from_slice(&tag(0xFFFE, 0xE000));
        out.extend_from_slice(&(r.body_len() as u32).to_le_bytes());
        short(
            &mut out,
            0x0004,
            0x1400,
            b"UL",
            &offset_of(r.next).to_le_bytes(),
        );
        short(&mut out, 0x0004, 0x1410, b"US", &0xFFFFu16.to_le_bytes());
        short(
            &mut out,
            0x0004,
            0x1420,
            b"UL",
            &offset_of(r.child).to_le_bytes(),
        );
        out.extend_from_slice(&r.keys);
    }
    out.extend_from_slice(&tag(0xFFFE, 0xE0DD));
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(out)
}

/// A record in the file's order: its depth, its next sibling and first child (indexes into the
/// list), and its elements after the three link fields, encoded.
struct Record {
    level: u8,
    next: Option<usize>,
    child: Option<usize>,
    keys: Vec<u8>,
}

impl Record {
    /// Bytes of the item's value: the link fields (12 + 10 + 12) and the keys.
    fn body_len(&self) -> usize {
        34 + self.keys.len()
    }
}

/// The tree as records in pre-order, linked.
fn flatten(patients: &[DirPatient]) -> Vec<Record> {
    let mut records = Vec::new();
    for p in patients {
        records.push(record(0, patient_keys(p)));
        for st in &p.studies {
            records.push(record(1, study_keys(st)));
            for se in &st.series {
                records.push(record(2, series_keys(se)));
                for i in &se.instances {
                    records.push(record(3, instance_keys(i)));
                }
            }
        }
    }
    // a record's next sibling: the next record at its level before any shallower one; its
    // child: the record right after it when that is one level deeper
    for i in 0..records.len() {
        let level = records[i].level;
        records[i].child = records
            .get(i + 1)
            .filter(|r| r.level == level + 1)
            .map(|_| i + 1);
        records[i].next = records[i + 1..]
            .iter()
            .position(|r| r.level <= level)
            .map(|n| i + 1 + n)
            .filter(|&n| records[n].level == level);
    }
    records
}

fn record(level: u8, keys: Vec<u8>) -> Record {
    Record {
        level,
        next: None,
        child: None,
        keys,
    }
}

/// Specific Character Set of a record whose keys hold anything beyond ASCII: the values come
/// from the index as UTF-8.
fn charset(out: &mut Vec<u8>, values: &[&str]) {
    if values.iter().any(|v| !v.is_ascii()) {
        short(out, 0x0008, 0x0005, b"CS", &text("ISO_IR 192", b' '));
    }
}

fn record_type(out: &mut Vec<u8>, kind: &str) {
    short(out, 0x0004, 0x1430, b"CS", &text(kind, b' '));
}

fn patient_keys(p: &DirPatient) -> Vec<u8> {
    let mut k = Vec::new();
    record_type(&mut k, "PATIENT");
    charset(&mut k, &[&p.name, &p.id]);
    short(&mut k, 0x0010, 0x0010, b"PN", &text(&p.name, b' '));
    short(&mut k, 0x0010, 0x0020, b"LO", &text(&p.id, b' '));
    short(&mut k, 0x0010, 0x0030, b"DA", &text(&p.birth_date, b' '));
    short(&mut k, 0x0010, 0x0040, b"CS", &text(&p.sex, b' '));
    k
}

fn study_keys(s: &DirStudy) -> Vec<u8> {
    let mut k = Vec::new();
    record_type(&mut k, "STUDY");
    charset(&mut k, &[&s.description, &s.id, &s.accession_number]);
    short(&mut k, 0x0008, 0x0020, b"DA", &text(&s.date, b' '));
    short(&mut k, 0x0008, 0x0030, b"TM", &text(&s.time, b' '));
    short(
        &mut k,
        0x0008,
        0x0050,
        b"SH",
        &text(&s.accession_number, b' '),
    );
    short(&mut k, 0x0008, 0x1030, b"LO", &text(&s.description, b' '));
    short(&mut k, 0x0020, 0x000D, b"UI", &text(&s.uid, 0));
    short(&mut k, 0x0020, 0x0010, b"SH", &text(&s.id, b' '));
    k
}

fn series_keys(s: &DirSeries) -> Vec<u8> {
    let mut k = Vec::new();
    record_type(&mut k, "SERIES");
    short(&mut k, 0x0008, 0x0060, b"CS", &text(&s.modality, b' '));
    short(&mut k, 0x0020, 0x000E, b"UI", &text(&s.uid, 0));
    short(&mut k, 0x0020, 0x0011, b"IS", &text(&s.number, b' '));
    k
}

fn instance_keys(i: &DirInstance) -> Vec<u8> {
    let mut k = Vec::new();
    record_type(&mut k, "IMAGE");
    short(
        &mut k,
        0x0004,
        0x1500,
        b"CS",
        &text(&i.file_id.join("\\"), b' '),
    );
    short(&mut k, 0x0004, 0x1510, b"UI", &text(&i.sop_class_uid, 0));
    short(&mut k, 0x0004, 0x1511, b"UI", &text(&i.sop_instance_uid, 0));
    short(&mut k, 0x0004, 0x1512, b"UI", &text(&i.transfer_syntax, 0));
    short(&mut k, 0x0020, 0x0013, b"IS", &text(&i.number, b' '));
    k
}

/// PS3.10 8.2: 1 to 8 components of 1 to 8 characters from A–Z, 0–9 and `_`.
fn check_file_id(id: &[String]) -> Result<(), InspectError> {
    let ok = !id.is_empty()
        && id.len() <= 8
        && id.iter().all(|c| {
            (1..=8).contains(&c.len())
                && c.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(crate::invalid(format!(
            "{:?} is not a PS3.10 file ID",
            id.join("\\")
        )))
    }
}

fn tag(group: u16, element: u16) -> [u8; 4] {
    let (g, e) = (group.to_le_bytes(), element.to_le_bytes());
    [g[0], g[1], e[0], e[1]]
}

/// An element of a VR with a 16-bit length (every VR a directory record uses but SQ).
fn short(out: &mut Vec<u8>, group: u16, element: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&tag(group, element));
    out.extend_from_slice(vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// A text value padded to even length (UIDs with NUL, everything else with a space).
fn text(value: &str, pad: u8) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

fn even(n: usize) -> usize {
    n + n % 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::Tag;

    fn tree() -> Vec<DirPatient> {
        let instance = |n: u32| DirInstance {
            file_id: vec!["DICOM".into(), "P1".into(), format!("I{n}")],
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: format!("2.25.{n}"),
            transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN.into(),
            number: n.to_string(),
        };
        let series = |uid: &str, from: u32| DirSeries {
            uid: uid.into(),
            modality: "CT".into(),
            number: "1".into(),
            instances: (from..from + 3).map(instance).collect(),
        };
        let patient = |id: &str, name: &str| DirPatient {
            id: id.into(),
            name: name.into(),
            studies: vec![DirStudy {
                uid: format!("2.25.9{id}"),
                date: "20240102".into(),
                series: vec![series("2.25.11", 1), series("2.25.12", 4)],
                ..Default::default()
            }],
            ..Default::default()
        };
        vec![patient("1", "Doe^Jane"), patient("2", "Müller^Jörg")]
    }

    /// Every offset in the written file points at the item of the record it names: read back
    /// with dicom-rs, which keeps each item's position.
    #[test]
    fn offsets_point_at_the_records_they_name() {
        let bytes = write("STRATA", "2.25.77", &tree()).unwrap();
        let obj = crate::part10::open(&bytes).unwrap();
        let seq = obj.element(Tag(0x0004, 0x1220)).unwrap();
        let items = seq.items().unwrap();
        assert_eq!(items.len(), 2 + 2 + 4 + 12);
        // find each record's byte offset: items start with the item tag, then the 0004,1400 tag
        let mut starts = Vec::new();
        for (at, w) in bytes.windows(8).enumerate() {
            if w == [0xFE, 0xFF, 0x00, 0xE0, w[4], w[5], w[6], w[7]]
                && bytes[at + 8..at + 12] == [0x04, 0x00, 0x00, 0x14]
            {
                starts.push(at as u32);
            }
        }
        assert_eq!(starts.len(), items.len());
        let ul = |i: &dicom_object::InMemDicomObject, t: Tag| {
            i.element(t).unwrap().to_int::<u32>().unwrap()
        };
        let kind = |i: &dicom_object::InMemDicomObject| {
            i.element(Tag(0x0004, 0x1430))
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        let at = |off: u32| starts.iter().position(|s| *s == off).unwrap();
        assert_eq!(at(ul(&obj, Tag(0x0004, 0x1200))), 0);
        assert_eq!(at(ul(&obj, Tag(0x0004, 0x1202))), 10);
        // the first patient's study, its two series, the second series' first image
        let patient = &items[0];
        let study = &items[at(ul(patient, Tag(0x0004, 0x1420)))];
        assert_eq!(kind(study), "STUDY");
        let series1 = at(ul(study, Tag(0x0004, 0x1420)));
        let series2 = at(ul(&items[series1], Tag(0x0004, 0x1400)));
        assert_eq!(kind(&items[series2]), "SERIES");
        assert_eq!(ul(&items[series2], Tag(0x0004, 0x1400)), 0);
        let image = &items[at(ul(&items[series2], Tag(0x0004, 0x1420)))];
        assert_eq!(
            image
                .element(Tag(0x0004, 0x1511))
                .unwrap()
                .to_str()
                .unwrap(),
            "2.25.4"
        );
        assert_eq!(
            ul(
                &items[at(ul(patient, Tag(0x0004, 0x1400)))],
                Tag(0x0004, 0x1400)
            ),
            0
        );
        // the second patient's name is not ASCII: its record says UTF-8
        assert_eq!(
            items[10]
                .element(Tag(0x0008, 0x0005))
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "ISO_IR 192"
        );
    }

    #[test]
    fn file_ids_outside_ps3_10_are_refused() {
        let mut t = tree();
        t[0].studies[0].series[0].instances[0].file_id = vec!["dicom".into()];
        assert!(write("STRATA", "2.25.77", &t).is_err());
        t[0].studies[0].series[0].instances[0].file_id = vec!["TOOLONGNAME".into()];
        assert!(write("STRATA", "2.25.77", &t).is_err());
    }
}
