//! Transfer-syntax facts, from dicom-rs's registry rather than lists of our own.

use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Explicit VR Little Endian: what a receiver that names no syntax gets (PS3.18 8.7.3.5.2), and
/// what encapsulated pixel data is decoded to when a receiver cannot take the stored syntax.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired): native pixel data whose words are not in the order the
/// other syntaxes keep them.
pub const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
/// Implicit VR Little Endian: the default every DICOM peer accepts (PS3.5 10.1).
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";

/// Whether pixel data in this transfer syntax is native (not encapsulated in fragments). An
/// unknown syntax counts as encapsulated: nothing is assumed about its bytes.
pub fn is_native(transfer_syntax: &str) -> bool {
    TransferSyntaxRegistry
        .get(transfer_syntax.trim_end_matches(['\0', ' ']))
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_syntaxes_are_the_uncompressed_ones() {
        for native in [
            IMPLICIT_VR_LITTLE_ENDIAN,
            EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.1.99",
        ] {
            assert!(is_native(native), "{native}");
        }
        for encapsulated in ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.3"] {
            assert!(!is_native(encapsulated), "{encapsulated}");
        }
    }
}
