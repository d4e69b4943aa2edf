//! Part-10 framing (PS3.10 7.1): the preamble, "DICM" and the file meta group a data set received
//! over the network lacks, written with our implementation's identity; and Part-10 bytes read
//! back into an object or a bare data set.

use crate::InspectError;

/// Our implementation class UID, written in the file meta of instances we wrap (C-STORE data
/// sets arrive without one). A `2.25` UID derived from a fixed UUID.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.190204309917532440376154236476523361313";
pub const IMPLEMENTATION_VERSION_NAME: &str = "STRATA_0_1";

/// The Part-10 header (preamble, "DICM", file meta group) for a data set received over the
/// network, which arrives without one. The data set bytes that follow stay as they arrived.
pub fn part10_header(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
    source_ae: &str,
) -> Result<Vec<u8>, InspectError> {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(source_ae)
        .build()
        .map_err(|e| crate::invalid(format!("cannot build file meta information: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| crate::invalid(format!("cannot write file meta information: {e}")))?;
    Ok(out)
}

/// Where the "DICM" magic starts: after the 128-byte preamble when there is one (a file), at the
/// start when there is none (a stream).
pub fn magic_offset(part10: &[u8]) -> usize {
    if part10.get(128..132) == Some(b"DICM") {
        128
    } else {
        0
    }
}

/// Parses Part-10 bytes, with or without their preamble, into an object.
pub fn open(part10: &[u8]) -> Result<dicom_object::DefaultDicomObject, String> {
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&part10[magic_offset(part10)..])
        .map_err(|e| e.to_string())
}

/// Where the data set of Part-10 bytes starts: after the file meta group, which `head` (the
/// first bytes of the file) must hold whole.
pub fn data_set_start(head: &[u8]) -> Result<usize, String> {
    let mut cursor = std::io::Cursor::new(head);
    cursor.set_position(magic_offset(head) as u64);
    dicom_object::FileMetaTable::from_reader(&mut cursor).map_err(|e| e.to_string())?;
    Ok(cursor.position() as usize)
}
