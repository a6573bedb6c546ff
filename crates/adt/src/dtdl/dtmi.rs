//! DTMI syntax: `dtmi:<segment>(:<segment>)*;<version>` (DTDL v2/v3 specs, ADT-REFERENCE.md §5).

/// Why a string is not a valid DTMI, phrased so a user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{dtmi}' is not a valid DTMI: {reason}")]
pub struct DtmiError {
    pub dtmi: String,
    pub reason: String,
}

fn err(dtmi: &str, reason: impl Into<String>) -> DtmiError {
    DtmiError { dtmi: dtmi.to_string(), reason: reason.into() }
}

/// Longest Interface `@id` ADT accepts.
pub const MAX_INTERFACE_DTMI_LEN: usize = 128;
/// Longest other user DTMI.
pub const MAX_DTMI_LEN: usize = 2048;

/// Validates a DTMI for DTDL v2 (`dtdl_version` 2: version required, integer) or v3 (version
/// optional, or `major.minor`).
pub fn validate_dtmi(dtmi: &str, dtdl_version: u8) -> Result<(), DtmiError> {
    if dtmi.len() > MAX_DTMI_LEN {
        return Err(err(dtmi, format!("it is longer than {MAX_DTMI_LEN} characters")));
    }
    let Some(rest) = dtmi.strip_prefix("dtmi:") else {
        return Err(err(dtmi, "it must start with 'dtmi:'"));
    };
    let (path, version) = match rest.split_once(';') {
        Some((p, v)) => (p, Some(v)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(err(dtmi, "it has no path segments after 'dtmi:'"));
    }
    for segment in path.split(':') {
        check_segment(dtmi, segment)?;
    }
    match (version, dtdl_version) {
        (None, 2) => Err(err(dtmi, "DTDL v2 requires a version, e.g. ';1'")),
        (None, _) => Ok(()),
        (Some(v), 2) => check_integer_version(dtmi, v),
        (Some(v), _) => match v.split_once('.') {
            None => check_integer_version(dtmi, v),
            Some((major, minor)) => {
                check_integer_version(dtmi, major)?;
                if minor.is_empty()
                    || minor.len() > 6
                    || minor.starts_with('0')
                    || !minor.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(err(dtmi, "the minor version must be 1 to 6 digits without a leading zero"));
                }
                Ok(())
            }
        },
    }
}

/// Validates the `@id` of an Interface: a DTMI, at most 128 characters, not in a reserved namespace.
pub fn validate_interface_dtmi(dtmi: &str, dtdl_version: u8) -> Result<(), DtmiError> {
    validate_dtmi(dtmi, dtdl_version)?;
    if dtmi.len() > MAX_INTERFACE_DTMI_LEN {
        return Err(err(dtmi, format!("an Interface @id may be at most {MAX_INTERFACE_DTMI_LEN} characters")));
    }
    if dtmi.starts_with("dtmi:dtdl:") || dtmi.starts_with("dtmi:standard:") {
        return Err(err(dtmi, "the prefixes 'dtmi:dtdl:' and 'dtmi:standard:' are reserved"));
    }
    Ok(())
}

fn check_segment(dtmi: &str, segment: &str) -> Result<(), DtmiError> {
    let bytes = segment.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(err(dtmi, "it has an empty path segment"));
    };
    if first == b'_' {
        return Err(err(dtmi, format!("segment '{segment}' starts with '_', which is reserved for system segments")));
    }
    if !first.is_ascii_alphabetic() {
        return Err(err(dtmi, format!("segment '{segment}' must start with a letter")));
    }
    if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(err(
            dtmi,
            format!("segment '{segment}' contains '{bad}'; only letters, digits and '_' are allowed"),
        ));
    }
    if bytes[bytes.len() - 1] == b'_' {
        return Err(err(dtmi, format!("segment '{segment}' must not end with '_'")));
    }
    Ok(())
}

fn check_integer_version(dtmi: &str, v: &str) -> Result<(), DtmiError> {
    if v.is_empty() || v.len() > 9 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(dtmi, "the version must be an integer of 1 to 9 digits without a leading zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_dtmis() {
        for d in ["dtmi:com:example:Thermostat;1", "dtmi:a;123456789", "dtmi:a_b:C9;2"] {
            validate_interface_dtmi(d, 2).unwrap();
        }
        validate_dtmi("dtmi:com:example:Thing", 3).unwrap();
        validate_dtmi("dtmi:com:example:Thing;2.5", 3).unwrap();
    }

    #[test]
    fn bad_dtmis_say_why() {
        let cases = [
            ("dtmi:com:example", "version"),
            ("dtmi:com:example;0", "leading zero"),
            ("dtmi:com:9example;1", "start with a letter"),
            ("dtmi:com:ex-ample;1", "contains '-'"),
            ("dtmi:com:example_;1", "end with '_'"),
            ("dtmi:_com:example;1", "system"),
            ("dtmi::x;1", "empty"),
            ("urn:com:x;1", "start with 'dtmi:'"),
            ("dtmi:x;1234567890", "1 to 9 digits"),
        ];
        for (d, why) in cases {
            let e = validate_dtmi(d, 2).unwrap_err();
            assert!(e.to_string().contains(why), "{d}: {e}");
        }
        assert!(validate_interface_dtmi("dtmi:dtdl:foo;1", 2).unwrap_err().reason.contains("reserved"));
        let long = format!("dtmi:{};1", "a".repeat(130));
        assert!(validate_interface_dtmi(&long, 2).is_err());
    }
}
