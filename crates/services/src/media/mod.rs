//! Media export (PS3.10, PS3.11 General Purpose media, IHE PDI): studies as one ZIP that any
//! DICOM viewer opens and anyone can look at:
//!
//! - `README.TXT`: what the archive holds and how to open it;
//! - `DICOMDIR`: the PS3.10 directory of every instance (PATIENT, STUDY, SERIES, IMAGE records),
//!   built from the index's rows before any instance is read;
//! - `DICOM/Pnnnnnnn/Snnnnnnn/Ennnnnnn/Innnnnnn`: each instance byte for byte as stored, read
//!   from the store as a retrieve reads it (verified, decrypted, bad copies queued for repair);
//! - `IHE_PDI/Ennnnnnn.JPG`: one rendered picture of each series (its middle image), and
//!   `INDEX.HTM`, a page listing the studies with those pictures, last, since it says which
//!   pictures could be made.
//!
//! The ZIP is streamed as it is built ([`streaming::zip_stream`]): a few instances are read ahead on
//! their own tasks, so reading, decrypting and sending overlap; nothing is staged whole.
//! Which studies a caller may export, and the audit of it, is the doors' part; here a scope
//! limits every read of the index as everywhere else.

pub mod files;
pub mod openpgp;
pub mod streaming;

use crate::pictures::Pictures;
use crate::reads::Reads;
use crate::ServiceError;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use strata_core::BlobId;
use strata_dicom::dicomdir::{DirInstance, DirPatient, DirSeries, DirStudy};
use strata_index::{Index, InstanceRef, Scope};
use strata_render::picture::PictureFormat;
use strata_render::{Priority, View};
use streaming::{zip_stream, Entry, Source};

/// Instances read ahead of the one being sent, each on its own task: enough to keep both
/// cores decrypting while the ZIP is written, few enough that memory stays a few windows.
const READ_AHEAD: usize = 4;
/// The box a series' picture fits in: large enough to see, small enough to render fast.
const PICTURE_BOX: u32 = 512;
/// JPEG quality of the pictures: they are for looking, not for diagnosis.
const PICTURE_QUALITY: u8 = 90;
/// The picture of a series that could not be rendered has no file; the page says so.
type Missing = Arc<Mutex<HashSet<String>>>;

#[derive(Clone)]
pub struct Media {
    reads: Reads,
    pictures: Pictures,
    index: Index,
}

/// What was asked to be exported, found in the index, ready to be streamed.
pub struct Export {
    plan: Plan,
    /// Studies and instances in it, for the caller's audit and answer.
    pub studies: Vec<ExportedStudy>,
    pub instances: usize,
    /// Bytes of the stored instances together (the ZIP is a little larger).
    pub bytes: u64,
}

/// A study in an export: what an audit event names.
#[derive(Debug, Clone)]
pub struct ExportedStudy {
    pub patient_id: String,
    pub study_uid: String,
    pub instances: usize,
}

impl Media {
    pub fn new(reads: Reads, pictures: Pictures, index: Index) -> Media {
        Media {
            reads,
            pictures,
            index,
        }
    }

    /// The studies `uids`, each whole, within `scope`: [`ServiceError::NotInScope`] when any of
    /// them has nothing the scope may see (the same answer as for a study not here).
    pub async fn studies(&self, uids: &[String], scope: Scope) -> Result<Export, ServiceError> {
        let mut seen = HashSet::new();
        let mut refs = Vec::new();
        for uid in uids.iter().filter(|u| seen.insert(u.as_str())) {
            let found = self
                .index
                .instances_under(uid.clone(), None, None, scope)
                .await?;
            if found.is_empty() {
                return Err(ServiceError::NotInScope);
            }
            refs.extend(found);
        }
        if refs.is_empty() {
            return Err(ServiceError::Invalid("name at least one study".into()));
        }
        Ok(Export::plan(refs))
    }

    /// One series of a study, within `scope`.
    pub async fn series(
        &self,
        study: &str,
        series: &str,
        scope: Scope,
    ) -> Result<Export, ServiceError> {
        let refs = self.reads.resolve(study, Some(series), None, scope).await?;
        Ok(Export::plan(refs))
    }

    /// Every study of the person `person` (an MPI person id) the scope may see.
    pub async fn person(&self, person: &str, scope: Scope) -> Result<Export, ServiceError> {
        let view = self
            .index
            .person(person.to_string(), scope)
            .await?
            .ok_or(ServiceError::NotInScope)?;
        let uids: Vec<String> = view.studies.into_iter().map(|s| s.study_uid).collect();
        if uids.is_empty() {
            return Err(ServiceError::NotInScope);
        }
        self.studies(&uids, scope).await
    }

    /// The export as ZIP bytes, streamed as they are made. `source` names the archive in
    /// README.TXT and INDEX.HTM (its public URL, or its host).
    pub fn zip(
        &self,
        export: Export,
        source: &str,
    ) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
        let now = chrono::Utc::now();
        let plan = export.plan;
        let readme = readme(&plan, source, &now);
        let dicomdir = strata_dicom::dicomdir::write("STRATA", &new_uid(), &plan.dir)
            .map_err(|e| ServiceError::Invalid(e.to_string()));
        let missing: Missing = Arc::default();
        let head = futures::stream::iter([
            Ok(Entry::bytes("README.TXT", readme)),
            dicomdir.map(|d| Entry::bytes("DICOMDIR", d)),
        ]);
        let (media, miss) = (self.clone(), missing.clone());
        let body = futures::stream::iter(plan.jobs.clone())
            .map(move |job| tokio::spawn(media.clone().run(job, miss.clone())))
            .buffered(READ_AHEAD)
            .filter_map(|done| async move {
                match done {
                    Ok(entry) => entry.transpose(),
                    Err(e) => Some(Err(ServiceError::Setup(format!("an export task: {e}")))),
                }
            });
        let source = source.to_string();
        let page = futures::stream::once(async move {
            let missing = missing.lock().map(|m| m.clone()).unwrap_or_default();
            Ok(Entry::bytes(
                "INDEX.HTM",
                index_page(&plan, &source, &now, &missing),
            ))
        });
        zip_stream(head.chain(body).chain(page).boxed(), now.naive_utc())
    }

    /// One job's entry: an instance (its first window read before this returns, so a read
    /// failure is found here), or a series' picture (None when it cannot be rendered).
    async fn run(self, job: Job, missing: Missing) -> Result<Option<Entry>, ServiceError> {
        match job {
            Job::Instance { path, blob, size } => {
                let windows = self.reads.windows(&blob, 0..size).await?;
                Ok(Some(Entry {
                    path,
                    source: Source::Stored(Box::new(windows)),
                }))
            }
            Job::Picture {
                path,
                sop_uid,
                frame,
                viewport,
            } => {
                let view = View {
                    viewport: Some(viewport),
                    ..View::default()
                };
                let format = PictureFormat::Jpeg(PICTURE_QUALITY);
                match self
                    .pictures
                    .picture(&sop_uid, frame, view, Priority::Http, format)
                    .await
                {
                    Ok(jpeg) => Ok(Some(Entry::bytes(path, jpeg))),
                    Err(e) => {
                        tracing::warn!(sop_uid, "media export: no picture of the series: {e}");
                        if let Ok(mut m) = missing.lock() {
                            m.insert(path);
                        }
                        Ok(None)
                    }
                }
            }
        }
    }
}

/// What the ZIP will hold, decided from the index's rows alone.
struct Plan {
    dir: Vec<DirPatient>,
    /// Per series, what the page shows of it, in the DICOMDIR's order.
    pages: Vec<PageStudy>,
    jobs: Vec<Job>,
}

#[derive(Clone)]
enum Job {
    Instance {
        path: String,
        blob: BlobId,
        size: u64,
    },
    Picture {
        path: String,
        sop_uid: String,
        frame: u32,
        viewport: (u32, u32),
    },
}

/// What the plan keeps of an instance's metadata.
struct Kept {
    number: String,
    /// Columns and rows; None without pixels.
    size: Option<(u32, u32)>,
    frames: u32,
}

/// A study as INDEX.HTM shows it.
struct PageStudy {
    patient: usize,
    study: usize,
    series: Vec<PageSeries>,
}

struct PageSeries {
    description: String,
    images: usize,
    picture: Option<String>,
}

impl Export {
    /// Groups the rows by patient, study and series (in the order first met, which is the
    /// index's series and instance order) and names every file.
    fn plan(refs: Vec<InstanceRef>) -> Export {
        let mut dir: Vec<DirPatient> = Vec::new();
        let mut pages: Vec<PageStudy> = Vec::new();
        // by study, series, instance: the row (its metadata dropped) and what is kept of it
        let mut metas: Vec<Vec<Vec<(InstanceRef, Kept)>>> = Vec::new();
        let bytes = refs.iter().map(|r| r.size).sum();
        let instances = refs.len();
        for mut r in refs {
            let meta: Value = serde_json::from_str(&r.metadata).unwrap_or(Value::Null);
            // a large study's rows: their JSON is not kept past this one
            r.metadata = String::new();
            let p = match dir.iter().position(|p| p.id == r.patient_id) {
                Some(p) => p,
                None => {
                    dir.push(DirPatient {
                        id: r.patient_id.clone(),
                        name: text(&meta, "00100010"),
                        birth_date: text(&meta, "00100030"),
                        sex: text(&meta, "00100040"),
                        studies: Vec::new(),
                    });
                    dir.len() - 1
                }
            };
            let s = match pages
                .iter()
                .position(|s| dir[s.patient].studies[s.study].uid == r.study_uid)
            {
                Some(s) => s,
                None => {
                    dir[p].studies.push(DirStudy {
                        uid: r.study_uid.clone(),
                        date: text(&meta, "00080020"),
                        time: text(&meta, "00080030"),
                        description: text(&meta, "00081030"),
                        id: text(&meta, "00200010"),
                        accession_number: text(&meta, "00080050"),
                        series: Vec::new(),
                    });
                    pages.push(PageStudy {
                        patient: p,
                        study: dir[p].studies.len() - 1,
                        series: Vec::new(),
                    });
                    metas.push(Vec::new());
                    pages.len() - 1
                }
            };
            let (pp, ps) = (pages[s].patient, pages[s].study);
            let study = &mut dir[pp].studies[ps];
            let e = match study.series.iter().position(|e| e.uid == r.series_uid) {
                Some(e) => e,
                None => {
                    study.series.push(DirSeries {
                        uid: r.series_uid.clone(),
                        modality: text(&meta, "00080060"),
                        number: text(&meta, "00200011"),
                        instances: Vec::new(),
                    });
                    pages[s].series.push(PageSeries {
                        description: text(&meta, "0008103E"),
                        images: 0,
                        picture: None,
                    });
                    metas[s].push(Vec::new());
                    study.series.len() - 1
                }
            };
            let kept = Kept {
                number: text(&meta, "00200013"),
                size: image_size(&meta),
                frames: number(&meta, "00280008").unwrap_or(1).max(1),
            };
            metas[s][e].push((r, kept));
        }
        // names, jobs and the DICOMDIR's instances, in the DICOMDIR's order
        let mut jobs = Vec::with_capacity(instances + metas.len());
        let (mut study_n, mut series_n) = (0, 0);
        for (p, patient) in dir.iter_mut().enumerate() {
            for (st, study) in patient.studies.iter_mut().enumerate() {
                study_n += 1;
                let s = pages
                    .iter()
                    .position(|x| x.patient == p && x.study == st)
                    .unwrap_or_default();
                for (e, series) in study.series.iter_mut().enumerate() {
                    series_n += 1;
                    let members = std::mem::take(&mut metas[s][e]);
                    let folder = [
                        "DICOM".to_string(),
                        format!("P{:07}", p + 1),
                        format!("S{study_n:07}"),
                        format!("E{series_n:07}"),
                    ];
                    let images: Vec<usize> = (0..members.len())
                        .filter(|&i| members[i].1.size.is_some())
                        .collect();
                    for (i, (r, kept)) in members.iter().enumerate() {
                        let mut file_id = folder.to_vec();
                        file_id.push(format!("I{:07}", i + 1));
                        jobs.push(Job::Instance {
                            path: file_id.join("/"),
                            blob: r.blob_id,
                            size: r.size,
                        });
                        series.instances.push(DirInstance {
                            file_id,
                            sop_class_uid: r.sop_class_uid.clone(),
                            sop_instance_uid: r.sop_uid.clone(),
                            transfer_syntax: r.transfer_syntax.clone(),
                            number: kept.number.clone(),
                        });
                    }
                    let page = &mut pages[s].series[e];
                    page.images = members.len();
                    if let Some(&middle) = images.get(images.len() / 2) {
                        let (r, kept) = &members[middle];
                        let path = format!("IHE_PDI/E{series_n:07}.JPG");
                        let (columns, rows) = kept.size.unwrap_or((1, 1));
                        let frames = kept.frames;
                        jobs.push(Job::Picture {
                            path: path.clone(),
                            sop_uid: r.sop_uid.clone(),
                            frame: frames / 2,
                            viewport: fitted(columns, rows),
                        });
                        page.picture = Some(path);
                    }
                }
            }
        }
        // the pages in the DICOMDIR's order too
        pages.sort_by_key(|s| (s.patient, s.study));
        let studies = pages
            .iter()
            .map(|s| {
                let study = &dir[s.patient].studies[s.study];
                ExportedStudy {
                    patient_id: dir[s.patient].id.clone(),
                    study_uid: study.uid.clone(),
                    instances: study.series.iter().map(|e| e.instances.len()).sum(),
                }
            })
            .collect();
        Export {
            plan: Plan { dir, pages, jobs },
            studies,
            instances,
            bytes,
        }
    }
}

/// A picture's size: the image fitted in [`PICTURE_BOX`], keeping its aspect (a small image
/// is enlarged, so that a page of thumbnails-sized scans is still a page one can see).
fn fitted(columns: u32, rows: u32) -> (u32, u32) {
    let (c, r) = (f64::from(columns.max(1)), f64::from(rows.max(1)));
    let scale = (f64::from(PICTURE_BOX) / c).min(f64::from(PICTURE_BOX) / r);
    let side = |v: f64| ((v * scale).round() as u32).max(1);
    (side(c), side(r))
}

/// The first value of an attribute in an instance's DICOM JSON, as text (a person name as
/// its alphabetic, ideographic and phonetic groups joined by `=`); empty when absent.
fn text(meta: &Value, tag: &str) -> String {
    match &meta[tag]["Value"][0] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(pn) => {
            let groups: Vec<&str> = ["Alphabetic", "Ideographic", "Phonetic"]
                .iter()
                .map(|g| pn.get(*g).and_then(Value::as_str).unwrap_or(""))
                .collect();
            groups.join("=").trim_end_matches('=').to_string()
        }
        _ => String::new(),
    }
}

fn number(meta: &Value, tag: &str) -> Option<u32> {
    text(meta, tag).trim().parse().ok()
}

/// Columns and rows of an instance holding an image; None for one without pixels.
fn image_size(meta: &Value) -> Option<(u32, u32)> {
    Some((number(meta, "00280011")?, number(meta, "00280010")?))
}

/// A new UID under `2.25` (PS3.5 B.2: a UUID as a decimal integer).
fn new_uid() -> String {
    format!("2.25.{}", u128::from_be_bytes(rand::random::<[u8; 16]>()))
}

/// A DA value as a reader expects a date: `2024-01-02`.
fn date(da: &str) -> String {
    match da.len() {
        8 if da.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}-{}-{}", &da[..4], &da[4..6], &da[6..])
        }
        _ => da.to_string(),
    }
}

/// A person name as a reader expects it: `Jane Doe` for `Doe^Jane`.
fn person_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or("");
    let mut parts = alphabetic.split('^').map(str::trim);
    let family = parts.next().unwrap_or("");
    let given = parts.next().unwrap_or("");
    match (given.is_empty(), family.is_empty()) {
        (true, true) => "(no name)".into(),
        (true, false) => family.into(),
        (false, true) => given.into(),
        (false, false) => format!("{given} {family}"),
    }
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn readme(plan: &Plan, source: &str, now: &chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let instances: usize = plan
        .jobs
        .iter()
        .filter(|j| matches!(j, Job::Instance { .. }))
        .count();
    let mut t = String::new();
    t.push_str("MEDICAL IMAGES\r\n==============\r\n\r\n");
    t.push_str(&format!(
        "Exported by the Strata archive at {source} on {} (UTC):\r\n{} patient(s), {} study(ies), {} DICOM file(s).\r\n\r\n",
        now.format("%Y-%m-%d %H:%M"),
        plan.dir.len(),
        plan.pages.len(),
        instances
    ));
    t.push_str(
        "To look at the images without special software, open INDEX.HTM in a web browser:\r\n\
         it lists the studies with one picture of each series. The pictures are for looking\r\n\
         only, not for diagnosis.\r\n\r\n\
         For a DICOM viewer or another archive, open the file DICOMDIR: it indexes the\r\n\
         original DICOM files under DICOM/ (DICOM PS3.10 media, General Purpose profile).\r\n\
         The DICOM files are exactly as the archive stored them.\r\n\r\n\
         Contents:\r\n\
         \x20 README.TXT   this file\r\n\
         \x20 INDEX.HTM    the studies, with a picture of each series\r\n\
         \x20 DICOMDIR     the directory of the DICOM files\r\n\
         \x20 DICOM/       the DICOM files: patient, study, series, image\r\n\
         \x20 IHE_PDI/     the pictures INDEX.HTM shows\r\n\r\n\
         These are medical records: keep them private.\r\n",
    );
    t.into_bytes()
}

fn index_page(
    plan: &Plan,
    source: &str,
    now: &chrono::DateTime<chrono::Utc>,
    missing: &HashSet<String>,
) -> Vec<u8> {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Medical images</title>\n<style>\n\
         body{font-family:sans-serif;margin:2em;max-width:70em}\n\
         ul.series{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1em}\n\
         figure{margin:0;background:#000;color:#eee;padding:.5em}\n\
         figure img{display:block;max-width:256px;max-height:256px}\n\
         figcaption{font-size:.85em;max-width:256px}\n</style>\n</head>\n<body>\n\
         <h1>Medical images</h1>\n",
    );
    h.push_str(&format!(
        "<p>Exported by the Strata archive at {} on {} (UTC). The original DICOM files are \
         in the folder DICOM, listed in the file DICOMDIR, for a DICOM viewer; the pictures \
         here are for looking only, not for diagnosis.</p>\n",
        html(source),
        now.format("%Y-%m-%d %H:%M")
    ));
    for (p, patient) in plan.dir.iter().enumerate() {
        h.push_str(&format!(
            "<section class=\"patient\">\n<h2>{} <small>(ID {}{})</small></h2>\n",
            html(&person_name(&patient.name)),
            html(&patient.id),
            match patient.birth_date.is_empty() {
                true => String::new(),
                false => format!(", born {}", html(&date(&patient.birth_date))),
            }
        ));
        for page in plan.pages.iter().filter(|s| s.patient == p) {
            let study = &patient.studies[page.study];
            let modalities: Vec<&str> = study
                .series
                .iter()
                .map(|s| s.modality.as_str())
                .filter(|m| !m.is_empty())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            h.push_str(&format!(
                "<section class=\"study\">\n<h3>{} {} <small>{}</small></h3>\n<p>Accession number {}; study UID {}</p>\n<ul class=\"series\">\n",
                html(&date(&study.date)),
                html(if study.description.is_empty() { "(no description)" } else { &study.description }),
                html(&modalities.join(", ")),
                html(if study.accession_number.is_empty() { "none" } else { &study.accession_number }),
                html(&study.uid),
            ));
            for (series, shown) in study.series.iter().zip(&page.series) {
                let caption = format!(
                    "Series {} {} {}: {} file(s)",
                    html(&series.number),
                    html(&series.modality),
                    html(&shown.description),
                    shown.images
                );
                let picture = match &shown.picture {
                    Some(path) if !missing.contains(path) => format!(
                        "<img src=\"{}\" alt=\"{}\">",
                        html(path),
                        html(&format!("series {} picture", series.number))
                    ),
                    _ => "<p>(no picture)</p>".to_string(),
                };
                h.push_str(&format!(
                    "<li><figure>{picture}<figcaption>{caption}</figcaption></figure></li>\n"
                ));
            }
            h.push_str("</ul>\n</section>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(patient: &str, study: &str, series: &str, sop: &str, number: u32) -> InstanceRef {
        InstanceRef {
            patient_id: patient.into(),
            study_uid: study.into(),
            series_uid: series.into(),
            sop_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            blob_id: BlobId::from_bytes([number as u8; 32]),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size: 100,
            metadata: serde_json::json!({
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
                "00080060": {"vr": "CS", "Value": ["CT"]},
                "00200013": {"vr": "IS", "Value": [number]},
                "00280010": {"vr": "US", "Value": [512]},
                "00280011": {"vr": "US", "Value": [1024]},
            })
            .to_string(),
        }
    }

    /// Rows are grouped by patient, study and series whatever their order; files are named
    /// after PS3.10, each series gets a picture of its middle image, fitted in the box.
    #[test]
    fn a_plan_groups_names_and_pictures() {
        let refs = vec![
            row("A", "1.1", "1.1.1", "9.1", 1),
            row("B", "2.1", "2.1.1", "9.2", 1),
            row("A", "1.1", "1.1.2", "9.3", 1),
            row("A", "1.1", "1.1.1", "9.4", 2),
            row("A", "1.1", "1.1.1", "9.5", 3),
        ];
        let export = Export::plan(refs);
        let plan = &export.plan;
        assert_eq!(export.instances, 5);
        assert_eq!(plan.dir.len(), 2);
        assert_eq!(plan.dir[0].studies[0].series.len(), 2);
        let first = &plan.dir[0].studies[0].series[0].instances;
        assert_eq!(first.len(), 3);
        assert_eq!(
            first[2].file_id.join("/"),
            "DICOM/P0000001/S0000001/E0000001/I0000003"
        );
        assert_eq!(
            plan.dir[1].studies[0].series[0].instances[0].file_id[3],
            "E0000003"
        );
        let pictures: Vec<_> = plan
            .jobs
            .iter()
            .filter_map(|j| match j {
                Job::Picture {
                    sop_uid, viewport, ..
                } => Some((sop_uid.as_str(), *viewport)),
                _ => None,
            })
            .collect();
        assert_eq!(
            pictures,
            [
                ("9.4", (512, 256)),
                ("9.3", (512, 256)),
                ("9.2", (512, 256))
            ]
        );
        let page = String::from_utf8(index_page(
            plan,
            "here",
            &chrono::Utc::now(),
            &HashSet::new(),
        ))
        .unwrap();
        assert_eq!(page.matches("<img ").count(), 3);
        assert!(page.contains("Jane Doe"));
        let missing = HashSet::from(["IHE_PDI/E0000002.JPG".to_string()]);
        let page =
            String::from_utf8(index_page(plan, "here", &chrono::Utc::now(), &missing)).unwrap();
        assert_eq!(page.matches("<img ").count(), 2);
        assert_eq!(export.studies.len(), 2);
        assert_eq!(export.studies[0].instances, 4);
    }
}
