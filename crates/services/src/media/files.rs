//! A media ZIP of PS3.10 files made elsewhere — de-identified copies, which the index does not
//! hold — named and indexed as they arrive: each file goes out at once under its PS3.10 name,
//! its header's keys are kept for the DICOMDIR, and the DICOMDIR and README.TXT come last (a
//! ZIP's entries may come in any order). Only the tree of keys is held, never the files.

use super::streaming::{zip_stream, Entry};
use crate::ServiceError;
use dicom_dictionary_std::tags;
use futures::{Stream, StreamExt};
use std::sync::{Arc, Mutex};
use strata_dicom::attr::attr_text;
use strata_dicom::dicomdir::{DirInstance, DirPatient, DirSeries, DirStudy};

/// The DICOMDIR's tree as the files arrive, and the instances named so far.
#[derive(Default)]
struct Tree {
    patients: Vec<DirPatient>,
    /// Studies and series numbered across the file-set, as the stored export names them.
    studies: usize,
    series: usize,
    /// For each study and series met (by UID), its file-set number.
    numbers: std::collections::HashMap<String, usize>,
}

impl Tree {
    /// Files `part10` into the tree; returns its path in the ZIP.
    fn add(&mut self, part10: &[u8]) -> Result<String, ServiceError> {
        let obj = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .from_reader(std::io::Cursor::new(&part10[128..]))
            .map_err(|e| ServiceError::Invalid(format!("a file for the media: {e}")))?;
        let meta = obj.meta();
        let t = |tag| attr_text(&obj, tag);
        let (patient_id, study_uid, series_uid) = (
            t(tags::PATIENT_ID),
            t(tags::STUDY_INSTANCE_UID),
            t(tags::SERIES_INSTANCE_UID),
        );
        let p = match self.patients.iter().position(|p| p.id == patient_id) {
            Some(p) => p,
            None => {
                self.patients.push(DirPatient {
                    id: patient_id,
                    name: t(tags::PATIENT_NAME),
                    birth_date: t(tags::PATIENT_BIRTH_DATE),
                    sex: t(tags::PATIENT_SEX),
                    studies: Vec::new(),
                });
                self.patients.len() - 1
            }
        };
        let patient = &mut self.patients[p];
        let st = match patient.studies.iter().position(|s| s.uid == study_uid) {
            Some(s) => s,
            None => {
                self.studies += 1;
                self.numbers.insert(study_uid.clone(), self.studies);
                patient.studies.push(DirStudy {
                    uid: study_uid.clone(),
                    date: t(tags::STUDY_DATE),
                    time: t(tags::STUDY_TIME),
                    description: t(tags::STUDY_DESCRIPTION),
                    id: t(tags::STUDY_ID),
                    accession_number: t(tags::ACCESSION_NUMBER),
                    series: Vec::new(),
                });
                patient.studies.len() - 1
            }
        };
        let study = &mut patient.studies[st];
        let se = match study.series.iter().position(|s| s.uid == series_uid) {
            Some(s) => s,
            None => {
                self.series += 1;
                self.numbers.insert(series_uid.clone(), self.series);
                study.series.push(DirSeries {
                    uid: series_uid.clone(),
                    modality: t(tags::MODALITY),
                    number: t(tags::SERIES_NUMBER),
                    instances: Vec::new(),
                });
                study.series.len() - 1
            }
        };
        let series = &mut study.series[se];
        let file_id = vec![
            "DICOM".to_string(),
            format!("P{:07}", p + 1),
            format!("S{:07}", self.numbers[&study_uid]),
            format!("E{:07}", self.numbers[&series_uid]),
            format!("I{:07}", series.instances.len() + 1),
        ];
        let path = file_id.join("/");
        series.instances.push(DirInstance {
            file_id,
            sop_class_uid: meta
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .into(),
            sop_instance_uid: meta
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0')
                .into(),
            transfer_syntax: meta.transfer_syntax().trim_end_matches('\0').into(),
            number: t(tags::INSTANCE_NUMBER),
        });
        Ok(path)
    }

    fn instances(&self) -> usize {
        self.patients
            .iter()
            .flat_map(|p| &p.studies)
            .flat_map(|s| &s.series)
            .map(|s| s.instances.len())
            .sum()
    }
}

/// The ZIP of `files` (PS3.10 files, each whole) as chunks of bytes: the files under DICOM/,
/// then DICOMDIR, then README.TXT saying what `what` is. A file that is not PS3.10 ends the
/// stream with that error.
pub fn files_zip<S>(
    files: S,
    what: &str,
) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static
where
    S: Stream<Item = Vec<u8>> + Send + Unpin + 'static,
{
    let now = chrono::Utc::now();
    let tree: Arc<Mutex<Tree>> = Arc::default();
    let filed = tree.clone();
    let body = files.map(move |part10| {
        if part10.len() < 132 || &part10[128..132] != b"DICM" {
            return Err(ServiceError::Invalid(
                "a file for the media is not PS3.10".into(),
            ));
        }
        let path = filed
            .lock()
            .map_err(|_| ServiceError::Setup("the media's tree is poisoned".into()))?
            .add(&part10)?;
        Ok(Entry::bytes(path, part10))
    });
    let what = what.to_string();
    let tail = futures::stream::once(async move {
        let tree = tree
            .lock()
            .map_err(|_| ServiceError::Setup("the media's tree is poisoned".into()))?;
        let dicomdir = strata_dicom::dicomdir::write("STRATA", &super::new_uid(), &tree.patients)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let readme = format!(
            "MEDICAL IMAGES\r\n==============\r\n\r\n{what}\r\nMade on {} (UTC): {} patient(s), {} \
             DICOM file(s).\r\n\r\nFor a DICOM viewer or another archive, open the file DICOMDIR: it \
             indexes the DICOM files\r\nunder DICOM/ (DICOM PS3.10 media, General Purpose profile).\r\n",
            now.format("%Y-%m-%d %H:%M"),
            tree.patients.len(),
            tree.instances()
        );
        Ok::<_, ServiceError>(vec![
            Ok(Entry::bytes("DICOMDIR", dicomdir)),
            Ok(Entry::bytes("README.TXT", readme.into_bytes())),
        ])
    })
    .flat_map(|r| match r {
        Ok(entries) => futures::stream::iter(entries).left_stream(),
        Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
    });
    zip_stream(body.chain(tail).boxed(), now.naive_utc())
}
