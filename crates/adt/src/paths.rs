//! Building request paths. Every id goes into the path percent-encoded: model ids carry `:` and
//! `;`, and twin ids may carry anything.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Encode everything but unreserved characters (RFC 3986), as the Azure SDKs do for path segments.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn encode_segment(id: &str) -> String {
    utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

pub fn decode_segment(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

pub fn model(id: &str) -> String {
    format!("/models/{}", encode_segment(id))
}

pub fn twin(id: &str) -> String {
    format!("/digitaltwins/{}", encode_segment(id))
}

pub fn relationship(source: &str, relationship_id: &str) -> String {
    format!("/digitaltwins/{}/relationships/{}", encode_segment(source), encode_segment(relationship_id))
}

/// `/jobs/imports/{id}`.
pub fn import_job(id: &str) -> String {
    format!("/jobs/imports/{}", encode_segment(id))
}

/// `/jobs/imports/{id}/cancel`.
pub fn import_job_cancel(id: &str) -> String {
    format!("{}/cancel", import_job(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded_like_the_recordings() {
        assert_eq!(model("dtmi:samples:X;1"), "/models/dtmi%3Asamples%3AX%3B1");
    }

    #[test]
    fn awkward_twin_ids_round_trip() {
        for id in ["a b/c?d#e%f", "ünï", "plain-id_1.2~3"] {
            let enc = encode_segment(id);
            assert!(!enc.contains('/') && !enc.contains('?') && !enc.contains('#'));
            assert_eq!(decode_segment(&enc), id);
        }
    }
}
