//! UID rules (PS3.5 9.1).

/// A valid DICOM UID (PS3.5 9.1): at most 64 characters, dot-separated numeric components,
/// no component with a leading zero.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rules() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(is_valid_uid("2.25.0"));
        assert!(!is_valid_uid("1.2.03"));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2."));
        assert!(!is_valid_uid("1.2.abc"));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid(&"1.".repeat(32)));
    }
}
