//! Secrets never printed: every text twinload writes (stderr, log lines, dead letters, the
//! summary, `outputs.json`, the run report, metrics labels) passes through [`redact`] first.
//!
//! Three kinds of secret are removed:
//! - the values registered with [`register`]: the bearer token (`--token`), every token a
//!   credential hands out, and ADF SecureString values, registered the moment they are read
//!   (before the configuration is complete, so an error about a bad setting cannot echo one);
//! - `Bearer <anything>`, so a server that echoes the request's `Authorization` header back in
//!   an error body cannot put the token into a dead letter;
//! - the `sig=` value of a SAS (a Blob URL printed in an error keeps its account, container and
//!   expiry, not its signature).
//!
//! This module is the bottom layer: it imports nothing from the crate, so every other module
//! (the first to read a secret included) can use it.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Registered secrets shorter than this are not replaced: a value of two or three characters is
/// no credential, and replacing it everywhere would garble every number in the summary
/// (outputs.json must stay valid JSON).
pub const MIN_SECRET_CHARS: usize = 4;

/// The registered secrets, longest first (a secret that contains another is replaced whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value: from now on [`redact`] replaces it wherever it appears.
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    if SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter().any(|s| s == secret) {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` without registered secrets, bearer tokens or SAS signatures.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for secret in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    if let Some(replaced) = after_marker(&out, "Bearer", true, is_token_char) {
        out = Cow::Owned(replaced);
    }
    if let Some(replaced) = after_marker(&out, "sig=", false, is_sas_value_char) {
        out = Cow::Owned(replaced);
    }
    out
}

/// The characters of an RFC 6750 bearer token (token68), plus `%` for an encoded one.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=' | '%')
}

/// A SAS value runs to the next parameter, quote or blank.
fn is_sas_value_char(c: char) -> bool {
    !(c == '&' || c == '"' || c == '\'' || c == '<' || c == '>' || c.is_whitespace() || c.is_control())
}

/// `text` with the value after each `marker` replaced by [`REDACTED`]; `None` when there is
/// nothing to replace. With `blank`, the marker must be followed by blanks (`Bearer <token>`);
/// without, the value follows at once (`sig=<value>`). A value already redacted is left as it
/// is. The markers are matched as HTTP clients and SAS URLs spell them (`Bearer`, `sig=`), so
/// prose such as "the bearer token" stays readable.
fn after_marker(text: &str, marker: &str, blank: bool, value_char: fn(char) -> bool) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find(marker) {
        let start = from + found;
        let mut value_start = start + marker.len();
        from = value_start;
        if blank {
            let blanks = text[value_start..].len() - text[value_start..].trim_start_matches([' ', '\t']).len();
            if blanks == 0 {
                continue;
            }
            value_start += blanks;
        }
        let rest = &text[value_start..];
        let value_len = rest.find(|c: char| !value_char(c)).unwrap_or(rest.len());
        if value_len == 0 || rest.starts_with(REDACTED) {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(REDACTED);
        copied = value_start + value_len;
        from = copied;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// A writer that redacts what goes through it (the log lines on stderr). A log line arrives in
/// one `write` call (tracing's formatter writes each event whole), so a secret is never split
/// between two calls.
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_sas_signatures_are_removed() {
        assert_eq!(
            redact("echo: Authorization: Bearer eyJ0eXAi.abc-def_1= rest"),
            "echo: Authorization: Bearer <redacted> rest"
        );
        assert_eq!(redact("{\"auth\":\"Bearer  tok/123\"}"), "{\"auth\":\"Bearer  <redacted>\"}");
        assert_eq!(
            redact("https://a.blob.core.windows.net/c?sv=2022&sig=AbC%2Fd%3D&se=2030"),
            "https://a.blob.core.windows.net/c?sv=2022&sig=<redacted>&se=2030"
        );
        // Nothing to hide: the text comes back as it was, without a copy.
        assert!(matches!(redact("the bearer token was refused; signature"), Cow::Borrowed(_)));
        assert_eq!(redact("Bearer <redacted>"), "Bearer <redacted>");
    }

    #[test]
    fn registered_secrets_are_removed_and_short_values_are_not_registered() {
        register("S3CR3T-value-h4");
        register("S3CR3T-value-h4-longer");
        register("42");
        assert_eq!(
            redact("unknown variant `S3CR3T-value-h4-longer`, and S3CR3T-value-h4; 42 twins"),
            "unknown variant `<redacted>`, and <redacted>; 42 twins"
        );
    }

    #[test]
    fn the_writer_redacts_each_line() {
        let mut out = Redacting(Vec::new());
        out.write_all(b"WARN 400: Bearer abc.def\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), "WARN 400: Bearer <redacted>\n");
    }
}
