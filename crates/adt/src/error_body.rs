//! ADT's error body: `{"error":{"code","message","details":[…]}}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdtError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<AdtError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: AdtError,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: AdtError { code: code.into(), message: message.into(), details: Vec::new() } }
    }

    pub fn with_detail(mut self, code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        self.error.details.push(AdtError { code: code.into(), message: message.into(), details: Vec::new() });
        self
    }

    /// Parses a response body; `None` when it is empty or not ADT's shape (e.g. a 403 with no body).
    /// The live 429 to a second bulk job sends the error object inside a JSON string
    /// (ADT-REFERENCE.md §1.5); that is unwrapped once.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        if let Ok(parsed) = serde_json::from_slice(body) {
            return Some(parsed);
        }
        if !body.trim_ascii_start().starts_with(b"\"") {
            return None;
        }
        let inner: String = serde_json::from_slice(body).ok()?;
        serde_json::from_str(&inner).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_error_object_and_the_error_object_inside_a_json_string() {
        let plain = br#"{"error":{"code":"JobNotFound","message":"no job"}}"#;
        assert_eq!(ErrorBody::parse(plain).unwrap().error.code, "JobNotFound");
        let wrapped = serde_json::to_vec(&String::from_utf8_lossy(plain)).unwrap();
        assert_eq!(ErrorBody::parse(&wrapped).unwrap().error.code, "JobNotFound");
        assert_eq!(ErrorBody::parse(b"\"just text\""), None);
        assert_eq!(ErrorBody::parse(b""), None);
    }
}
