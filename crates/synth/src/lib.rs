//! Synthetic DICOM workload generator (dev only: a dependency of the tests, examples and
//! benchmarks, never of the archive itself).
//!
//! Strata needs realistic-looking DICOM data for tests, benchmarks and demos, but
//! real patient data cannot be shipped or shared. This module fabricates CT and MR
//! studies as Part-10 files (Explicit VR Little Endian) whose headers look like what
//! a PACS receives in practice: the same person seen at one or two hospitals under
//! different Patient IDs, occasionally with a misspelled name, a different case or
//! a day/month swap in the birth date, so that patient-matching and indexing code
//! has something to chew on. Every value, UID and pixel is derived from a seed, so
//! a given [`SynthOptions`] always produces byte-identical files. Pixel data is a
//! cheap procedural phantom (ellipses whose sizes change along z, plus seeded noise)
//! so every instance differs and content-addressed storage cannot deduplicate it.
//! [`write_large_multiframe`] streams a single very large multi-frame instance to
//! disk without ever holding its pixel data in memory.

pub mod persons;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Implementation Class UID written into every file meta group, so files made by
/// this generator can be recognised (a fixed UUID-derived `2.25.` UID).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.20940320486591263798116373546976872675";

/// Implementation Version Name written next to [`IMPLEMENTATION_CLASS_UID`].
pub const IMPLEMENTATION_VERSION_NAME: &str = "STRATA_SYNTH_1";

/// Imaging modality of a generated study; it decides the SOP class, the header
/// vocabulary (descriptions, body parts, scanners) and the look of the phantom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Computed tomography (CT Image Storage, signed pixels in HU + 1024).
    Ct,
    /// Magnetic resonance (MR Image Storage, unsigned pixels).
    Mr,
}

impl Modality {
    /// The DICOM Modality (0008,0060) code, because that is what archives index on.
    pub fn code(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mr => "MR",
        }
    }

    /// The storage SOP class UID, because SOPClassUID and the file meta
    /// MediaStorageSOPClassUID must name the IOD the instance claims to be.
    pub fn sop_class_uid(self) -> &'static str {
        match self {
            Modality::Ct => uids::CT_IMAGE_STORAGE,
            Modality::Mr => uids::MR_IMAGE_STORAGE,
        }
    }
}

/// What to generate. The shape of the workload (how many people, studies, series
/// and slices) is separate from the seed so a benchmark can scale one axis while
/// keeping the rest reproducible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Seed for every random choice; the same options give byte-identical output.
    pub seed: u64,
    /// Number of distinct people; studies are assigned to them round-robin.
    pub patients: usize,
    /// Total number of studies; patients are reused across studies.
    pub studies: usize,
    /// Series in each study.
    pub series_per_study: usize,
    /// Instances (slices) in each series.
    pub slices: usize,
    /// Image rows.
    pub rows: u16,
    /// Image columns.
    pub cols: u16,
    /// Modality of every study, or `None` for a seeded mix of CT and MR.
    pub modality: Option<Modality>,
    /// Whether later studies of a person may carry demographic noise (misspelled
    /// name, different case, day/month swapped birth date), as real feeds do.
    pub noise: bool,
}

impl Default for SynthOptions {
    /// Small enough for unit tests yet exercising patient reuse and noise.
    fn default() -> Self {
        SynthOptions {
            seed: 1,
            patients: 2,
            studies: 3,
            series_per_study: 1,
            slices: 4,
            rows: 64,
            cols: 64,
            modality: None,
            noise: true,
        }
    }
}

/// Everything needed to render one instance, as decided by [`plan`].
///
/// Exposed so tests and benchmarks can know what a file should contain (UIDs,
/// demographics, position) without parsing it, and can render single instances
/// with [`instance_bytes`] without touching the file system.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    /// Index of the person (0-based) this instance belongs to.
    pub patient_index: usize,
    /// Study number (1-based), also the first path component.
    pub study_number: usize,
    /// Series number (1-based) within the study; SeriesNumber and second path component.
    pub series_number: usize,
    /// Instance number (1-based) within the series; InstanceNumber and file stem.
    pub instance_number: usize,
    /// Modality of the study.
    pub modality: Modality,
    /// PatientName as recorded in this study (may carry noise).
    pub patient_name: String,
    /// PatientID assigned by the issuing hospital.
    pub patient_id: String,
    /// IssuerOfPatientID, e.g. `HOSP_A`.
    pub issuer_of_patient_id: String,
    /// PatientBirthDate (YYYYMMDD) as recorded in this study (may carry noise).
    pub patient_birth_date: String,
    /// PatientSex (`M` or `F`).
    pub patient_sex: String,
    /// InstitutionName of the issuing hospital.
    pub institution_name: String,
    /// Manufacturer of the scanner.
    pub manufacturer: String,
    /// ReferringPhysicianName.
    pub referring_physician_name: String,
    /// StudyInstanceUID.
    pub study_instance_uid: String,
    /// SeriesInstanceUID.
    pub series_instance_uid: String,
    /// SOPInstanceUID (also MediaStorageSOPInstanceUID).
    pub sop_instance_uid: String,
    /// FrameOfReferenceUID, shared by all series of a study.
    pub frame_of_reference_uid: String,
    /// StudyDate (YYYYMMDD), also SeriesDate and ContentDate.
    pub study_date: String,
    /// StudyTime (HHMMSS).
    pub study_time: String,
    /// SeriesTime (HHMMSS).
    pub series_time: String,
    /// AccessionNumber.
    pub accession_number: String,
    /// StudyID.
    pub study_id: String,
    /// StudyDescription.
    pub study_description: String,
    /// SeriesDescription.
    pub series_description: String,
    /// BodyPartExamined.
    pub body_part_examined: String,
    /// Image rows.
    pub rows: u16,
    /// Image columns.
    pub cols: u16,
    /// Number of slices in the series (the phantom varies along it).
    pub slices_in_series: usize,
    /// SliceThickness in mm, also the spacing between slices.
    pub slice_thickness: f64,
    /// Square PixelSpacing in mm.
    pub pixel_spacing: f64,
    /// z of ImagePositionPatient and SliceLocation, in mm.
    pub z_position: f64,
    /// WindowCenter / WindowWidth.
    pub window: (f64, f64),
    phantom: Phantom,
}

/// Seeded shape parameters of the phantom, fixed per series so that slices of a
/// series show one coherent object.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Phantom {
    /// Patient size factor.
    body_scale: f64,
    /// Lesion centre as fractions of the body radii.
    lesion_x: f64,
    lesion_y: f64,
    /// Lesion radius as a fraction of the columns, at its widest.
    lesion_r: f64,
    /// Noise seed of this particular slice.
    noise_seed: u64,
}

const HOSPITALS: [(&str, &str); 3] = [
    ("HOSP_A", "St. Agnes General Hospital"),
    ("HOSP_B", "Riverside University Medical Center"),
    ("HOSP_C", "Nordvik Klinik"),
];

const FAMILY_NAMES: [&str; 30] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Garcia",
    "Rodriguez",
    "Wilson",
    "Martinez",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Müller",
    "Schröder",
    "Sørensen",
    "Lefèvre",
    "Núñez",
    "Østergaard",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Nakamura",
];

const GIVEN_MALE: [&str; 16] = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "José",
    "François",
    "Jürgen",
    "Lars",
    "Marco",
    "Hiroshi",
];

const GIVEN_FEMALE: [&str; 16] = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Zoë",
    "Inès",
    "Björk",
    "Ingrid",
    "Giulia",
    "Yuki",
];

const PHYSICIANS: [&str; 6] = [
    "House^Gregory",
    "Grey^Meredith",
    "Ross^Douglas",
    "Carter^John",
    "Quinn^Michaela",
    "Kildare^James",
];

const CT_MANUFACTURERS: [&str; 4] = ["SIEMENS", "GE MEDICAL SYSTEMS", "Philips", "TOSHIBA"];
const MR_MANUFACTURERS: [&str; 3] = ["SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems"];

/// (StudyDescription, BodyPartExamined, series descriptions, window centre/width)
type Protocol = (
    &'static str,
    &'static str,
    &'static [&'static str],
    (f64, f64),
);

const CT_PROTOCOLS: [Protocol; 4] = [
    (
        "CT CHEST W/O CONTRAST",
        "CHEST",
        &["AXIAL 1.25mm LUNG", "AXIAL 5mm STND", "COR MPR"],
        (-600.0, 1500.0),
    ),
    (
        "CT ABDOMEN PELVIS W CONTRAST",
        "ABDOMEN",
        &["PORTAL VENOUS 3mm", "AXIAL 5mm", "SAG MPR"],
        (40.0, 400.0),
    ),
    (
        "CT HEAD W/O CONTRAST",
        "HEAD",
        &["AXIAL 5mm BRAIN", "AXIAL 0.625mm BONE"],
        (40.0, 80.0),
    ),
    (
        "CT ANGIO CHEST",
        "CHEST",
        &["CTA 1mm", "MIP 10mm"],
        (300.0, 600.0),
    ),
];

const MR_PROTOCOLS: [Protocol; 4] = [
    (
        "MR BRAIN W/WO CONTRAST",
        "BRAIN",
        &["AX T1", "AX T2 FLAIR", "AX DWI", "SAG T1 POST"],
        (1200.0, 2400.0),
    ),
    (
        "MR LUMBAR SPINE W/O",
        "LSPINE",
        &["SAG T2", "SAG T1", "AX T2"],
        (1100.0, 2200.0),
    ),
    (
        "MR KNEE LEFT",
        "KNEE",
        &["COR PD FS", "SAG PD", "AX T2 FS"],
        (1000.0, 2000.0),
    ),
    (
        "MR ABDOMEN LIVER",
        "ABDOMEN",
        &["AX T2 HASTE", "AX T1 IN/OPP", "DYN VIBE"],
        (900.0, 1800.0),
    ),
];

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// A random UUID-derived UID (`2.25.<decimal>`), version-4 bits set so the integer
/// is a real UUID; that also keeps it ≥ 2^78, so it is never `0` and never has a
/// leading zero, and at most 44 characters long.
fn new_uid(rng: &mut StdRng) -> String {
    let mut x: u128 = rng.gen();
    x = (x & !(0xF_u128 << 76)) | (0x4_u128 << 76);
    x = (x & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    format!("2.25.{x}")
}

// Days <-> civil date (proleptic Gregorian), Howard Hinnant's algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn random_date(rng: &mut StdRng, from: (i64, u32, u32), to: (i64, u32, u32)) -> (i64, u32, u32) {
    let a = days_from_civil(from.0, from.1, from.2);
    let b = days_from_civil(to.0, to.1, to.2);
    civil_from_days(rng.gen_range(a..=b))
}

fn fmt_date((y, m, d): (i64, u32, u32)) -> String {
    format!("{y:04}{m:02}{d:02}")
}

fn fmt_time(secs: u32) -> String {
    let secs = secs.min(86_399);
    format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A DS value that fits the 16-byte limit and reads back exactly.
fn ds(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Draws from `f` until it produces a value not yet in `used`, so identifiers that
/// must be unique (Patient IDs, accession numbers) are unique within a run.
fn unique(
    rng: &mut StdRng,
    used: &mut HashSet<String>,
    f: impl Fn(&mut StdRng) -> String,
) -> String {
    loop {
        let v = f(rng);
        if used.insert(v.clone()) {
            return v;
        }
    }
}

struct Person {
    family: &'static str,
    given: &'static str,
    middle: &'static str,
    sex: &'static str,
    birth: (i64, u32, u32),
    /// (index into HOSPITALS, PatientID there); one or two entries.
    ids: Vec<(usize, String)>,
    body_scale: f64,
}

impl Person {
    fn name(&self) -> String {
        format!("{}^{}^{}", self.family, self.given, self.middle)
    }
}

fn make_people(rng: &mut StdRng, n: usize) -> Vec<Person> {
    // All (family, sex, given) combinations, shuffled: names stay distinct while
    // the lists last (960 people), and repeat only beyond that, as in real life.
    let mut combos: Vec<(usize, bool, usize)> = Vec::new();
    for f in 0..FAMILY_NAMES.len() {
        for g in 0..GIVEN_MALE.len() {
            combos.push((f, true, g));
            combos.push((f, false, g));
        }
    }
    combos.shuffle(rng);
    let mut used_ids = HashSet::new();
    (0..n)
        .map(|i| {
            let (f, male, g) = combos[i % combos.len()];
            let givens = if male { &GIVEN_MALE } else { &GIVEN_FEMALE };
            let mut middle = givens[rng.gen_range(0..givens.len())];
            if middle == givens[g] {
                middle = givens[(g + 1) % givens.len()];
            }
            let mut hospitals: Vec<usize> = (0..HOSPITALS.len()).collect();
            hospitals.shuffle(rng);
            hospitals.truncate(if rng.gen_bool(0.5) { 2 } else { 1 });
            let ids = hospitals
                .into_iter()
                .map(|h| {
                    // Each hospital has its own MRN format, as real ones do.
                    let id = unique(rng, &mut used_ids, |r| match h {
                        0 => format!("{:08}", r.gen_range(0..100_000_000u32)),
                        1 => format!("MRN{:06}", r.gen_range(0..1_000_000u32)),
                        _ => format!(
                            "NK-{:05}-{}",
                            r.gen_range(0..100_000u32),
                            r.gen_range(0..10u32)
                        ),
                    });
                    (h, id)
                })
                .collect();
            Person {
                family: FAMILY_NAMES[f],
                given: givens[g],
                middle,
                sex: if male { "M" } else { "F" },
                birth: random_date(rng, (1930, 1, 1), (2012, 12, 31)),
                ids,
                body_scale: rng.gen_range(0.8..1.0),
            }
        })
        .collect()
}

/// Misspells a family name by swapping, dropping, doubling or replacing a letter.
fn misspell(rng: &mut StdRng, name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    loop {
        let mut c = chars.clone();
        let i = rng.gen_range(1..c.len());
        match rng.gen_range(0..4) {
            0 => c.swap(i - 1, i),
            1 if c.len() > 3 => {
                c.remove(i);
            }
            2 => c.insert(i, c[i]),
            _ => c[i] = ['a', 'e', 'i', 'o', 'u', 'y'][rng.gen_range(0..6)],
        }
        let s: String = c.into_iter().collect();
        if s != name {
            return s;
        }
    }
}

/// Applies one kind of demographic noise to (name, birth date) of a later study.
fn add_noise(rng: &mut StdRng, p: &Person) -> (String, (i64, u32, u32)) {
    let (y, m, d) = p.birth;
    let can_swap = d <= 12 && d != m;
    match rng.gen_range(0..3) {
        0 => (
            format!("{}^{}^{}", misspell(rng, p.family), p.given, p.middle),
            p.birth,
        ),
        2 if can_swap => (p.name(), (y, d, m)),
        _ => {
            if rng.gen_bool(0.5) {
                (p.name().to_uppercase(), p.birth)
            } else {
                (p.name().to_lowercase(), p.birth)
            }
        }
    }
}

fn validate(opts: &SynthOptions) -> io::Result<()> {
    if opts.studies > 0 && opts.patients == 0 {
        return Err(invalid("studies > 0 needs at least one patient"));
    }
    if opts.rows == 0 || opts.cols == 0 {
        return Err(invalid("rows and cols must be non-zero"));
    }
    Ok(())
}

/// Decides every instance of the workload (demographics, UIDs, dates, geometry,
/// pixel seeds) without rendering anything, in study/series/instance order.
///
/// Separate from rendering so callers can predict file contents, pick out single
/// instances for [`instance_bytes`], or parallelise rendering themselves.
pub fn plan(opts: &SynthOptions) -> io::Result<Vec<InstanceSpec>> {
    validate(opts)?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let people = make_people(&mut rng, opts.patients);

    // Each person's visits get chronologically ordered dates, so "later study"
    // (where noise may appear) also means later in time.
    let visit_dates: Vec<Vec<(i64, u32, u32)>> = (0..opts.patients)
        .map(|p| {
            let visits = if p < opts.studies {
                (opts.studies - p).div_ceil(opts.patients)
            } else {
                0
            };
            let mut dates: Vec<_> = (0..visits)
                .map(|_| random_date(&mut rng, (2015, 1, 1), (2026, 12, 31)))
                .collect();
            dates.sort();
            dates
        })
        .collect();

    let mut used_acc = HashSet::new();
    let mut out = Vec::with_capacity(opts.studies * opts.series_per_study * opts.slices);
    for s in 0..opts.studies {
        let pi = s % opts.patients;
        let visit = s / opts.patients;
        let person = &people[pi];
        let modality = opts.modality.unwrap_or_else(|| {
            if rng.gen_bool(0.5) {
                Modality::Ct
            } else {
                Modality::Mr
            }
        });
        let (hosp, patient_id) = if visit == 0 {
            person.ids[0].clone()
        } else {
            person.ids[rng.gen_range(0..person.ids.len())].clone()
        };
        let (name, birth) = if opts.noise && visit > 0 && rng.gen_bool(0.6) {
            add_noise(&mut rng, person)
        } else {
            (person.name(), person.birth)
        };
        let study_date = fmt_date(visit_dates[pi][visit]);
        let study_secs = rng.gen_range(7 * 3600..20 * 3600);
        let accession = unique(&mut rng, &mut used_acc, |r| {
            format!(
                "{}{:09}",
                &HOSPITALS[hosp].0[5..],
                r.gen_range(0..1_000_000_000u32)
            )
        });
        let study_id = rng.gen_range(1000..100_000u32).to_string();
        let (protocols, manufacturers): (&[Protocol], &[&str]) = match modality {
            Modality::Ct => (&CT_PROTOCOLS, &CT_MANUFACTURERS),
            Modality::Mr => (&MR_PROTOCOLS, &MR_MANUFACTURERS),
        };
        let protocol = protocols[rng.gen_range(0..protocols.len())];
        let manufacturer = manufacturers[rng.gen_range(0..manufacturers.len())];
        let physician = PHYSICIANS[rng.gen_range(0..PHYSICIANS.len())];
        let study_uid = new_uid(&mut rng);
        let for_uid = new_uid(&mut rng);
        let first_series = rng.gen_range(0..protocol.2.len());

        for k in 0..opts.series_per_study {
            let series_uid = new_uid(&mut rng);
            let (thickness, spacing, z0) = match modality {
                Modality::Ct => (
                    [0.625, 1.25, 2.5, 5.0][rng.gen_range(0..4)],
                    (rng.gen_range(0.6..0.98f64) * 1000.0).round() / 1000.0,
                    -(rng.gen_range(0..400) as f64) * 0.5,
                ),
                Modality::Mr => (
                    [3.0, 4.0, 5.0][rng.gen_range(0..3)],
                    (rng.gen_range(0.4..1.0f64) * 1000.0).round() / 1000.0,
                    -(rng.gen_range(0..200) as f64) * 0.5,
                ),
            };
            let phantom = Phantom {
                body_scale: person.body_scale,
                lesion_x: rng.gen_range(-0.4..0.4),
                lesion_y: rng.gen_range(-0.4..0.4),
                lesion_r: rng.gen_range(0.02..0.08),
                noise_seed: 0,
            };
            let series_description = protocol.2[(first_series + k) % protocol.2.len()].to_string();
            for i in 0..opts.slices {
                out.push(InstanceSpec {
                    patient_index: pi,
                    study_number: s + 1,
                    series_number: k + 1,
                    instance_number: i + 1,
                    modality,
                    patient_name: name.clone(),
                    patient_id: patient_id.clone(),
                    issuer_of_patient_id: HOSPITALS[hosp].0.to_string(),
                    patient_birth_date: fmt_date(birth),
                    patient_sex: person.sex.to_string(),
                    institution_name: HOSPITALS[hosp].1.to_string(),
                    manufacturer: manufacturer.to_string(),
                    referring_physician_name: physician.to_string(),
                    study_instance_uid: study_uid.clone(),
                    series_instance_uid: series_uid.clone(),
                    sop_instance_uid: new_uid(&mut rng),
                    frame_of_reference_uid: for_uid.clone(),
                    study_date: study_date.clone(),
                    study_time: fmt_time(study_secs),
                    series_time: fmt_time(study_secs + 300 * k as u32),
                    accession_number: accession.clone(),
                    study_id: study_id.clone(),
                    study_description: protocol.0.to_string(),
                    series_description: series_description.clone(),
                    body_part_examined: protocol.1.to_string(),
                    rows: opts.rows,
                    cols: opts.cols,
                    slices_in_series: opts.slices,
                    slice_thickness: thickness,
                    pixel_spacing: spacing,
                    z_position: z0 + i as f64 * thickness,
                    window: protocol.3,
                    phantom: Phantom {
                        noise_seed: rng.gen(),
                        ..phantom
                    },
                });
            }
        }
    }
    Ok(out)
}

/// Path of an instance relative to the output directory:
/// `<study n>/<series n>/<instance n>.dcm`, all 1-based.
pub fn relative_path(spec: &InstanceSpec) -> PathBuf {
    PathBuf::from(spec.study_number.to_string())
        .join(spec.series_number.to_string())
        .join(format!("{}.dcm", spec.instance_number))
}

/// Writes the studies as Part-10 files under `out`
/// (`out/<study n>/<series n>/<instance n>.dcm`, 1-based) and returns the paths
/// written, in study/series/instance order.
///
/// Files are rendered and written one at a time, so memory use stays at one
/// instance regardless of workload size.
pub fn generate(out: &Path, opts: &SynthOptions) -> io::Result<Vec<PathBuf>> {
    let specs = plan(opts)?;
    let mut paths = Vec::with_capacity(specs.len());
    let mut buf = Vec::new();
    for spec in &specs {
        let path = out.join(relative_path(spec));
        if spec.instance_number == 1 {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
        }
        buf.clear();
        build_object(spec)?
            .write_all(&mut buf)
            .map_err(io::Error::other)?;
        fs::write(&path, &buf)?;
        paths.push(path);
    }
    Ok(paths)
}

/// One instance as Part-10 bytes in memory (preamble, `DICM`, meta group, data
/// set), for tests that want bytes without files.
pub fn instance_bytes(spec: &InstanceSpec) -> Vec<u8> {
    let mut buf = Vec::new();
    build_object(spec)
        .and_then(|obj| obj.write_all(&mut buf).map_err(io::Error::other))
        .expect("encoding a well-formed synthetic instance into memory cannot fail");
    buf
}

/// What a measuring phantom shows, in modality values (HU for CT) on a flat background:
/// geometry and values known exactly, so a measuring tool's answer can be checked against the
/// truth. Positions are in image coordinates (PS3.3 C.18.6.1.1: the centre of pixel (c, r) is
/// at (c + 0.5, r + 0.5)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A disk of value `value` and radius `radius_mm` centred at `centre`: every pixel whose
    /// centre lies within the radius (in millimetres, by the instance's pixel spacing).
    Disk {
        centre: (f64, f64),
        radius_mm: f64,
        value: i32,
        background: i32,
    },
    /// Two markers of value `value`, each a 3×3 square centred on pixel `a` and pixel `b`
    /// (column, row): their centres are `a` and `b` plus one half.
    Markers {
        a: (u32, u32),
        b: (u32, u32),
        value: i32,
        background: i32,
    },
    /// Two balls in patient coordinates (mm, as Image Position (Patient) places the slices):
    /// every voxel whose centre lies within a ball's radius takes its value, the second ball's
    /// where they meet. A sphere for MPR's geometry and a bright point for its slabs.
    Balls { balls: [Ball; 2], background: i32 },
}

/// A ball of a [`Target::Balls`] phantom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    pub centre: [f64; 3],
    pub radius_mm: f64,
    pub value: i32,
}

impl InstanceSpec {
    /// The patient position (mm) of the centre of pixel (column, row) of this instance: its
    /// Image Position (Patient) is the first pixel's centre, rows along +x, columns along +y.
    pub fn patient_point(&self, column: u32, row: u32) -> [f64; 3] {
        let half_w = self.pixel_spacing * f64::from(self.cols) / 2.0;
        let half_h = self.pixel_spacing * f64::from(self.rows) / 2.0;
        [
            ds(-half_w).parse::<f64>().unwrap_or(-half_w) + f64::from(column) * self.pixel_spacing,
            ds(-half_h).parse::<f64>().unwrap_or(-half_h) + f64::from(row) * self.pixel_spacing,
            ds(self.z_position)
                .parse::<f64>()
                .unwrap_or(self.z_position),
        ]
    }
}

impl Target {
    /// The modality value of pixel (column, row) for an instance of `spec`.
    pub fn value_at(&self, spec: &InstanceSpec, column: u32, row: u32) -> i32 {
        let (x, y) = (f64::from(column) + 0.5, f64::from(row) + 0.5);
        match *self {
            Target::Disk {
                centre,
                radius_mm,
                value,
                background,
            } => {
                let d = (x - centre.0).hypot(y - centre.1) * spec.pixel_spacing;
                if d <= radius_mm {
                    value
                } else {
                    background
                }
            }
            Target::Markers {
                a,
                b,
                value,
                background,
            } => {
                let near = |p: (u32, u32)| column.abs_diff(p.0) <= 1 && row.abs_diff(p.1) <= 1;
                if near(a) || near(b) {
                    value
                } else {
                    background
                }
            }
            Target::Balls { balls, background } => {
                let p = spec.patient_point(column, row);
                let within = |b: &Ball| {
                    let d: f64 = (0..3).map(|i| (p[i] - b.centre[i]).powi(2)).sum();
                    d.sqrt() <= b.radius_mm
                };
                balls
                    .iter()
                    .rev()
                    .find(|b| within(b))
                    .map_or(background, |b| b.value)
            }
        }
    }
}

/// One instance of `spec` (its header as [`instance_bytes`] writes it) whose pixels show
/// `target` with no noise, as Part-10 bytes. CT pixels are stored as value + 1024 under the
/// header's Rescale Intercept of -1024; MR pixels as the value itself.
pub fn target_instance_bytes(spec: &InstanceSpec, target: &Target) -> io::Result<Vec<u8>> {
    let mut obj = build_object(spec)?;
    let offset = if spec.modality == Modality::Ct {
        1024
    } else {
        0
    };
    let mut pixels = Vec::with_capacity(spec.rows as usize * spec.cols as usize * 2);
    for row in 0..u32::from(spec.rows) {
        for column in 0..u32::from(spec.cols) {
            let stored = target.value_at(spec, column, row) + offset;
            let stored = i16::try_from(stored).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the value {stored} does not fit 16-bit signed pixels"),
                )
            })?;
            pixels.extend_from_slice(&stored.to_le_bytes());
        }
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(pixels),
    ));
    let mut buf = Vec::new();
    obj.write_all(&mut buf).map_err(io::Error::other)?;
    Ok(buf)
}

/// Puts text elements given as (tag, VR, value) rows; multi-valued attributes use
/// the DICOM `\` separator inside the value, exactly as they appear on the wire.
fn put_texts(obj: &mut InMemDicomObject, rows: &[(Tag, VR, &str)]) {
    for &(tag, vr, value) in rows {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
}

/// Puts the image pixel description shared by single- and multi-frame output.
fn put_pixel_module(obj: &mut InMemDicomObject, rows: u16, cols: u16, signed: bool) {
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("MONOCHROME2"),
    ));
    let us = [
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::ROWS, rows),
        (tags::COLUMNS, cols),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 16),
        (tags::HIGH_BIT, 15),
        (tags::PIXEL_REPRESENTATION, u16::from(signed)),
    ];
    for (tag, v) in us {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
}

fn with_meta(obj: InMemDicomObject) -> io::Result<FileDicomObject<InMemDicomObject>> {
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
    )
    .map_err(io::Error::other)
}

fn build_object(spec: &InstanceSpec) -> io::Result<FileDicomObject<InMemDicomObject>> {
    let ct = spec.modality == Modality::Ct;
    let half_w = spec.pixel_spacing * f64::from(spec.cols) / 2.0;
    let half_h = spec.pixel_spacing * f64::from(spec.rows) / 2.0;
    let position = format!("{}\\{}\\{}", ds(-half_w), ds(-half_h), ds(spec.z_position));
    let spacing = format!("{0}\\{0}", ds(spec.pixel_spacing));
    let z = ds(spec.z_position);
    let thickness = ds(spec.slice_thickness);
    let (center, width) = (ds(spec.window.0), ds(spec.window.1));
    let series_number = spec.series_number.to_string();
    let instance_number = spec.instance_number.to_string();
    let s = spec;
    let mut obj = InMemDicomObject::new_empty();
    put_texts(
        &mut obj,
        &[
            (tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            (tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
            (tags::SOP_CLASS_UID, VR::UI, s.modality.sop_class_uid()),
            (tags::SOP_INSTANCE_UID, VR::UI, &s.sop_instance_uid),
            (tags::STUDY_DATE, VR::DA, &s.study_date),
            (tags::SERIES_DATE, VR::DA, &s.study_date),
            (tags::CONTENT_DATE, VR::DA, &s.study_date),
            (tags::STUDY_TIME, VR::TM, &s.study_time),
            (tags::SERIES_TIME, VR::TM, &s.series_time),
            (tags::CONTENT_TIME, VR::TM, &s.series_time),
            (tags::ACCESSION_NUMBER, VR::SH, &s.accession_number),
            (tags::MODALITY, VR::CS, s.modality.code()),
            (tags::MANUFACTURER, VR::LO, &s.manufacturer),
            (tags::INSTITUTION_NAME, VR::LO, &s.institution_name),
            (
                tags::REFERRING_PHYSICIAN_NAME,
                VR::PN,
                &s.referring_physician_name,
            ),
            (tags::STUDY_DESCRIPTION, VR::LO, &s.study_description),
            (tags::SERIES_DESCRIPTION, VR::LO, &s.series_description),
            (tags::PATIENT_NAME, VR::PN, &s.patient_name),
            (tags::PATIENT_ID, VR::LO, &s.patient_id),
            (tags::ISSUER_OF_PATIENT_ID, VR::LO, &s.issuer_of_patient_id),
            (tags::PATIENT_BIRTH_DATE, VR::DA, &s.patient_birth_date),
            (tags::PATIENT_SEX, VR::CS, &s.patient_sex),
            (tags::BODY_PART_EXAMINED, VR::CS, &s.body_part_examined),
            (tags::SLICE_THICKNESS, VR::DS, &thickness),
            (tags::PATIENT_POSITION, VR::CS, "HFS"),
            (tags::STUDY_INSTANCE_UID, VR::UI, &s.study_instance_uid),
            (tags::SERIES_INSTANCE_UID, VR::UI, &s.series_instance_uid),
            (tags::STUDY_ID, VR::SH, &s.study_id),
            (tags::SERIES_NUMBER, VR::IS, &series_number),
            (tags::INSTANCE_NUMBER, VR::IS, &instance_number),
            (tags::IMAGE_POSITION_PATIENT, VR::DS, &position),
            (tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
            (
                tags::FRAME_OF_REFERENCE_UID,
                VR::UI,
                &s.frame_of_reference_uid,
            ),
            (tags::SLICE_LOCATION, VR::DS, &z),
            (tags::PIXEL_SPACING, VR::DS, &spacing),
            (tags::WINDOW_CENTER, VR::DS, &center),
            (tags::WINDOW_WIDTH, VR::DS, &width),
            (tags::RESCALE_SLOPE, VR::DS, "1"),
        ],
    );
    if ct {
        put_texts(
            &mut obj,
            &[
                (tags::KVP, VR::DS, "120"),
                (tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
                (tags::RESCALE_TYPE, VR::LO, "HU"),
            ],
        );
    } else {
        put_texts(
            &mut obj,
            &[
                (tags::MAGNETIC_FIELD_STRENGTH, VR::DS, "1.5"),
                (tags::RESCALE_INTERCEPT, VR::DS, "0"),
            ],
        );
    }
    put_pixel_module(&mut obj, s.rows, s.cols, ct);

    let t = if s.slices_in_series > 1 {
        (s.instance_number - 1) as f64 / (s.slices_in_series - 1) as f64
    } else {
        0.5
    };
    let mut pixels = Vec::new();
    render(&mut pixels, s.modality, s.rows, s.cols, t, &s.phantom);
    // U8 bytes under VR OW are written verbatim, which is much faster than a
    // U16 value (encoded one sample at a time) and identical on disk.
    let pixels = PrimitiveValue::from(pixels);
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, pixels));
    with_meta(obj)
}

/// xorshift64*: the pixel noise needs speed, not statistical quality, and StdRng
/// (ChaCha) per sample would dominate generation time.
struct FastRng(u64);

impl FastRng {
    fn new(seed: u64) -> Self {
        // splitmix64 scramble so that nearby seeds diverge, and never zero
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        FastRng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A slice being painted: samples as i32 so noise can be added before clamping.
struct Canvas {
    buf: Vec<i32>,
    w: usize,
    h: usize,
}

impl Canvas {
    /// Fills the pixels inside an axis-aligned ellipse (centre and radii in
    /// pixels) row span by row span, so cost is proportional to the area painted.
    fn ellipse(&mut self, cx: f64, cy: f64, rx: f64, ry: f64, v: i32) {
        if rx <= 0.5 || ry <= 0.5 {
            return;
        }
        let y0 = (cy - ry).floor().max(0.0) as usize;
        let y1 = ((cy + ry).ceil().max(0.0) as usize).min(self.h);
        for y in y0..y1 {
            let dy = (y as f64 + 0.5 - cy) / ry;
            let q = 1.0 - dy * dy;
            if q <= 0.0 {
                continue;
            }
            let half = rx * q.sqrt();
            let x0 = (cx - half).round().max(0.0) as usize;
            let x1 = ((cx + half).round().max(0.0) as usize).min(self.w);
            if x0 < x1 {
                self.buf[y * self.w + x0..y * self.w + x1].fill(v);
            }
        }
    }
}

/// Renders one slice at relative position `t` (0..=1 along the series) into
/// `out` as little-endian 16-bit samples (CT: HU + 1024, 0..=4095).
fn render(out: &mut Vec<u8>, modality: Modality, rows: u16, cols: u16, t: f64, p: &Phantom) {
    let (w, h) = (usize::from(cols), usize::from(rows));
    let (wf, hf) = (w as f64, h as f64);
    let (cx, cy) = (wf / 2.0, hf / 2.0);
    let mut c = Canvas {
        buf: vec![0; w * h],
        w,
        h,
    };
    let bulge = (std::f64::consts::PI * t).sin(); // 0 at the ends, 1 in the middle
    let s = p.body_scale * (0.8 + 0.2 * bulge);
    let lesion = p.lesion_r * wf * (1.0 - (t - 0.5).abs() * 3.0).max(0.0);
    let amplitude = match modality {
        Modality::Ct => {
            // HU + 1024: air 0, fat 924, soft tissue 1064, lung 174, bone 1724
            let (bx, by) = (0.45 * wf * s, 0.33 * hf * s);
            c.ellipse(cx, cy, bx, by, 924);
            c.ellipse(cx, cy, bx * 0.9, by * 0.88, 1064);
            let (lx, ly) = (
                0.14 * wf * s * (0.3 + 0.7 * bulge),
                0.22 * hf * s * (0.3 + 0.7 * bulge),
            );
            c.ellipse(cx - 0.2 * wf * s, cy - 0.03 * hf, lx, ly, 174);
            c.ellipse(cx + 0.2 * wf * s, cy - 0.03 * hf, lx, ly, 174);
            c.ellipse(
                cx + 0.04 * wf,
                cy + 0.02 * hf,
                0.09 * wf * s,
                0.1 * hf * s,
                1084,
            );
            let spine_y = cy + 0.22 * hf * s;
            c.ellipse(cx, spine_y, 0.045 * wf, 0.045 * wf, 1724);
            c.ellipse(cx, spine_y, 0.02 * wf, 0.02 * wf, 1054);
            c.ellipse(
                cx + p.lesion_x * bx,
                cy + p.lesion_y * by,
                lesion,
                lesion,
                1174,
            );
            12
        }
        Modality::Mr => {
            // Head-like: scalp/fat bright, skull dark, brain mid-grey, CSF bright.
            let (bx, by) = (0.38 * wf * s, 0.45 * hf * s);
            c.ellipse(cx, cy, bx, by, 1800);
            c.ellipse(cx, cy, bx * 0.94, by * 0.95, 150);
            c.ellipse(cx, cy, bx * 0.9, by * 0.91, 1100);
            c.ellipse(cx, cy, bx * 0.75, by * 0.78, 900);
            let (vx, vy) = (
                0.035 * wf * (0.2 + 0.8 * bulge),
                0.13 * hf * (0.2 + 0.8 * bulge),
            );
            c.ellipse(cx - 0.06 * wf, cy - 0.02 * hf, vx, vy, 2500);
            c.ellipse(cx + 0.06 * wf, cy - 0.02 * hf, vx, vy, 2500);
            c.ellipse(
                cx + p.lesion_x * bx,
                cy + p.lesion_y * by,
                lesion,
                lesion,
                2100,
            );
            24
        }
    };
    out.clear();
    out.reserve(w * h * 2);
    let mut rng = FastRng::new(p.noise_seed);
    for pair in c.buf.chunks(2) {
        let r = rng.next();
        for (k, &v) in pair.iter().enumerate() {
            let r = r >> (32 * k);
            // triangular noise in [-255, 255], scaled
            let n = (r & 0xFF) as i32 + ((r >> 8) & 0xFF) as i32 - 255;
            let v = (v + n * amplitude / 128).clamp(0, 4095) as u16;
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Writes a single multi-frame instance with `frames` frames of `rows`×`cols`
/// 16-bit pixels (pixel data of `rows*cols*2*frames` bytes), STREAMING: the header
/// goes through dicom-object, then the Pixel Data element header and the frames
/// are written frame by frame, so the pixel data is never held in memory. This is
/// how a 2 GiB instance is made for large-object tests.
///
/// The instance is Multi-frame Grayscale Word Secondary Capture (the classic CT/MR
/// IODs are single-frame), modality `OT`. Fails with `InvalidInput` if a dimension
/// is zero or the pixel data would not fit a defined 32-bit element length.
pub fn write_large_multiframe(
    path: &Path,
    seed: u64,
    rows: u16,
    cols: u16,
    frames: u32,
) -> io::Result<()> {
    if rows == 0 || cols == 0 || frames == 0 {
        return Err(invalid("rows, cols and frames must be non-zero"));
    }
    let frame_len = usize::from(rows) * usize::from(cols) * 2;
    let total = frame_len as u64 * u64::from(frames);
    if total >= 0xFFFF_FFFF {
        return Err(invalid(format!(
            "pixel data of {total} bytes does not fit a 32-bit element length"
        )));
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let person = make_people(&mut rng, 1)
        .pop()
        .expect("one person was requested");
    let (hosp, patient_id) = &person.ids[0];
    let date = fmt_date(random_date(&mut rng, (2015, 1, 1), (2026, 12, 31)));
    let time = fmt_time(rng.gen_range(7 * 3600..20 * 3600));
    let accession = format!("LG{:09}", rng.gen_range(0..1_000_000_000u32));
    let physician = PHYSICIANS[rng.gen_range(0..PHYSICIANS.len())];
    let (study_uid, series_uid, sop_uid) =
        (new_uid(&mut rng), new_uid(&mut rng), new_uid(&mut rng));
    let study_id = rng.gen_range(1000..100_000u32).to_string();
    let description = format!("{frames} FRAMES {rows}x{cols}");
    let (name, birth) = (person.name(), fmt_date(person.birth));
    let n_frames = frames.to_string();
    let mut obj = InMemDicomObject::new_empty();
    put_texts(
        &mut obj,
        &[
            (tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
            (tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"),
            (
                tags::SOP_CLASS_UID,
                VR::UI,
                uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
            ),
            (tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
            (tags::STUDY_DATE, VR::DA, &date),
            (tags::SERIES_DATE, VR::DA, &date),
            (tags::CONTENT_DATE, VR::DA, &date),
            (tags::STUDY_TIME, VR::TM, &time),
            (tags::SERIES_TIME, VR::TM, &time),
            (tags::CONTENT_TIME, VR::TM, &time),
            (tags::ACCESSION_NUMBER, VR::SH, &accession),
            (tags::MODALITY, VR::CS, "OT"),
            (tags::CONVERSION_TYPE, VR::CS, "WSD"),
            (tags::MANUFACTURER, VR::LO, "Strata"),
            (tags::INSTITUTION_NAME, VR::LO, HOSPITALS[*hosp].1),
            (tags::REFERRING_PHYSICIAN_NAME, VR::PN, physician),
            (
                tags::STUDY_DESCRIPTION,
                VR::LO,
                "SYNTHETIC LARGE MULTIFRAME",
            ),
            (tags::SERIES_DESCRIPTION, VR::LO, &description),
            (tags::PATIENT_NAME, VR::PN, &name),
            (tags::PATIENT_ID, VR::LO, patient_id),
            (tags::ISSUER_OF_PATIENT_ID, VR::LO, HOSPITALS[*hosp].0),
            (tags::PATIENT_BIRTH_DATE, VR::DA, &birth),
            (tags::PATIENT_SEX, VR::CS, person.sex),
            (tags::FRAME_TIME, VR::DS, "33.3"),
            (tags::STUDY_INSTANCE_UID, VR::UI, &study_uid),
            (tags::SERIES_INSTANCE_UID, VR::UI, &series_uid),
            (tags::STUDY_ID, VR::SH, &study_id),
            (tags::SERIES_NUMBER, VR::IS, "1"),
            (tags::INSTANCE_NUMBER, VR::IS, "1"),
            (tags::NUMBER_OF_FRAMES, VR::IS, &n_frames),
            (tags::WINDOW_CENTER, VR::DS, "1200"),
            (tags::WINDOW_WIDTH, VR::DS, "2400"),
        ],
    );
    // Multi-frame SC requires Frame Increment Pointer; frames are a time series.
    let pointer = PrimitiveValue::from(tags::FRAME_TIME);
    obj.put(DataElement::new(
        tags::FRAME_INCREMENT_POINTER,
        VR::AT,
        pointer,
    ));
    put_pixel_module(&mut obj, rows, cols, false);
    let phantom = Phantom {
        body_scale: person.body_scale,
        lesion_x: rng.gen_range(-0.4..0.4),
        lesion_y: rng.gen_range(-0.4..0.4),
        lesion_r: rng.gen_range(0.02..0.08),
        noise_seed: rng.gen(),
    };
    let header_obj = with_meta(obj)?;

    let mut header = Vec::new();
    header_obj
        .write_all(&mut header)
        .map_err(io::Error::other)?;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    w.write_all(&header)?;
    // Explicit VR LE long-form element header: tag, "OW", 2 reserved bytes, u32 length.
    w.write_all(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0])?;
    w.write_all(&(total as u32).to_le_bytes())?;
    let mut frame = Vec::with_capacity(frame_len);
    for f in 0..frames {
        let t = if frames > 1 {
            f64::from(f) / f64::from(frames - 1)
        } else {
            0.5
        };
        let p = Phantom {
            noise_seed: phantom.noise_seed.wrapping_add(u64::from(f)),
            ..phantom
        };
        render(&mut frame, Modality::Mr, rows, cols, t, &p);
        w.write_all(&frame)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::open_file;

    #[test]
    fn target_instances_hold_exactly_the_target() {
        let opts = SynthOptions {
            modality: Some(Modality::Ct),
            ..SynthOptions::default()
        };
        let spec = &plan(&opts).unwrap()[0];
        let disk = Target::Disk {
            centre: (32.0, 32.0),
            radius_mm: 10.0 * spec.pixel_spacing,
            value: 60,
            background: -1000,
        };
        let bytes = target_instance_bytes(spec, &disk).unwrap();
        let obj = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never)
            .from_reader(&bytes[128..])
            .unwrap();
        let raw = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        let stored = |c: usize, r: usize| {
            let i = 2 * (r * usize::from(spec.cols) + c);
            i16::from_le_bytes([raw[i], raw[i + 1]])
        };
        // stored = HU + 1024; the pixel centred 9.5 px from the centre is in, 10.5 px out
        assert_eq!(stored(32, 32), 60 + 1024);
        assert_eq!(stored(41, 31), 60 + 1024);
        assert_eq!(stored(42, 31), -1000 + 1024);
        let markers = Target::Markers {
            a: (10, 10),
            b: (20, 10),
            value: 1000,
            background: 0,
        };
        assert_eq!(markers.value_at(spec, 11, 9), 1000);
        assert_eq!(markers.value_at(spec, 12, 10), 0);
    }

    fn tmpdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("strata-synth-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn get_str(obj: &InMemDicomObject, tag: Tag) -> String {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string()
    }

    fn is_valid_uid(uid: &str) -> bool {
        uid.len() <= 64
            && uid.starts_with("2.25.")
            && uid.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            })
    }

    #[test]
    fn uids_are_valid_2_25() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let uid = new_uid(&mut rng);
            assert!(is_valid_uid(&uid), "{uid}");
        }
        assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
        assert!(!is_valid_uid("2.25.0123"));
    }

    #[test]
    fn dates_roundtrip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2026, 12, 31), (1930, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn generated_files_parse_with_expected_attributes() {
        let dir = tmpdir("parse");
        let opts = SynthOptions::default();
        let paths = generate(&dir, &opts).unwrap();
        let specs = plan(&opts).unwrap();
        assert_eq!(
            paths.len(),
            opts.studies * opts.series_per_study * opts.slices
        );
        assert_eq!(paths[0], dir.join("1").join("1").join("1.dcm"));
        let mut sop_uids = HashSet::new();
        let mut pixel_blobs = HashSet::new();
        let mut modalities = HashSet::new();
        for (path, spec) in paths.iter().zip(&specs) {
            let obj = open_file(path).unwrap();
            let meta = obj.meta();
            assert_eq!(
                meta.transfer_syntax().trim_end_matches('\0'),
                uids::EXPLICIT_VR_LITTLE_ENDIAN
            );
            assert_eq!(
                meta.media_storage_sop_instance_uid().trim_end_matches('\0'),
                spec.sop_instance_uid
            );
            assert_eq!(
                meta.media_storage_sop_class_uid().trim_end_matches('\0'),
                spec.modality.sop_class_uid()
            );
            assert_eq!(
                meta.implementation_class_uid().trim_end_matches('\0'),
                IMPLEMENTATION_CLASS_UID
            );
            for tag in [
                tags::SOP_INSTANCE_UID,
                tags::STUDY_INSTANCE_UID,
                tags::SERIES_INSTANCE_UID,
                tags::FRAME_OF_REFERENCE_UID,
            ] {
                let uid = get_str(&obj, tag).trim_end_matches('\0').to_string();
                assert!(is_valid_uid(&uid), "{tag}: {uid}");
            }
            assert_eq!(
                get_str(&obj, tags::SOP_INSTANCE_UID).trim_end_matches('\0'),
                spec.sop_instance_uid
            );
            assert_eq!(
                get_str(&obj, tags::STUDY_INSTANCE_UID).trim_end_matches('\0'),
                spec.study_instance_uid
            );
            assert_eq!(get_str(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 100");
            assert_eq!(get_str(&obj, tags::MODALITY), spec.modality.code());
            assert_eq!(get_str(&obj, tags::PATIENT_NAME), spec.patient_name);
            assert_eq!(spec.patient_name.split('^').count(), 3);
            assert_eq!(get_str(&obj, tags::PATIENT_ID), spec.patient_id);
            assert!(get_str(&obj, tags::ISSUER_OF_PATIENT_ID).starts_with("HOSP_"));
            assert_eq!(
                get_str(&obj, tags::PHOTOMETRIC_INTERPRETATION),
                "MONOCHROME2"
            );
            let date = get_str(&obj, tags::STUDY_DATE);
            assert!(("20150101".."20261232").contains(&date.as_str()), "{date}");
            assert_eq!(
                obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(),
                opts.rows
            );
            assert_eq!(
                obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
                opts.cols
            );
            assert_eq!(
                obj.element(tags::BITS_ALLOCATED)
                    .unwrap()
                    .to_int::<u16>()
                    .unwrap(),
                16
            );
            assert_eq!(
                obj.element(tags::INSTANCE_NUMBER)
                    .unwrap()
                    .to_int::<usize>()
                    .unwrap(),
                spec.instance_number
            );
            let pos = obj
                .element(tags::IMAGE_POSITION_PATIENT)
                .unwrap()
                .to_multi_float64()
                .unwrap();
            assert_eq!(pos.len(), 3);
            assert!((pos[2] - spec.z_position).abs() < 1e-6);
            let pix = obj.element(tags::PIXEL_DATA).unwrap();
            assert_eq!(pix.vr(), VR::OW);
            let bytes = pix.to_bytes().unwrap().into_owned();
            assert_eq!(
                bytes.len(),
                usize::from(opts.rows) * usize::from(opts.cols) * 2
            );
            if spec.modality == Modality::Ct {
                assert_eq!(
                    obj.element(tags::PIXEL_REPRESENTATION)
                        .unwrap()
                        .to_int::<u16>()
                        .unwrap(),
                    1
                );
                assert_eq!(
                    obj.element(tags::RESCALE_INTERCEPT)
                        .unwrap()
                        .to_float64()
                        .unwrap(),
                    -1024.0
                );
            }
            modalities.insert(spec.modality);
            assert!(
                sop_uids.insert(spec.sop_instance_uid.clone()),
                "duplicate SOP UID"
            );
            assert!(pixel_blobs.insert(bytes), "duplicate pixel data");
        }
        // z increases slice by slice within a series
        assert!(specs[1].z_position > specs[0].z_position);
        assert_eq!(specs[0].study_instance_uid, specs[1].study_instance_uid);
        assert_ne!(
            specs[0].study_instance_uid,
            specs[opts.slices].study_instance_uid
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_are_latin1_on_disk() {
        // Find a Latin-1 name and check it is encoded as ISO 8859-1, not UTF-8.
        let opts = SynthOptions {
            patients: 60,
            studies: 60,
            slices: 1,
            rows: 8,
            cols: 8,
            ..Default::default()
        };
        let spec = plan(&opts)
            .unwrap()
            .into_iter()
            .find(|s| s.patient_name.contains('ü') || s.patient_name.contains('ø'))
            .expect("some name with ü or ø among 60 people");
        let bytes = instance_bytes(&spec);
        let latin1: Vec<u8> = spec.patient_name.chars().map(|c| c as u32 as u8).collect();
        assert!(bytes.windows(latin1.len()).any(|w| w == latin1.as_slice()));
        assert!(!bytes
            .windows(spec.patient_name.len())
            .any(|w| w == spec.patient_name.as_bytes()));
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let opts = SynthOptions::default();
        let a = plan(&opts).unwrap();
        let b = plan(&opts).unwrap();
        assert_eq!(a, b);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(instance_bytes(x), instance_bytes(y));
        }
        let c = plan(&SynthOptions {
            seed: 2,
            ..opts.clone()
        })
        .unwrap();
        assert_ne!(instance_bytes(&a[0]), instance_bytes(&c[0]));

        let d1 = tmpdir("det1");
        let d2 = tmpdir("det2");
        let p1 = generate(&d1, &opts).unwrap();
        let p2 = generate(&d2, &opts).unwrap();
        for ((x, y), spec) in p1.iter().zip(&p2).zip(&a) {
            let bx = fs::read(x).unwrap();
            assert_eq!(bx, fs::read(y).unwrap());
            assert_eq!(bx, instance_bytes(spec));
        }
        fs::remove_dir_all(&d1).unwrap();
        fs::remove_dir_all(&d2).unwrap();
    }

    #[test]
    fn patients_reused_across_hospitals_with_noise() {
        let opts = SynthOptions {
            patients: 20,
            studies: 100,
            slices: 1,
            rows: 8,
            cols: 8,
            ..Default::default()
        };
        let specs = plan(&opts).unwrap();
        let people: HashSet<usize> = specs.iter().map(|s| s.patient_index).collect();
        assert_eq!(people.len(), 20);
        // PatientIDs are unique per (person, issuer)
        let mut id_owner = std::collections::HashMap::new();
        for s in &specs {
            let owner = id_owner
                .entry((s.issuer_of_patient_id.clone(), s.patient_id.clone()))
                .or_insert(s.patient_index);
            assert_eq!(*owner, s.patient_index);
        }
        let multi_hospital = (0..20).any(|p| {
            specs
                .iter()
                .filter(|s| s.patient_index == p)
                .map(|s| &s.issuer_of_patient_id)
                .collect::<HashSet<_>>()
                .len()
                > 1
        });
        assert!(multi_hospital, "someone should be seen at two hospitals");
        let variants = |specs: &[InstanceSpec]| {
            (0..20)
                .map(|p| {
                    specs
                        .iter()
                        .filter(|s| s.patient_index == p)
                        .map(|s| (s.patient_name.clone(), s.patient_birth_date.clone()))
                        .collect::<HashSet<_>>()
                        .len()
                })
                .sum::<usize>()
        };
        assert!(
            variants(&specs) > 20,
            "noise should produce demographic variants"
        );
        let clean = plan(&SynthOptions {
            noise: false,
            ..opts
        })
        .unwrap();
        assert_eq!(
            variants(&clean),
            20,
            "without noise each person has one name and birth date"
        );
        // a person's studies are in chronological order
        for p in 0..20 {
            let dates: Vec<_> = clean
                .iter()
                .filter(|s| s.patient_index == p)
                .map(|s| s.study_date.clone())
                .collect();
            assert!(dates.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn modality_option_is_respected() {
        for m in [Modality::Ct, Modality::Mr] {
            let specs = plan(&SynthOptions {
                modality: Some(m),
                studies: 6,
                ..Default::default()
            })
            .unwrap();
            assert!(specs.iter().all(|s| s.modality == m));
        }
        let mixed = plan(&SynthOptions {
            studies: 20,
            slices: 1,
            ..Default::default()
        })
        .unwrap();
        let kinds: HashSet<_> = mixed.iter().map(|s| s.modality).collect();
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn invalid_options_are_errors_not_panics() {
        let dir = tmpdir("invalid");
        let err = generate(
            &dir,
            &SynthOptions {
                patients: 0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(generate(
            &dir,
            &SynthOptions {
                rows: 0,
                ..Default::default()
            }
        )
        .is_err());
        // output under a regular file cannot be created
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(generate(&file, &SynthOptions::default()).is_err());
        assert!(write_large_multiframe(&dir.join("x.dcm"), 1, 0, 64, 10).is_err());
        let err = write_large_multiframe(&dir.join("x.dcm"), 1, 65535, 65535, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn large_multiframe_opens_with_right_frames_and_length() {
        let dir = tmpdir("large");
        let path = dir.join("large.dcm");
        write_large_multiframe(&path, 3, 64, 64, 10).unwrap();
        let obj = open_file(&path).unwrap();
        assert_eq!(
            obj.element(tags::NUMBER_OF_FRAMES)
                .unwrap()
                .to_int::<u32>()
                .unwrap(),
            10
        );
        assert_eq!(
            obj.meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0'),
            uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE
        );
        let pix = obj
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .into_owned();
        assert_eq!(pix.len(), 64 * 64 * 2 * 10);
        // frames differ from each other
        assert_ne!(pix[..8192], pix[8192..16384]);
        // the file ends exactly with the pixel data
        assert!(fs::read(&path).unwrap().ends_with(&pix));
        // deterministic
        let again = dir.join("again.dcm");
        write_large_multiframe(&again, 3, 64, 64, 10).unwrap();
        assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
