//! How long the server asked us to wait: `retry-after-ms` and `x-ms-retry-after-ms`
//! (milliseconds), else `Retry-After` (seconds, integer or fractional, or an HTTP date), as the
//! Azure SDKs read them (FIELD.md §3). `None` when no header gives a usable value; the
//! supervisor then falls back to its own jittered backoff.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The millisecond headers, in the order the Azure SDKs prefer them.
const MILLISECOND_HEADERS: [&str; 2] = ["retry-after-ms", "x-ms-retry-after-ms"];

/// Reads the wait a response asks for, relative to `now` for the HTTP-date form.
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in MILLISECOND_HEADERS {
        if let Some(ms) = headers.get(name).and_then(|v| v.to_str().ok()).and_then(parse_non_negative) {
            return Duration::try_from_secs_f64(ms / 1000.0).ok();
        }
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after_value(value, now)
}

/// One `Retry-After` value: delay-seconds (fractions tolerated) or an HTTP date.
pub fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(seconds) = parse_non_negative(value) {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now".
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_non_negative(text: &str) -> Option<f64> {
    let n: f64 = text.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn integer_and_fractional_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse(&headers(&[("Retry-After", "2")]), now), Some(Duration::from_secs(2)));
        assert_eq!(parse(&headers(&[("Retry-After", "0.25")]), now), Some(Duration::from_millis(250)));
        assert_eq!(parse(&headers(&[("Retry-After", "0")]), now), Some(Duration::ZERO));
    }

    #[test]
    fn http_date_is_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:30 GMT").unwrap();
        let h = headers(&[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(parse(&h, now), Some(Duration::from_secs(7)));
        let past = headers(&[("Retry-After", "Sun, 06 Nov 1994 08:49:00 GMT")]);
        assert_eq!(parse(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn millisecond_headers_win_over_retry_after() {
        let now = SystemTime::now();
        let h = headers(&[("Retry-After", "5"), ("retry-after-ms", "150")]);
        assert_eq!(parse(&h, now), Some(Duration::from_millis(150)));
        let h = headers(&[("Retry-After", "5"), ("x-ms-retry-after-ms", "1500")]);
        assert_eq!(parse(&h, now), Some(Duration::from_millis(1500)));
        let h = headers(&[("retry-after-ms", "20"), ("x-ms-retry-after-ms", "1500")]);
        assert_eq!(parse(&h, now), Some(Duration::from_millis(20)));
    }

    #[test]
    fn garbage_negative_or_missing_gives_none() {
        let now = SystemTime::now();
        assert_eq!(parse(&HeaderMap::new(), now), None);
        assert_eq!(parse(&headers(&[("Retry-After", "soon")]), now), None);
        assert_eq!(parse(&headers(&[("Retry-After", "-3")]), now), None);
        assert_eq!(parse(&headers(&[("Retry-After", "NaN")]), now), None);
        // A bad millisecond header does not hide a good Retry-After.
        assert_eq!(
            parse(&headers(&[("retry-after-ms", "x"), ("Retry-After", "1")]), now),
            Some(Duration::from_secs(1))
        );
    }
}
