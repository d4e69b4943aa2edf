//! What the index keeps of one instance, read from its header: the patient (with its local key),
//! study, series and instance attributes. [`crate::inspect`] makes it; the index stores it.

use strata_core::BlobId;
use strata_mpi::{IssuerSource, LocalKey};

/// Patient-level attributes as received. The local patient key is (patient_id, issuer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientRecord {
    pub patient_id: String,
    pub issuer: String,
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// PatientAddress and PatientTelephoneNumbers: matching evidence when present.
    pub address: Option<String>,
    pub phone: Option<String>,
    /// OtherPatientIDsSequence: keys the sender says are this same patient.
    pub other_ids: Vec<LocalKey>,
    /// The source that named the issuers of these keys, when its rule gave other keys than
    /// the file alone gives ([`IssuerSource::operator`]): it must be kept with the instance,
    /// so a rebuild from the blob reads the same keys.
    pub issuer_source: Option<IssuerSource>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyRecord {
    pub uid: String,
    pub date: Option<String>,
    pub time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub description: Option<String>,
    pub referring_physician: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesRecord {
    pub uid: String,
    pub modality: Option<String>,
    pub number: Option<i64>,
    pub description: Option<String>,
    pub body_part: Option<String>,
    pub date: Option<String>,
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub number: Option<i64>,
    pub blob_id: BlobId,
    pub transfer_syntax: String,
    pub size: u64,
    pub frames: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub content_date: Option<String>,
    pub content_time: Option<String>,
    /// DICOM JSON (PS3.18 F) of everything but the pixel data.
    pub metadata: String,
    pub source: String,
    pub received_at: i64,
}

/// Everything ingest learned about one instance, as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub patient: PatientRecord,
    pub study: StudyRecord,
    pub series: SeriesRecord,
    pub instance: InstanceRow,
}

impl PatientRecord {
    /// The demographics the MPI matches on.
    pub fn identity(&self) -> strata_mpi::Identity {
        let mut i = strata_mpi::Identity::from_dicom(
            &self.issuer,
            &self.patient_id,
            self.name.as_deref().unwrap_or(""),
            self.birth_date.as_deref().unwrap_or(""),
            self.sex.as_deref().unwrap_or(""),
        );
        if let Some(address) = &self.address {
            // PatientAddress is free text: "street, city, postcode" is the common shape.
            let mut parts = address.split(['^', ',']).map(str::trim);
            i.street = parts.next().unwrap_or("").to_string();
            i.city = parts.next().unwrap_or("").to_string();
            i.postcode = parts.next().unwrap_or("").to_string();
        }
        i.phone = self.phone.clone().unwrap_or_default();
        i
    }
}
