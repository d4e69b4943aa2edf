//! What Strata knows of DICOM itself (layer 0), on top of dicom-rs, and nothing of storage,
//! networks or people:
//!
//! - [`inspect`]: one Part-10 instance read and validated into the [`record::InstanceRecord`]
//!   the index keeps (every element walked to the end; the header parsed up to the pixel data).
//! - [`record`]: that record: patient with its local key, study, series, instance.
//! - [`rejection`]: IHE IOCM rejection notes, the instances a note takes out of use.
//! - [`attr`]: attribute values as text, the one place an element is read as a string.
//! - [`part10`]: the file meta group a data set received over the network lacks.
//! - [`dicomdir`]: the DICOMDIR of a file-set (media), its records linked by byte offsets.
//! - [`un`]: known attributes that arrived as UN, read with their dictionary VR.
//! - [`uid`]: UID rules. [`syntax`]: transfer-syntax facts from the dictionary.
//! - [`transcode`]: an instance converted to another transfer syntax.
//! - [`deidentify`]: an instance de-identified by PS3.15 Annex E for a research project.

pub mod attr;
pub mod deidentify;
pub mod dicomdir;
pub mod inspect;
pub mod part10;
pub mod record;
pub mod rejection;
pub mod syntax;
pub mod transcode;
pub mod uid;
pub mod un;

pub use inspect::inspect;
pub use uid::is_valid_uid;

/// Why an instance was refused, in words its sender can act on.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The input is not an instance we can accept; the message names the problem.
    #[error("{0}")]
    Invalid(String),
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn invalid(msg: impl Into<String>) -> InspectError {
    InspectError::Invalid(msg.into())
}
