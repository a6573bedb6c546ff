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
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice(body).ok()
    }
}
