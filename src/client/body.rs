//! Reading an answer's body, never more than a cap (`max_response_bytes`): a server that
//! declares gigabytes is not read at all, and one that sends without end is cut off at the cap,
//! so the memory a request holds is bounded whatever the server does.

use bytes::{Bytes, BytesMut};

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the cap (declared by `Content-Length`, or counted while reading).
    TooLarge { limit: u64 },
    /// The connection failed while the body came in.
    Cut(reqwest::Error),
}

/// The body of `response`, at most `limit` bytes.
pub async fn read_bounded(mut response: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|declared| declared > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Cut)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
